package server

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/node"
	"github.com/synod-io/synod/transport"
)

// Membership is a member's SWIM view (membership and failure detection,
// run beside its replica): how every member looks from here, and how
// healthy this member itself is. The consensus protocols do not act on
// it: a member may be alive to SWIM yet cut off from its leader. It is
// the node's own type: Health is within 0..HealthMax, no member ID is 0
// or listed twice, and a member's Name is empty when the view was read
// from header metadata (ParseMembershipHeader), which carries IDs only.
type Membership = node.MembershipStatus

// MemberHealth is one member's SWIM state as another member sees it. Its
// State is one of the SWIM states below; a newer member may report
// another, which SWIMRank ranks as SWIMUnknown.
type MemberHealth = node.MemberHealth

// SWIM states, as MemberHealth.State names them.
const (
	SWIMAlive   = "alive"
	SWIMSuspect = "suspect"
	SWIMDead    = "dead"
	// SWIMLeft is a member that left the group gracefully.
	SWIMLeft = "left"
	// SWIMUnknown is a member this one has not heard of yet.
	SWIMUnknown = "unknown"
)

// swimStates lists the SWIM states from the best to the worst (SWIMRank).
var swimStates = [...]string{SWIMAlive, SWIMUnknown, SWIMSuspect, SWIMLeft, SWIMDead}

// SWIMRank orders SWIM states from the best (alive, 0) to the worst
// (dead): alive < unknown < suspect < left < dead. A state it does not
// know ranks as unknown. Of several members' views of one member, a
// reader shows the worst.
func SWIMRank(state string) int {
	if i := slices.Index(swimStates[:], state); i >= 0 {
		return i
	}
	return slices.Index(swimStates[:], SWIMUnknown)
}

// The gRPC header metadata of Maintenance.Status that carries the
// member's Membership. etcd's StatusResponse has no field for it, and
// etcd's clients ignore header metadata they do not know.
//
//	synod-swim-health       "<health>/<health max>", e.g. "0/8"
//	synod-swim-incarnation  the member's own incarnation, e.g. "3"
//	synod-swim-members      one value per member, in the member's order:
//	                        "<id in hex> <state> <incarnation>", e.g.
//	                        "a1b2 alive 3"
//
// A member without SWIM sends none of them.
const (
	SWIMHealthKey      = "synod-swim-health"
	SWIMIncarnationKey = "synod-swim-incarnation"
	SWIMMembersKey     = "synod-swim-members"
)

const (
	// swimStateBytesMax bounds a state's name in header metadata.
	swimStateBytesMax = 32
	// swimMembersMax bounds the members header metadata may list: no
	// cluster has more members than the peer transport allows.
	swimMembersMax = transport.PeersMax
)

// MembershipHeader encodes m as Maintenance.Status' header metadata (the
// keys above). ParseMembershipHeader reads it back, without names.
func MembershipHeader(m Membership) metadata.MD {
	members := make([]string, len(m.Members))
	for i, mh := range m.Members {
		members[i] = strconv.FormatUint(uint64(mh.ID), 16) + " " + mh.State + " " + strconv.FormatUint(mh.Incarnation, 10)
	}
	md := metadata.MD{
		SWIMHealthKey:      {strconv.Itoa(m.Health) + "/" + strconv.Itoa(m.HealthMax)},
		SWIMIncarnationKey: {strconv.FormatUint(m.Incarnation, 10)},
	}
	if len(members) > 0 {
		md[SWIMMembersKey] = members
	}
	return md
}

// ParseMembershipHeader reads a Membership from Maintenance.Status'
// header metadata. It returns nil and no error if md carries none (a
// member without SWIM, or not synod), and an error naming the key and
// the value if the metadata is malformed or breaks an invariant of
// Membership. Member names are left empty.
func ParseMembershipHeader(md metadata.MD) (*Membership, error) {
	health, inc, members := md.Get(SWIMHealthKey), md.Get(SWIMIncarnationKey), md.Get(SWIMMembersKey)
	if len(health) == 0 && len(inc) == 0 && len(members) == 0 {
		return nil, nil
	}
	bad := func(key, value, why string) error {
		return fmt.Errorf("server: malformed %s header metadata %q: %s", key, value, why)
	}
	if len(health) != 1 {
		return nil, fmt.Errorf("server: malformed SWIM header metadata: %d values of %s, want 1", len(health), SWIMHealthKey)
	}
	if len(inc) != 1 {
		return nil, fmt.Errorf("server: malformed SWIM header metadata: %d values of %s, want 1", len(inc), SWIMIncarnationKey)
	}
	if len(members) > swimMembersMax {
		return nil, fmt.Errorf("server: malformed SWIM header metadata: %d values of %s, at most %d allowed", len(members), SWIMMembersKey, swimMembersMax)
	}
	var m Membership
	h, hmax, ok := strings.Cut(health[0], "/")
	if !ok {
		return nil, bad(SWIMHealthKey, health[0], `want "<health>/<health max>"`)
	}
	hv, err1 := strconv.ParseUint(h, 10, 16)
	mv, err2 := strconv.ParseUint(hmax, 10, 16)
	if err := errors.Join(err1, err2); err != nil {
		return nil, bad(SWIMHealthKey, health[0], `want "<health>/<health max>" in decimal`)
	}
	if hv > mv {
		return nil, bad(SWIMHealthKey, health[0], "health above its maximum")
	}
	m.Health, m.HealthMax = int(hv), int(mv)
	var err error
	if m.Incarnation, err = strconv.ParseUint(inc[0], 10, 64); err != nil {
		return nil, bad(SWIMIncarnationKey, inc[0], "want a decimal incarnation")
	}
	seen := make(map[consensus.NodeID]bool, len(members))
	for _, v := range members {
		f := strings.Split(v, " ")
		if len(f) != 3 {
			return nil, bad(SWIMMembersKey, v, `want "<id in hex> <state> <incarnation>"`)
		}
		id, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || id == 0 {
			return nil, bad(SWIMMembersKey, v, "want a non-zero member ID in hex")
		}
		if seen[consensus.NodeID(id)] {
			return nil, bad(SWIMMembersKey, v, "member listed twice")
		}
		seen[consensus.NodeID(id)] = true
		if !validSWIMState(f[1]) {
			return nil, bad(SWIMMembersKey, v, fmt.Sprintf("want a state of 1..%d printable characters", swimStateBytesMax))
		}
		mi, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return nil, bad(SWIMMembersKey, v, "want a decimal incarnation")
		}
		m.Members = append(m.Members, MemberHealth{ID: consensus.NodeID(id), State: f[1], Incarnation: mi})
	}
	return &m, nil
}

// validSWIMState reports whether s may be a state in header metadata: a
// non-empty word of printable ASCII.
func validSWIMState(s string) bool {
	if s == "" || len(s) > swimStateBytesMax {
		return false
	}
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
