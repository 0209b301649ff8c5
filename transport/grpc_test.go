package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/raft"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testClusterID = 7

// inbox records what a Handler receives. If gate is set, the handler waits
// on it before recording.
type inbox struct {
	mu   sync.Mutex
	msgs []consensus.Message
	gate chan struct{}
}

func (b *inbox) handle(m consensus.Message) {
	b.mu.Lock()
	gate := b.gate
	b.mu.Unlock()
	if gate != nil {
		<-gate
	}
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
}

func (b *inbox) setGate(gate chan struct{}) {
	b.mu.Lock()
	b.gate = gate
	b.mu.Unlock()
}

// from returns the payloads received from id, in order.
func (b *inbox) from(id consensus.NodeID) []*raft.Msg {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*raft.Msg
	for _, m := range b.msgs {
		if m.From == id {
			out = append(out, m.Payload.(*raft.Msg))
		}
	}
	return out
}

func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

type testNode struct {
	id   consensus.NodeID
	addr string
	tr   *GRPC
	in   *inbox
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

func testConfig(t *testing.T, id consensus.NodeID, peers map[consensus.NodeID]string, in *inbox) Config {
	return Config{
		ClusterID:        testClusterID,
		ID:               id,
		Peers:            peers,
		Codec:            raft.MessageCodec,
		Handler:          in.handle,
		DialBackoffBase:  10 * time.Millisecond,
		DialBackoffMax:   200 * time.Millisecond,
		HandshakeTimeout: 2 * time.Second,
		Logger:           testLogger(t),
	}
}

// startCluster starts n transports on loopback. tweak, if set, adjusts each
// config. The transports are closed when the test ends.
func startCluster(t *testing.T, n int, tweak func(*Config)) []*testNode {
	t.Helper()
	peers := map[consensus.NodeID]string{}
	lis := map[consensus.NodeID]net.Listener{}
	for i := 1; i <= n; i++ {
		id := consensus.NodeID(i)
		lis[id] = listen(t)
		peers[id] = lis[id].Addr().String()
	}
	var nodes []*testNode
	for i := 1; i <= n; i++ {
		id := consensus.NodeID(i)
		nd := &testNode{id: id, addr: peers[id], in: &inbox{}}
		cfg := testConfig(t, id, peers, nd.in)
		cfg.Listener = lis[id]
		if tweak != nil {
			tweak(&cfg)
		}
		tr, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nd.tr = tr
		t.Cleanup(func() { tr.Close() })
		nodes = append(nodes, nd)
	}
	return nodes
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// trafficFor returns the messages from sends to one peer: every message
// type, a big MsgApp batch, a MsgApp larger than a batch, and a snapshot in
// chunks. Term numbers the messages so that order can be checked.
func trafficFor(from, to consensus.NodeID) []*raft.Msg {
	var ents []consensus.Entry
	for i := range 3000 {
		ents = append(ents, consensus.Entry{Index: uint64(11 + i), Term: 3,
			Command: consensus.Command{Session: consensus.Session{ClientID: uint64(from), Seq: uint64(i + 1)}, Keys: []string{"k"}, Data: bytes.Repeat([]byte{byte(i)}, 100)}})
	}
	huge := []consensus.Entry{{Index: 11, Term: 3, Command: consensus.Command{Data: bytes.Repeat([]byte{byte(to)}, 3<<20)}}}
	voters := []consensus.NodeID{1, 2, 3}
	chunk := func(i int) []byte { return bytes.Repeat([]byte{byte(i), byte(from)}, 256<<10) }
	msgs := []*raft.Msg{
		{Type: raft.MsgPreVote, Index: 10, LogTerm: 3},
		{Type: raft.MsgPreVoteResp, Reject: true},
		{Type: raft.MsgVote, Index: 10, LogTerm: 3},
		{Type: raft.MsgVoteResp},
		{Type: raft.MsgApp, Index: 10, LogTerm: 3, Commit: 10, Entries: ents},
		{Type: raft.MsgApp, Index: 10, LogTerm: 3, Commit: 10, Entries: huge},
		{Type: raft.MsgApp, Index: 10, LogTerm: 3, Commit: 10, Entries: ents[:1]},
		{Type: raft.MsgAppResp, Index: 9, Reject: true, HintIndex: 5, HintTerm: 2},
		{Type: raft.MsgAppResp, Index: 3010},
		{Type: raft.MsgHeartbeat, Commit: 3010, ReadSeq: 4},
		{Type: raft.MsgHeartbeatResp, ReadSeq: 4},
		{Type: raft.MsgSnap, Snapshot: consensus.SnapshotMeta{Index: 3000, Term: 3, Voters: voters}, Offset: 0, Data: chunk(0)},
		{Type: raft.MsgSnapResp, Index: 3000, Offset: 512 << 10},
		{Type: raft.MsgSnap, Snapshot: consensus.SnapshotMeta{Index: 3000, Term: 3, Voters: voters}, Offset: 512 << 10, Data: chunk(1)},
		{Type: raft.MsgSnap, Snapshot: consensus.SnapshotMeta{Index: 3000, Term: 3, Voters: voters}, Offset: 1 << 20, Data: chunk(2), Last: true},
		{Type: raft.MsgSnapResp, Index: 3000, Reject: true},
	}
	for i := range 50 { // many small ones, to be batched
		msgs = append(msgs, &raft.Msg{Type: raft.MsgHeartbeat, Commit: uint64(i)})
	}
	for i, m := range msgs {
		m.Term = uint64(i + 1)
	}
	return msgs
}

func envelop(from, to consensus.NodeID, ms []*raft.Msg) []consensus.Message {
	out := make([]consensus.Message, len(ms))
	for i, m := range ms {
		out[i] = consensus.Message{From: from, To: to, Payload: m}
	}
	return out
}

func TestExchangeEveryMessageType(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	want := map[[2]consensus.NodeID][]*raft.Msg{}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				ms := trafficFor(a.id, b.id)
				want[[2]consensus.NodeID{a.id, b.id}] = ms
				// In a few calls, to mix batching with queueing.
				a.tr.Send(envelop(a.id, b.id, ms[:5]))
				a.tr.Send(envelop(a.id, b.id, ms[5:]))
			}
		}
	}
	for pair, ms := range want {
		from, to := pair[0], pair[1]
		in := nodes[to-1].in
		waitFor(t, fmt.Sprintf("%d messages %d->%d", len(ms), from, to), func() bool { return len(in.from(from)) >= len(ms) })
		got := in.from(from)
		if len(got) != len(ms) {
			t.Fatalf("%d->%d: got %d messages, want %d", from, to, len(got), len(ms))
		}
		for i := range ms {
			if !reflect.DeepEqual(got[i], ms[i]) {
				t.Fatalf("%d->%d message %d: got %v, want %v", from, to, i, got[i], ms[i])
			}
		}
	}
	for _, nd := range nodes {
		s := nd.tr.Stats()
		for id, ps := range s.Peers {
			if ps.MessagesSent != uint64(len(want[[2]consensus.NodeID{nd.id, id}])) || ps.MessagesReceived != ps.MessagesSent {
				t.Errorf("node %d peer %d: %+v", nd.id, id, ps)
			}
			if ps.FramesSent >= ps.MessagesSent {
				t.Errorf("node %d peer %d: %d frames for %d messages: no batching", nd.id, id, ps.FramesSent, ps.MessagesSent)
			}
			if ps.DroppedQueueFull+ps.DroppedTooLarge+ps.DroppedInvalid+ps.DroppedUnreachable != 0 || ps.StreamsOpened != 1 || !ps.Connected {
				t.Errorf("node %d peer %d: unexpected drops or streams: %+v", nd.id, id, ps)
			}
		}
		if s.StreamsAccepted != 2 || s.StreamsRejected != 0 || s.FramesMalformed != 0 || s.MessagesMisaddressed != 0 {
			t.Errorf("node %d: %+v", nd.id, s)
		}
	}
	// Messages to unknown peers or not from this node are dropped and counted.
	nodes[0].tr.Send([]consensus.Message{
		{From: 1, To: 9, Payload: &raft.Msg{Type: raft.MsgHeartbeat}},
		{From: 1, To: 1, Payload: &raft.Msg{Type: raft.MsgHeartbeat}},
		{From: 2, To: 3, Payload: &raft.Msg{Type: raft.MsgHeartbeat}},
		{From: 1, To: 3, Payload: &raft.Msg{}},
	})
	s := nodes[0].tr.Stats()
	if s.DroppedUnknownPeer != 2 || s.Peers[3].DroppedInvalid != 2 {
		t.Errorf("bad messages not counted: %+v", s)
	}
}

func TestPeerRestartIsReconnected(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	hb := func(i int) []consensus.Message {
		return []consensus.Message{{From: 1, To: 2, Payload: &raft.Msg{Type: raft.MsgHeartbeat, Term: 1, Commit: uint64(i)}}}
	}
	a.tr.Send(hb(0))
	waitFor(t, "first heartbeat", func() bool { return b.in.len() == 1 })
	if err := b.tr.Close(); err != nil {
		t.Fatal(err)
	}

	// Node 2 comes back on the same address with a fresh transport.
	in2 := &inbox{}
	cfg := testConfig(t, 2, map[consensus.NodeID]string{1: a.addr, 2: b.addr}, in2)
	var b2 *GRPC
	waitFor(t, "the old address to be free", func() bool {
		var err error
		b2, err = New(cfg)
		return err == nil
	})
	t.Cleanup(func() { b2.Close() })
	i := 1
	waitFor(t, "a heartbeat after the restart", func() bool {
		a.tr.Send(hb(i))
		i++
		time.Sleep(10 * time.Millisecond)
		return in2.len() > 0
	})
	s := a.tr.Stats().Peers[2]
	if s.Reconnects < 1 || s.StreamsOpened < 2 {
		t.Fatalf("no reconnect counted: %+v", s)
	}
	// In order after the reconnect.
	a.tr.Send(hb(1000))
	a.tr.Send(hb(1001))
	waitFor(t, "the last heartbeats", func() bool {
		got := in2.from(1)
		return len(got) >= 2 && got[len(got)-1].Commit == 1001 && got[len(got)-2].Commit == 1000
	})
	// b2 dialing a also works (a stream in the other direction).
	b2.Send([]consensus.Message{{From: 2, To: 1, Payload: &raft.Msg{Type: raft.MsgHeartbeatResp, Term: 1}}})
	waitFor(t, "a reply from the restarted node", func() bool { return len(a.in.from(2)) == 1 })
}

func TestSlowHandlerMakesSenderDrop(t *testing.T) {
	const queueMax = 64
	gate := make(chan struct{})
	nodes := startCluster(t, 2, func(c *Config) {
		c.SendQueueMax = queueMax
		c.MessageBytesMax = 256 << 10
		c.SendQueueBytesMax = 256 << 10
		c.BatchBytesMax = 64 << 10
	})
	a, b := nodes[0], nodes[1]
	b.in.setGate(gate) // node 2's handler blocks until the gate opens
	var opened sync.Once
	openGate := func() { opened.Do(func() { close(gate) }) }
	t.Cleanup(openGate) // before the transports close (cleanups run last-in first-out)

	const total = 20000 // 20 MB of payload: more than gRPC's flow-control windows
	data := bytes.Repeat([]byte("x"), 1000)
	for i := range total {
		a.tr.Send([]consensus.Message{{From: 1, To: 2, Payload: &raft.Msg{Type: raft.MsgApp, Term: uint64(i + 1),
			Entries: []consensus.Entry{{Index: uint64(i + 1), Term: 1, Command: consensus.Command{Data: data}}}}}})
		if s := a.tr.Stats().Peers[2]; s.QueueLen > queueMax || s.QueueBytes > 256<<10 {
			t.Fatalf("queue grew past its bounds: %+v", s)
		}
	}
	s := a.tr.Stats().Peers[2]
	if s.DroppedQueueFull == 0 {
		t.Fatalf("a blocked receiver caused no drops: %+v", s)
	}
	t.Logf("after %d sends to a blocked peer: %+v", total, s)

	openGate()
	waitFor(t, "the backlog to drain", func() bool {
		s := a.tr.Stats().Peers[2]
		return s.QueueLen == 0 && b.in.len() == int(s.MessagesSent)
	})
	got := b.in.from(1)
	for i := 1; i < len(got); i++ {
		if got[i].Term <= got[i-1].Term {
			t.Fatalf("out of order after drops: %d then %d", got[i-1].Term, got[i].Term)
		}
	}
	s = a.tr.Stats().Peers[2]
	if uint64(len(got))+s.DroppedQueueFull+s.DroppedUnreachable != total {
		t.Fatalf("%d delivered + %d dropped != %d sent", len(got), s.DroppedQueueFull+s.DroppedUnreachable, total)
	}
	// And the stream still works.
	a.tr.Send([]consensus.Message{{From: 1, To: 2, Payload: &raft.Msg{Type: raft.MsgHeartbeat, Term: total + 1}}})
	waitFor(t, "a heartbeat after the backlog", func() bool { return len(b.in.from(1)) == len(got)+1 })
}

func TestOversizedMessageIsDropped(t *testing.T) {
	nodes := startCluster(t, 2, func(c *Config) { c.MessageBytesMax = 64 << 10 })
	a, b := nodes[0], nodes[1]
	a.tr.Send([]consensus.Message{
		{From: 1, To: 2, Payload: &raft.Msg{Type: raft.MsgSnap, Term: 1, Data: make([]byte, 100<<10)}},
		{From: 1, To: 2, Payload: &raft.Msg{Type: raft.MsgHeartbeat, Term: 2}},
	})
	waitFor(t, "the heartbeat", func() bool { return b.in.len() == 1 })
	if got := b.in.from(1); got[0].Type != raft.MsgHeartbeat {
		t.Fatalf("got %v", got[0])
	}
	if s := a.tr.Stats().Peers[2]; s.DroppedTooLarge != 1 {
		t.Fatalf("oversized message not counted: %+v", s)
	}
}

// rawStream opens a peer stream to addr with a hand-rolled client, to send
// what a well-behaved transport never would.
func rawStream(t *testing.T, addr string) grpc.ClientStream {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		conn.Close()
	})
	s, err := conn.NewStream(ctx, &streamDesc, streamMethod)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sendRaw(t *testing.T, s grpc.ClientStream, frame []byte) {
	t.Helper()
	if err := s.SendMsg(&frame); err != nil {
		t.Fatalf("sending: %v", err)
	}
}

// recvStatus reads from s until it ends, and returns the status code.
func recvStatus(s grpc.ClientStream) (codes.Code, string) {
	for {
		var b []byte
		if err := s.RecvMsg(&b); err != nil {
			st := status.Convert(err)
			return st.Code(), st.Message()
		}
	}
}

func TestRejectsForeignStreams(t *testing.T) {
	nodes := startCluster(t, 2, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	a := nodes[0]
	cases := []struct {
		name  string
		hello hello
		code  codes.Code
	}{
		{"wrong cluster", hello{ClusterID: testClusterID + 1, From: 2, To: 1}, codes.PermissionDenied},
		{"unknown node", hello{ClusterID: testClusterID, From: 9, To: 1}, codes.PermissionDenied},
		{"itself", hello{ClusterID: testClusterID, From: 1, To: 1}, codes.PermissionDenied},
		{"misdirected", hello{ClusterID: testClusterID, From: 2, To: 3}, codes.FailedPrecondition},
	}
	for _, c := range cases {
		s := rawStream(t, a.addr)
		sendRaw(t, s, appendHelloFrame(nil, c.hello))
		if code, msg := recvStatus(s); code != c.code {
			t.Errorf("%s: got %v %q, want %v", c.name, code, msg, c.code)
		} else {
			t.Logf("%s: %v %q", c.name, code, msg)
		}
	}
	// No hello at all: refused after HandshakeTimeout.
	s := rawStream(t, a.addr)
	if code, _ := recvStatus(s); code != codes.DeadlineExceeded {
		t.Errorf("silent dialer: got %v, want DeadlineExceeded", code)
	}
	// A batch where the hello should be.
	s = rawStream(t, a.addr)
	sendRaw(t, s, appendBatchFrame(nil, []wireMsg{{From: 2, To: 1}}))
	if code, _ := recvStatus(s); code != codes.InvalidArgument {
		t.Errorf("batch before hello: got %v, want InvalidArgument", code)
	}
	if st := a.tr.Stats(); st.StreamsRejected != uint64(len(cases)+2) || a.in.len() != 0 {
		t.Errorf("rejections not counted, or messages delivered: %+v, %d delivered", st, a.in.len())
	}

	// Whole transports: one from another cluster, one with an unknown ID.
	// Their streams fail, they count dial failures, and nothing arrives.
	for _, c := range []struct {
		cluster uint64
		id      consensus.NodeID
	}{{testClusterID + 1, 2}, {testClusterID, 9}} {
		cfg := testConfig(t, c.id, map[consensus.NodeID]string{1: a.addr}, &inbox{})
		cfg.ClusterID = c.cluster
		cfg.Listener = listen(t)
		imp, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the impostor to be refused", func() bool {
			imp.Send([]consensus.Message{{From: c.id, To: 1, Payload: &raft.Msg{Type: raft.MsgVote, Term: 99}}})
			time.Sleep(5 * time.Millisecond)
			return imp.Stats().Peers[1].DialFailures >= 2
		})
		if s := imp.Stats().Peers[1]; s.StreamsOpened != 0 || s.MessagesSent != 0 {
			t.Errorf("impostor %d/%d got a stream: %+v", c.cluster, c.id, s)
		}
		imp.Close()
	}
	if a.in.len() != 0 {
		t.Fatalf("node 1 delivered %d messages from impostors", a.in.len())
	}
}

// logBuffer collects a transport's log, for tests that check what it says.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the lines that contain every one of substrs.
func (l *logBuffer) lines(substrs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		all := true
		for _, s := range substrs {
			all = all && strings.Contains(line, s)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// loggerTo is testLogger, also writing to buf.
func loggerTo(t *testing.T, buf *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), buf), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// helloOfVersion is h's hello frame as a member of version v sends it (the
// hello has not changed since version 1).
func helloOfVersion(v byte, h hello) []byte {
	f := appendHelloFrame(nil, h)
	f[0] = v
	return finishFrame(f[:len(f)-frameTrailerBytes], 0)
}

// TestRefusesOtherVersions: a member of another synod version is refused at
// the handshake, as an acceptor (its hello) and as a dialer (the refusal of
// its hello, from a version 1 acceptor or a later one), with an error
// naming both versions, logged as such on this side.
func TestRefusesOtherVersions(t *testing.T) {
	const want = "every member must run the same synod version"
	var alog logBuffer
	nodes := startCluster(t, 2, func(c *Config) {
		if c.ID == 1 {
			c.Logger = loggerTo(t, &alog)
		}
	})
	a := nodes[0]
	for _, v := range []byte{frameVersion - 1, frameVersion + 1} {
		s := rawStream(t, a.addr)
		sendRaw(t, s, helloOfVersion(v, hello{ClusterID: testClusterID, From: 2, To: 1}))
		// The dialer is told, in its terms, and by the trailer.
		wantMsg := fmt.Sprintf("synod transport: the peer runs transport version %d, this node version %d: %s", frameVersion, v, want)
		if code, msg := recvStatus(s); code != codes.FailedPrecondition || msg != wantMsg {
			t.Errorf("hello of version %d: got %v %q, want FailedPrecondition %q", v, code, msg, wantMsg)
		}
		if got := s.Trailer().Get(frameVersionTrailerKey); !reflect.DeepEqual(got, []string{strconv.Itoa(int(frameVersion))}) {
			t.Errorf("hello of version %d: trailer %s = %q, want %d", v, frameVersionTrailerKey, got, frameVersion)
		}
		// The acceptor logs it as an error.
		logged := alog.lines("level=ERROR", "another synod version", fmt.Sprintf("peer_version=%d version=%d", v, frameVersion),
			fmt.Sprintf("the peer runs transport version %d, this node version %d: %s", v, frameVersion, want))
		if len(logged) != 1 {
			t.Errorf("hello of version %d: %d error lines logged, want 1", v, len(logged))
		}
	}
	if st := a.tr.Stats(); st.StreamsRejected != 2 || st.FramesMalformed != 0 || a.in.len() != 0 {
		t.Errorf("version refusals miscounted, or messages delivered: %+v, %d delivered", st, a.in.len())
	}

	// As a dialer, against acceptors that refuse this node's hello.
	for _, c := range []struct {
		name   string
		peer   byte
		refuse func(ss grpc.ServerStream, hello []byte) error
	}{
		{"version 1 acceptor", 1, func(_ grpc.ServerStream, hello []byte) error {
			// Version 1's refusal, verbatim: no trailer.
			return status.Errorf(codes.InvalidArgument, "synod transport: first frame: transport: malformed frame: version %d, want 1", hello[0])
		}},
		{"later acceptor", frameVersion + 1, func(ss grpc.ServerStream, _ []byte) error {
			ss.SetTrailer(metadata.Pairs(frameVersionTrailerKey, strconv.Itoa(int(frameVersion+1))))
			return status.Error(codes.FailedPrecondition, "synod transport: refused")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			acceptor := startFakeAcceptor(t, c.refuse)
			var dlog logBuffer
			cfg := testConfig(t, 1, map[consensus.NodeID]string{1: "127.0.0.1:0", 2: acceptor}, &inbox{})
			cfg.Listener = listen(t)
			cfg.Logger = loggerTo(t, &dlog)
			tr, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			waitFor(t, "several refusals", func() bool {
				tr.Send([]consensus.Message{{From: 1, To: 2, Payload: &raft.Msg{Type: raft.MsgHeartbeat, Term: 1}}})
				time.Sleep(5 * time.Millisecond)
				return tr.Stats().Peers[2].DialFailures >= 3
			})
			tr.Close()
			if s := tr.Stats().Peers[2]; s.StreamsOpened != 0 || s.MessagesSent != 0 {
				t.Errorf("got a stream: %+v", s)
			}
			// Logged as an error once for the run of refusals, then at
			// debug level.
			text := fmt.Sprintf("the peer runs transport version %d, this node version %d: %s", c.peer, frameVersion, want)
			pv := fmt.Sprintf("peer_version=%d version=%d", c.peer, frameVersion)
			if n := len(dlog.lines("level=ERROR", "another synod version", pv, text)); n != 1 {
				t.Errorf("%d error lines logged, want 1", n)
			}
			if n := len(dlog.lines("level=DEBUG", "another synod version", pv, text)); n < 2 {
				t.Errorf("%d debug lines logged, want at least 2", n)
			}
		})
	}
}

// fakeAcceptor serves the peer service by reading a hello and refusing it.
type fakeAcceptor struct {
	refuse func(ss grpc.ServerStream, hello []byte) error
}

func (f *fakeAcceptor) serveStream(ss grpc.ServerStream) error {
	var b []byte
	if err := ss.RecvMsg(&b); err != nil {
		return err
	}
	return f.refuse(ss, b)
}

// startFakeAcceptor serves a fakeAcceptor on loopback until the test ends,
// and returns its address.
func startFakeAcceptor(t *testing.T, refuse func(ss grpc.ServerStream, hello []byte) error) string {
	t.Helper()
	lis := listen(t)
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}))
	srv.RegisterService(&serviceDesc, &fakeAcceptor{refuse: refuse})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

func TestMalformedFramesCloseTheStream(t *testing.T) {
	nodes := startCluster(t, 2, func(c *Config) { c.MessageBytesMax = 64 << 10 })
	a := nodes[0]
	open := func() grpc.ClientStream {
		s := rawStream(t, a.addr)
		sendRaw(t, s, appendHelloFrame(nil, hello{ClusterID: testClusterID, From: 2, To: 1}))
		var b []byte
		if err := s.RecvMsg(&b); err != nil {
			t.Fatalf("no hello back: %v", err)
		}
		return s
	}
	payload, _ := raft.MessageCodec.AppendMessage(nil, &raft.Msg{Type: raft.MsgHeartbeat, Term: 5})
	good := appendBatchFrame(nil, []wireMsg{{From: 2, To: 1, Payload: payload}})
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	cases := map[string][]byte{
		"garbage":             []byte("hello, world"),
		"bad checksum":        badCRC,
		"second hello":        appendHelloFrame(nil, hello{ClusterID: testClusterID, From: 2, To: 1}),
		"undecodable payload": appendBatchFrame(nil, []wireMsg{{From: 2, To: 1, Payload: []byte{99}}}),
	}
	for name, frame := range cases {
		s := open()
		sendRaw(t, s, good)
		sendRaw(t, s, frame)
		if code, msg := recvStatus(s); code != codes.InvalidArgument {
			t.Errorf("%s: got %v %q, want InvalidArgument", name, code, msg)
		}
	}
	// A frame over MessageBytesMax is refused by gRPC itself.
	s := open()
	sendRaw(t, s, appendBatchFrame(nil, []wireMsg{{From: 2, To: 1, Payload: make([]byte, 100<<10)}}))
	if code, _ := recvStatus(s); code != codes.ResourceExhausted {
		t.Errorf("oversized frame: got %v, want ResourceExhausted", code)
	}
	// Misaddressed messages are dropped; the stream and its good messages
	// carry on.
	s = open()
	sendRaw(t, s, appendBatchFrame(nil, []wireMsg{{From: 3, To: 1, Payload: payload}, {From: 2, To: 3, Payload: payload}, {From: 2, To: 1, Payload: payload}}))
	waitFor(t, "the well-addressed message", func() bool { return a.in.len() == len(cases)+1 })
	st := a.tr.Stats()
	if st.FramesMalformed != uint64(len(cases)) || st.MessagesMisaddressed != 2 {
		t.Fatalf("malformed frames or misaddressed messages not counted: %+v", st)
	}
	// The real peer still gets through.
	nodes[1].tr.Send([]consensus.Message{{From: 2, To: 1, Payload: &raft.Msg{Type: raft.MsgHeartbeat, Term: 6}}})
	waitFor(t, "the real peer's message", func() bool { return a.in.len() == len(cases)+2 })
}

func TestConfigValidation(t *testing.T) {
	base := func() Config {
		return Config{ClusterID: 1, ID: 1, Peers: map[consensus.NodeID]string{1: "127.0.0.1:0", 2: "127.0.0.1:1"},
			Codec: raft.MessageCodec, Handler: func(consensus.Message) {}}
	}
	bad := map[string]func(*Config){
		"no cluster":          func(c *Config) { c.ClusterID = 0 },
		"no ID":               func(c *Config) { c.ID = 0 },
		"no codec":            func(c *Config) { c.Codec = nil },
		"no handler":          func(c *Config) { c.Handler = nil },
		"bad address":         func(c *Config) { c.Peers[2] = "nowhere" },
		"zero peer":           func(c *Config) { c.Peers[0] = "127.0.0.1:2" },
		"no listen address":   func(c *Config) { delete(c.Peers, 1) },
		"tiny MessageBytes":   func(c *Config) { c.MessageBytesMax = 100 },
		"batch over message":  func(c *Config) { c.BatchBytesMax = MessageBytesMaxDefault + 1 },
		"queue under message": func(c *Config) { c.SendQueueBytesMax = 1 << 10 },
		"backoff":             func(c *Config) { c.DialBackoffBase, c.DialBackoffMax = time.Second, time.Millisecond },
		"queue":               func(c *Config) { c.SendQueueMax = SendQueueMaxLimit + 1 },
	}
	for name, f := range bad {
		c := base()
		f(&c)
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c, err := base().withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != "127.0.0.1:0" || c.MessageBytesMax != MessageBytesMaxDefault || c.SendQueueMax != SendQueueMaxDefault || c.Logger == nil {
		t.Fatalf("defaults not applied: %+v", c)
	}
	// New listens on Peers[ID] when given no listener.
	tr, err := New(base())
	if err != nil {
		t.Fatal(err)
	}
	if tr.Addr().String() == "127.0.0.1:0" {
		t.Fatalf("listening on %v", tr.Addr())
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCloseLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	gate := make(chan struct{})
	nodes := startClusterNoCleanup(t, 3)
	nodes[2].in.setGate(gate)
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.tr.Send(envelop(a.id, b.id, trafficFor(a.id, b.id)[:20]))
			}
		}
	}
	waitFor(t, "traffic", func() bool { return nodes[0].in.len() >= 40 && nodes[1].in.len() >= 40 })
	// Node 3's handler is blocked; the others close while their streams to
	// it are stuck, then node 3 closes once its handler is released.
	for _, nd := range nodes[:2] {
		if err := nd.tr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	if err := nodes[2].tr.Close(); err != nil {
		t.Fatal(err)
	}
	nodes[0].tr.Send(envelop(1, 2, trafficFor(1, 2)[:3])) // after Close: dropped, no goroutine
}

// startClusterNoCleanup is startCluster for a test that closes the
// transports itself.
func startClusterNoCleanup(t *testing.T, n int) []*testNode {
	t.Helper()
	peers := map[consensus.NodeID]string{}
	lis := map[consensus.NodeID]net.Listener{}
	for i := 1; i <= n; i++ {
		id := consensus.NodeID(i)
		lis[id] = listen(t)
		peers[id] = lis[id].Addr().String()
	}
	var nodes []*testNode
	for i := 1; i <= n; i++ {
		id := consensus.NodeID(i)
		nd := &testNode{id: id, addr: peers[id], in: &inbox{}}
		cfg := testConfig(t, id, peers, nd.in)
		cfg.Listener = lis[id]
		tr, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nd.tr = tr
		nodes = append(nodes, nd)
	}
	return nodes
}

// testTLS makes a CA and one certificate for 127.0.0.1 signed by it, usable
// by both sides, and returns mutual-TLS server and client configs.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := key(), key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "synod test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "synod node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client
}

func TestMutualTLS(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	nodes := startCluster(t, 2, func(c *Config) { c.ServerTLS, c.ClientTLS = serverTLS, clientTLS })
	nodes[0].tr.Send([]consensus.Message{{From: 1, To: 2, Payload: &raft.Msg{Type: raft.MsgHeartbeat, Term: 1}}})
	nodes[1].tr.Send([]consensus.Message{{From: 2, To: 1, Payload: &raft.Msg{Type: raft.MsgHeartbeatResp, Term: 1}}})
	waitFor(t, "messages over TLS", func() bool { return nodes[0].in.len() == 1 && nodes[1].in.len() == 1 })

	// A plaintext dialer gets nowhere.
	conn, err := grpc.NewClient(nodes[0].addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := conn.NewStream(ctx, &streamDesc, streamMethod)
	if err == nil {
		hb := appendHelloFrame(nil, hello{ClusterID: testClusterID, From: 2, To: 1})
		s.SendMsg(&hb)
		var b []byte
		err = s.RecvMsg(&b)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext dial to a TLS transport: %v", err)
	}
	if nodes[0].in.len() != 1 {
		t.Fatal("plaintext dialer delivered a message")
	}
}
