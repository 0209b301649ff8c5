package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/synod-io/synod/node"
	"github.com/synod-io/synod/server"
)

func newStatusCommand() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print a table of the cluster's members: role, SWIM state, health score, term, commit, applied, lag, health",
		Long: `Ask the cluster for its members (Cluster.MemberList, through any of
--endpoints), then each member, at its first client URL, for its status
(Maintenance.Status, with the member's SWIM view of the cluster in the
answer's header metadata), and print one row per member:

  NAME, ID        the member (ID in hex, as etcdctl prints it)
  ENDPOINT        the client URL asked
  ROLE            leader or follower, by the member's own account; peer
                  under a leaderless protocol (epaxos)
  SWIM            the member's state in SWIM membership (alive, suspect,
                  dead, left, unknown) as the other members that answered
                  see it. As in SWIM, a report at a higher incarnation
                  supersedes one at a lower (the member restarted or
                  refuted a suspicion since), so only the reports at the
                  highest incarnation reported count: the column is the
                  worst state among them, followed, if they disagree, by
                  how many of them report it ("suspect (1/2)": one of the
                  two reports at that incarnation; stale reports are in
                  neither number); dead for a member that did not answer
                  but that the others see as dead; - if no other member
                  reports on it. SWIM is failure detection beside the
                  replica: a member may be alive to SWIM yet cut off from
                  its leader
  HEALTH-SCORE    the member's own SWIM local health score over its
                  maximum ("0/8"): 0 while it answers its probes in time,
                  rising as it misses them (slow or overloaded); - if it did
                  not answer or sent no SWIM view
  TERM            the member's current term (- without a leader)
  COMMIT          its commit index (epaxos: instances it knows committed)
  APPLIED         its applied index (epaxos: commands it has executed)
  LAG             the leader's commit index minus this member's applied
                  index: entries it has yet to apply (epaxos: the most
                  commands any member has executed minus this member's)
  HEALTH          true if the member answered and knows a leader (or its
                  protocol has none); else false and why

A member's protocol is read from the version its status reports.

The command exits with status 1 if any member is unhealthy.`,
		Example: `  synod status --endpoints http://127.0.0.1:2379
  synod status --endpoints https://10.0.0.1:2379 --cacert ca.pem --cert me.pem --key me-key.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withClient(cmd, func(ctx context.Context, cli *clientv3.Client) error {
				rows, err := clusterStatus(ctx, cli)
				if err != nil {
					return err
				}
				printStatus(cmd.OutOrStdout(), rows)
				for _, r := range rows {
					if r.swimErr != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "synod status: cannot read the SWIM view of %s: %v\n", r.name, r.swimErr)
					}
				}
				for _, r := range rows {
					if !r.healthy {
						return &exitError{code: 1}
					}
				}
				return nil
			})
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// memberRow is one member's line in the status table.
type memberRow struct {
	name     string
	id       uint64
	endpoint string
	st       *clientv3.StatusResponse // nil if the member did not answer
	// swim is the SWIM view the member sent with its status: nil if it
	// did not answer, sent none, or sent one that swimErr says is
	// malformed.
	swim    *server.Membership
	swimErr error
	// leaderless is set when the member's status names a leaderless
	// protocol (node.Leaderless).
	leaderless bool
	err        error
	healthy    bool
	reason     string
}

// clusterStatus asks every member for its status.
func clusterStatus(ctx context.Context, cli *clientv3.Client) ([]memberRow, error) {
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing members: %w", err)
	}
	rows := make([]memberRow, len(ml.Members))
	var wg sync.WaitGroup
	for i, m := range ml.Members {
		rows[i] = memberRow{name: m.Name, id: m.ID}
		if len(m.ClientURLs) == 0 {
			rows[i].reason = "no client URL"
			continue
		}
		rows[i].endpoint = m.ClientURLs[0]
		wg.Go(func() { rows[i].ask(ctx, cli) })
	}
	wg.Wait()
	for i := range rows {
		rows[i].judge()
	}
	return rows, nil
}

// ask asks the member for its status and reads its SWIM view from the
// answer's header metadata (which cli.Status drops), over a connection
// of cli's own (its credentials and retries) to the member's endpoint.
func (r *memberRow) ask(ctx context.Context, cli *clientv3.Client) {
	conn, err := cli.Dial(r.endpoint)
	if err != nil {
		r.err = clientv3.ContextError(ctx, fmt.Errorf("dialing %s: %w", r.endpoint, err))
		return
	}
	defer conn.Close()
	var md metadata.MD
	resp, err := clientv3.RetryMaintenanceClient(cli, conn).Status(ctx, &pb.StatusRequest{}, grpc.Header(&md))
	if err != nil {
		r.err = clientv3.ContextError(ctx, err)
		return
	}
	r.st = (*clientv3.StatusResponse)(resp)
	r.swim, r.swimErr = server.ParseMembershipHeader(md)
}

// judge sets the row's health from its answer: a member is healthy when
// it answered and knows a leader, or runs a protocol without one.
func (r *memberRow) judge() {
	switch {
	case r.err != nil:
		r.reason = r.err.Error()
	case r.st == nil:
	case node.Leaderless(server.ProtocolOfVersion(r.st.Version)):
		r.leaderless, r.healthy = true, true
	case r.st.Leader == 0:
		r.reason = "no leader"
	default:
		r.healthy = true
	}
}

func printStatus(w io.Writer, rows []memberRow) {
	// The reference for LAG: the leader's commit index, or under a
	// leaderless protocol the most commands any member has executed.
	var leaderCommit uint64
	leaderKnown := false
	for _, r := range rows {
		switch {
		case r.st != nil && r.st.Leader == r.id:
			leaderCommit, leaderKnown = r.st.RaftIndex, true
		case r.st != nil && r.leaderless:
			leaderCommit, leaderKnown = max(leaderCommit, r.st.RaftAppliedIndex), true
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tENDPOINT\tROLE\tSWIM\tHEALTH-SCORE\tTERM\tCOMMIT\tAPPLIED\tLAG\tHEALTH")
	for i, r := range rows {
		role, term, commit, applied, lag := "-", "-", "-", "-", "-"
		if st := r.st; st != nil {
			switch {
			case st.Leader == r.id:
				role = "leader"
			case r.leaderless:
				role = "peer"
			default:
				role = "follower"
			}
			if !r.leaderless {
				term = strconv.FormatUint(st.RaftTerm, 10)
			}
			commit = strconv.FormatUint(st.RaftIndex, 10)
			applied = strconv.FormatUint(st.RaftAppliedIndex, 10)
			if leaderKnown {
				lag = strconv.FormatUint(leaderCommit-min(leaderCommit, st.RaftAppliedIndex), 10)
			}
		}
		health := "true"
		if !r.healthy {
			health = "false: " + r.reason
		}
		score := "-"
		if r.swim != nil {
			score = strconv.Itoa(r.swim.Health) + "/" + strconv.Itoa(r.swim.HealthMax)
		}
		fmt.Fprintf(tw, "%s\t%x\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.id, r.endpoint, role, swimView(rows, i), score,
			term, commit, applied, lag, health)
	}
	tw.Flush()
}

// swimView is member rows[i]'s SWIM state as the other members that
// answered report it. A report at a higher incarnation supersedes one at
// a lower, as in SWIM, so only the reports at the highest incarnation
// reported count: the result is the worst state (server.SWIMRank) among
// them, followed, if they disagree, by how many of them report it
// ("suspect (1/2)"); "-" if none reports on it. The member's own view of
// itself does not count.
func swimView(rows []memberRow, i int) string {
	var (
		worst       string
		incarnation uint64 // the highest reported so far
		// reports counts the reports at incarnation, worstReports those
		// of them that report worst.
		reports, worstReports int
	)
	for j, r := range rows {
		if j == i || r.swim == nil {
			continue
		}
		k := slices.IndexFunc(r.swim.Members, func(mh server.MemberHealth) bool { return uint64(mh.ID) == rows[i].id })
		if k < 0 {
			continue
		}
		mh := r.swim.Members[k]
		switch {
		case reports == 0 || mh.Incarnation > incarnation:
			// The first report, or one that supersedes those so far.
			incarnation, reports, worstReports = mh.Incarnation, 0, 0
		case mh.Incarnation < incarnation:
			continue // superseded
		}
		reports++
		switch {
		case worstReports == 0 || server.SWIMRank(mh.State) > server.SWIMRank(worst):
			worst, worstReports = mh.State, 1
		case mh.State == worst:
			worstReports++
		}
	}
	switch {
	case reports == 0:
		return "-"
	case worstReports == reports:
		return worst
	}
	return fmt.Sprintf("%s (%d/%d)", worst, worstReports, reports)
}
