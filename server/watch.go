package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

// Watch limits and defaults.
const (
	// WatchProgressNotifyIntervalDefault is how often a watcher created
	// with progress_notify gets a progress response when no events came
	// (etcd's default --experimental-watch-progress-notify-interval).
	WatchProgressNotifyIntervalDefault = 10 * time.Minute
	// WatchProgressNotifyIntervalMin and Max bound
	// Config.WatchProgressNotifyInterval.
	WatchProgressNotifyIntervalMin = time.Millisecond
	WatchProgressNotifyIntervalMax = 24 * time.Hour
	// watchersPerStreamMax bounds the watchers of one Watch stream.
	watchersPerStreamMax = 10000
	// watchReadEventsMax is how many events one watcher reads per round, so
	// that one busy watcher does not hold up the others of its stream.
	watchReadEventsMax = 1000
	// watchRequestQueueMax bounds the requests read from a stream ahead of
	// the loop that serves them.
	watchRequestQueueMax = 16
	// watchLeaderCheckInterval is how often a stream that requires a
	// leader (clientv3.WithRequireLeader) checks that there is one; it is
	// ended with "no leader" after two checks in a row find none.
	watchLeaderCheckInterval = time.Second
)

// etcd's watch error messages (mvcc's), for the cancel_reason of a
// refused create.
var (
	errWatchDuplicateID  = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	errWatchEmptyRange   = errors.New("mvcc: watcher range is empty")
	errWatchNegativeRev  = errors.New("etcdserver: watch start_revision must not be negative")
	errWatchTooMany      = errors.New("etcdserver: too many watchers on this stream")
	errWatchUnknownEvent = errors.New("etcdserver: unknown watch filter")
	// errWatchEventualRevision refuses a start_revision in eventually
	// consistent mode (ProtocolGossip).
	errWatchEventualRevision = errors.New("etcdserver: watch from a revision is not supported in eventually consistent mode (gossip): " +
		"there is no history to replay; watch from now (start_revision 0)")
	// errWatchEventualPrevKV refuses prev_kv in eventually consistent mode
	// (ProtocolGossip): events would come without it.
	errWatchEventualPrevKV = errors.New("etcdserver: prev_kv on watches is not supported in eventually consistent mode (gossip): " +
		"a change merged from another member does not say what it replaced; watch without prev_kv")
)

// watchService is etcd's Watch service. Each stream is served by one
// goroutine (run) that owns its watchers and does every Send, plus one
// that reads requests (recv). A watcher is a range, options and a cursor
// (the next revision to send) into the member's history of recent changes
// (Backend.Watch); the loop reads each watcher from its cursor in rounds,
// sends what matches, and sleeps until the member applies more. There is
// no per-watcher buffer: a watcher (or a whole stream, whose client reads
// slowly) that falls behind the history gets etcd's compacted response
// (canceled, with compact_revision) instead of events it would miss, and
// may re-watch from that revision.
//
// Revisions are the member's own: under a protocol with local revisions
// (EPaxos, see kv.Options.PerKeyOrder) a start_revision means this
// member's revision, events come in this member's order (each key's in the
// same order on every member), and a revision learned from another member,
// or from this one before it restarted, names no particular point here.
// In eventually consistent mode (ProtocolGossip) there is no history to
// replay and no previous value, so a create with a start_revision or with
// prev_kv is refused (eventual.go).
type watchService struct {
	pb.UnimplementedWatchServer
	s *Server
}

// Watch serves one bidirectional watch stream.
func (w *watchService) Watch(ss grpc.BidiStreamingServer[pb.WatchRequest, pb.WatchResponse]) error {
	st := &watchStream{
		s:        w.s,
		ss:       ss,
		reqc:     make(chan *pb.WatchRequest, watchRequestQueueMax),
		donec:    make(chan struct{}),
		watchers: map[int64]*watcher{},
	}
	go st.recv()
	defer close(st.donec)
	return st.run()
}

// watcher is one watch of a stream.
type watcher struct {
	id       int64
	key, end []byte // kv.RangeRequest's rules
	noPut    bool
	noDelete bool
	prevKV   bool
	fragment bool
	// progressNotify asks for periodic progress responses; idle reports
	// that no events were sent since the last tick (etcd's rule).
	progressNotify bool
	idle           bool
	// next is the next revision to read. Invariant: every matching change
	// below next (from the start revision on) has been sent, or filtered.
	next int64
	// sent is the revision the watch has progressed to, for headers:
	// min(next-1, the member's revision at the last read).
	sent int64
	// caughtUp reports that the last read reached the member's revision.
	caughtUp bool
}

type watchStream struct {
	s  *Server
	ss grpc.BidiStreamingServer[pb.WatchRequest, pb.WatchResponse]
	// reqc carries requests from recv to run; closed by recv when the
	// client's side ends, after setting recvErr.
	reqc    chan *pb.WatchRequest
	recvErr error
	// donec is closed when run returns, so that recv stops.
	donec chan struct{}

	// Owned by run.
	watchers map[int64]*watcher
	order    []*watcher // the watchers in creation order, served in turn
	nextID   int64
	// progressPending is set by a progress request until it is answered.
	progressPending bool
}

// recv reads requests and hands them to run.
func (st *watchStream) recv() {
	for {
		req, err := st.ss.Recv()
		if err != nil {
			st.recvErr = err
			close(st.reqc)
			return
		}
		select {
		case st.reqc <- req:
		case <-st.donec:
			return
		}
	}
}

func (st *watchStream) run() error {
	ctx := st.ss.Context()
	progress := time.NewTicker(st.s.cfg.WatchProgressNotifyInterval)
	defer progress.Stop()
	var leaderCheck <-chan time.Time
	if requiresLeader(ctx) {
		t := time.NewTicker(watchLeaderCheckInterval)
		defer t.Stop()
		leaderCheck = t.C
	}
	leaderMissed := false
	reqc := st.reqc
	for {
		busy, changed, err := st.serve()
		if err != nil {
			return err
		}
		if st.progressPending && !busy {
			if err := st.sendProgress(); err != nil {
				return err
			}
		}
		if busy {
			// More to send: take any request first, then go on.
			select {
			case req, ok := <-reqc:
				if !ok {
					if reqc, err = st.recvEnded(); err != nil {
						return err
					}
					continue
				}
				if err := st.handle(req); err != nil {
					return err
				}
			case <-st.s.stopping:
				return rpctypes.ErrGRPCStopped
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			continue
		}
		select {
		case req, ok := <-reqc:
			if !ok {
				if reqc, err = st.recvEnded(); err != nil {
					return err
				}
				continue
			}
			if err := st.handle(req); err != nil {
				return err
			}
		case <-changed:
		case <-progress.C:
			if err := st.progressTick(); err != nil {
				return err
			}
		case <-leaderCheck:
			if st.s.hasLeader() {
				leaderMissed = false
			} else if leaderMissed {
				return rpctypes.ErrGRPCNoLeader
			} else {
				leaderMissed = true
			}
		case <-st.s.stopping:
			return rpctypes.ErrGRPCStopped
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// recvEnded handles the end of the client's side of the stream: after a
// half-close the watchers keep being served (as etcd does); any other
// error ends the stream.
func (st *watchStream) recvEnded() (chan *pb.WatchRequest, error) {
	if errors.Is(st.recvErr, io.EOF) {
		return nil, nil
	}
	return nil, st.recvErr
}

func requiresLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	v := md.Get(rpctypes.MetadataRequireLeaderKey)
	return len(v) > 0 && v[0] == rpctypes.MetadataHasLeader
}

// hasLeader reports whether this member knows a leader (leaderless
// protocols always do).
func (s *Server) hasLeader() bool {
	st := s.cfg.Backend.Status().Replica
	return st.Role == consensus.RolePeer || st.Leader != consensus.None
}

// handle serves one request.
func (st *watchStream) handle(req *pb.WatchRequest) error {
	switch r := req.RequestUnion.(type) {
	case *pb.WatchRequest_CreateRequest:
		if r.CreateRequest != nil {
			return st.create(r.CreateRequest)
		}
	case *pb.WatchRequest_CancelRequest:
		if r.CancelRequest != nil {
			return st.cancel(r.CancelRequest.WatchId)
		}
	case *pb.WatchRequest_ProgressRequest:
		if r.ProgressRequest != nil {
			st.progressPending = true
		}
	}
	return nil // unknown requests are ignored, as etcd does
}

// create registers a watcher and answers with its created response. A
// refused create gets a created and canceled response with watch ID -1
// and the reason, as etcd sends; clientv3 closes the watch channel with a
// response whose Err carries the reason.
func (st *watchStream) create(cr *pb.WatchCreateRequest) error {
	w := &watcher{key: cr.Key, end: cr.RangeEnd, prevKV: cr.PrevKv, fragment: cr.Fragment,
		progressNotify: cr.ProgressNotify, idle: true}
	if len(w.key) == 0 {
		w.key = []byte{0} // the smallest key
	}
	refuse := func(err error) error {
		return st.ss.Send(&pb.WatchResponse{Header: st.s.header(st.s.cfg.Backend.Status().Revision),
			WatchId: -1, Created: true, Canceled: true, CancelReason: err.Error()})
	}
	for _, f := range cr.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		default:
			return refuse(errWatchUnknownEvent)
		}
	}
	switch {
	case len(w.end) == 0 || len(w.end) == 1 && w.end[0] == 0:
		// One key, or every key >= key.
	case bytes.Compare(w.key, w.end) >= 0:
		return refuse(errWatchEmptyRange)
	}
	if cr.StartRevision < 0 {
		return refuse(errWatchNegativeRev)
	}
	if cr.StartRevision != 0 && st.s.eventual() {
		return refuse(errWatchEventualRevision)
	}
	if cr.PrevKv && st.s.eventual() {
		return refuse(errWatchEventualPrevKV)
	}
	if len(st.watchers) >= watchersPerStreamMax {
		return refuse(errWatchTooMany)
	}
	id := cr.WatchId
	if id != 0 {
		if _, dup := st.watchers[id]; dup {
			return refuse(errWatchDuplicateID)
		}
	} else {
		for st.watchers[st.nextID] != nil {
			st.nextID++
		}
		id = st.nextID
		st.nextID++
	}
	w.id = id
	// Pin "now": a watch created after a write returned sees every later
	// write.
	now, err := st.s.cfg.Backend.Watch(w.key, w.end, 0, 0)
	if err != nil {
		return st.backendError(err)
	}
	w.next = now.Next
	if cr.StartRevision > 0 {
		w.next = cr.StartRevision
	}
	w.sent = min(w.next-1, now.Revision)
	st.watchers[id] = w
	st.order = append(st.order, w)
	return st.ss.Send(&pb.WatchResponse{Header: st.s.header(now.Revision), WatchId: id, Created: true})
}

// cancel removes a watcher at the client's request. An unknown ID gets no
// answer, as in etcd.
func (st *watchStream) cancel(id int64) error {
	if st.watchers[id] == nil {
		return nil
	}
	st.remove(id)
	return st.ss.Send(&pb.WatchResponse{Header: st.s.header(st.s.cfg.Backend.Status().Revision), WatchId: id, Canceled: true})
}

func (st *watchStream) remove(id int64) {
	w := st.watchers[id]
	delete(st.watchers, id)
	for i, o := range st.order {
		if o == w {
			st.order = append(st.order[:i], st.order[i+1:]...)
			break
		}
	}
}

func (st *watchStream) backendError(err error) error {
	ctx := st.ss.Context()
	return toGRPCError(ctx, ctx, err)
}

// serve reads every watcher once from its cursor and sends what matches.
// busy reports that some watcher has more to read at once; changed is
// the channel to wait on when none has (closed as soon as the member's
// revision passes what the first read of the round saw, so that no
// watcher misses a wake-up).
func (st *watchStream) serve() (busy bool, changed <-chan struct{}, err error) {
	for _, w := range append([]*watcher(nil), st.order...) {
		b, err := st.s.cfg.Backend.Watch(w.key, w.end, w.next, watchReadEventsMax)
		var ce *CompactedError
		if errors.As(err, &ce) {
			st.remove(w.id)
			if err := st.ss.Send(&pb.WatchResponse{Header: st.s.header(st.s.cfg.Backend.Status().Revision),
				WatchId: w.id, Canceled: true, CompactRevision: ce.Revision}); err != nil {
				return false, nil, err
			}
			continue
		}
		if err != nil {
			return false, nil, st.backendError(err)
		}
		if changed == nil {
			changed = b.Changed
		}
		if b.Next < w.next {
			panic("server: a watch read went backwards")
		}
		w.next = b.Next
		w.sent = min(b.Next-1, b.Revision)
		w.caughtUp = !b.More
		busy = busy || b.More
		if err := st.sendEvents(w, b.Events); err != nil {
			return false, nil, err
		}
	}
	return busy, changed, nil
}

// sendEvents sends a watcher's events, filtered, in responses of whole
// revisions of at most about MaxRequestBytes each (a single revision may
// be larger; with fragment it is split into fragments). Each response's
// header revision is the revision the watch has progressed to.
func (st *watchStream) sendEvents(w *watcher, evs []kv.Event) error {
	out := make([]*mvccpb.Event, 0, len(evs))
	for i := range evs {
		ev := &evs[i]
		if ev.Type == kv.EventPut && w.noPut || ev.Type == kv.EventDelete && w.noDelete {
			continue
		}
		out = append(out, toPBEvent(ev, w.prevKV))
	}
	if len(out) == 0 {
		return nil
	}
	w.idle = false
	limit := st.s.cfg.MaxRequestBytes
	for len(out) > 0 {
		// Take whole revisions up to the limit (at least one revision).
		n, size := 0, 0
		for n < len(out) {
			rev := out[n].Kv.ModRevision
			m, sz := n, 0
			for m < len(out) && out[m].Kv.ModRevision == rev {
				sz += proto.Size(out[m])
				m++
			}
			if n > 0 && size+sz > limit {
				break
			}
			n, size = m, size+sz
		}
		rev := w.sent
		if n < len(out) {
			rev = out[n-1].Kv.ModRevision
		}
		wr := &pb.WatchResponse{Header: st.s.header(rev), WatchId: w.id, Events: out[:n]}
		if err := st.send(wr, w.fragment); err != nil {
			return err
		}
		out = out[n:]
	}
	return nil
}

// send sends wr, split into fragments if asked and it is larger than
// MaxRequestBytes (etcd's sendFragments).
func (st *watchStream) send(wr *pb.WatchResponse, fragment bool) error {
	limit := st.s.cfg.MaxRequestBytes
	if !fragment || len(wr.Events) < 2 || proto.Size(wr) < limit {
		return st.ss.Send(wr)
	}
	evs := wr.Events
	for len(evs) > 0 {
		cur := &pb.WatchResponse{Header: wr.Header, WatchId: wr.WatchId, Fragment: true}
		n := 0
		for n < len(evs) {
			cur.Events = evs[:n+1]
			if n > 0 && proto.Size(cur) >= limit {
				break
			}
			n++
		}
		cur.Events = evs[:n]
		evs = evs[n:]
		cur.Fragment = len(evs) > 0
		if err := st.ss.Send(cur); err != nil {
			return err
		}
	}
	return nil
}

// sendProgress answers progress requests once every watcher has caught up:
// one response with watch ID -1 (for all watchers of the stream) whose
// header revision every watcher has progressed to.
func (st *watchStream) sendProgress() error {
	rev := int64(-1)
	for _, w := range st.order {
		if !w.caughtUp {
			return nil
		}
		if rev < 0 || w.sent < rev {
			rev = w.sent
		}
	}
	if rev < 0 {
		rev = st.s.cfg.Backend.Status().Revision
	}
	st.progressPending = false
	return st.ss.Send(&pb.WatchResponse{Header: st.s.header(rev), WatchId: -1})
}

// progressTick sends a progress response to each caught-up watcher that
// asked for progress_notify and got no events since the last tick.
func (st *watchStream) progressTick() error {
	for _, w := range st.order {
		if w.progressNotify && w.idle && w.caughtUp {
			if err := st.ss.Send(&pb.WatchResponse{Header: st.s.header(w.sent), WatchId: w.id}); err != nil {
				return err
			}
		}
		w.idle = true
	}
	return nil
}

// toPBEvent converts an event; PrevKv is set only if asked for and the
// key existed before.
func toPBEvent(ev *kv.Event, prevKV bool) *mvccpb.Event {
	out := &mvccpb.Event{Type: mvccpb.Event_EventType(ev.Type), Kv: toPBKeyValue(&ev.KV)}
	if prevKV && ev.HasPrev() {
		out.PrevKv = toPBKeyValue(&ev.PrevKV)
	}
	return out
}
