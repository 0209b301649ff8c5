package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synod-io/synod/consensus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// peerState is where a peer's outbound stream is in its life.
type peerState uint8

const (
	// peerIdle: no stream; one is opened when a message is queued (Send
	// queues in this state).
	peerIdle peerState = iota
	// peerConnected: a stream is open and the queue is being drained.
	peerConnected
	// peerBackoff: a stream failed; Send drops until the back-off ends.
	peerBackoff
)

// peer is the outbound side of one peer: a bounded queue that Send fills
// and one goroutine (run) that drains it onto a stream.
type peer struct {
	t    *GRPC
	id   consensus.NodeID
	addr string
	conn *grpc.ClientConn
	log  *slog.Logger

	// wake is signalled (without blocking) when a message is queued.
	wake chan struct{}
	// done is closed by close.
	done chan struct{}

	mu sync.Mutex
	// ring holds the queue: n messages from head, wrapping. Invariant:
	// n <= len(ring) == Config.SendQueueMax, and bytes is the sum of the
	// queued messages' batchBytes, at most Config.SendQueueBytesMax.
	ring  []wireMsg
	head  int
	n     int
	bytes int
	state peerState
	// dropping is set when Send drops for a full queue, and cleared when a
	// frame goes out; it keeps the log to one line per episode.
	dropping bool
	closed   bool

	messagesSent, bytesSent, framesSent             atomic.Uint64
	messagesReceived, bytesReceived, framesReceived atomic.Uint64
	droppedQueueFull, droppedTooLarge               atomic.Uint64
	droppedInvalid, droppedUnreachable              atomic.Uint64
	streamsOpened, reconnects, dialFailures         atomic.Uint64
}

func newPeer(t *GRPC, id consensus.NodeID, addr string, conn *grpc.ClientConn) *peer {
	return &peer{
		t:    t,
		id:   id,
		addr: addr,
		conn: conn,
		log:  t.log.With("peer", uint64(id), "addr", addr),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
		ring: make([]wireMsg, t.cfg.SendQueueMax),
	}
}

// send encodes m and queues it, or drops it.
func (p *peer) send(m *consensus.Message) {
	cfg := &p.t.cfg
	if m.From != cfg.ID {
		if p.droppedInvalid.Add(1) == 1 {
			p.log.Error("transport: dropping message not sent by this node", "from", uint64(m.From), "type", payloadType(m.Payload))
		}
		return
	}
	payload, err := cfg.Codec.AppendMessage(nil, m.Payload)
	if err != nil {
		p.droppedInvalid.Add(1)
		p.log.Error("transport: dropping message that does not encode", "type", payloadType(m.Payload), "err", err)
		return
	}
	w := wireMsg{From: m.From, To: m.To, Payload: payload}
	size := w.batchBytes()
	if size > cfg.MessageBytesMax-batchOverheadMax {
		p.droppedTooLarge.Add(1)
		p.log.Error("transport: dropping message larger than MessageBytesMax",
			"type", payloadType(m.Payload), "bytes", size, "limit", cfg.MessageBytesMax-batchOverheadMax)
		return
	}
	p.mu.Lock()
	switch {
	case p.closed || p.state == peerBackoff:
		p.mu.Unlock()
		p.droppedUnreachable.Add(1)
		return
	case p.n == len(p.ring) || p.bytes+size > cfg.SendQueueBytesMax:
		first := !p.dropping
		p.dropping = true
		qlen, qbytes := p.n, p.bytes
		p.mu.Unlock()
		n := p.droppedQueueFull.Add(1)
		if first {
			p.log.Warn("transport: send queue full, dropping new messages", "queued", qlen, "queued_bytes", qbytes, "dropped_total", n)
		}
		return
	}
	p.ring[(p.head+p.n)%len(p.ring)] = w
	p.n++
	p.bytes += size
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take appends to batch queued messages, oldest first, up to one frame's
// worth (at least one message if any is queued), and removes them from the
// queue.
func (p *peer) take(batch []wireMsg) []wireMsg {
	limit := p.t.cfg.BatchBytesMax - batchOverheadMax
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	for p.n > 0 && len(batch) < frameMessagesMax {
		w := &p.ring[p.head]
		size := w.batchBytes()
		if len(batch) > 0 && total+size > limit {
			break
		}
		total += size
		batch = append(batch, *w)
		*w = wireMsg{}
		p.head = (p.head + 1) % len(p.ring)
		p.n--
		p.bytes -= size
	}
	return batch
}

// fail drops everything queued and enters back-off.
func (p *peer) fail() {
	p.mu.Lock()
	dropped := p.n
	for p.n > 0 {
		p.ring[p.head] = wireMsg{}
		p.head = (p.head + 1) % len(p.ring)
		p.n--
	}
	p.head, p.bytes = 0, 0
	p.state = peerBackoff
	p.mu.Unlock()
	p.droppedUnreachable.Add(uint64(dropped))
}

func (p *peer) setState(s peerState) {
	p.mu.Lock()
	p.state = s
	p.mu.Unlock()
}

func (p *peer) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	close(p.done)
}

// run opens the stream when there is something to send, drains the queue
// onto it, and after a failure backs off and starts over. It returns when
// the transport closes.
func (p *peer) run() {
	var wait time.Duration // the current back-off; 0 after a healthy stream
	failures := 0          // failed attempts in a row
	// versionFailing is set while attempts in a row fail for the peer's
	// version, which is logged as an error once per such run.
	versionFailing := false
	for {
		if !p.waitForWork() {
			return
		}
		s, err := p.open()
		if err != nil {
			if p.isClosed() {
				return
			}
			p.dialFailures.Add(1)
			failures++
			wait = nextBackoff(wait, p.t.cfg.DialBackoffBase, p.t.cfg.DialBackoffMax)
			ve := (*versionError)(nil)
			switch {
			case errors.As(err, &ve):
				level := slog.LevelDebug
				if !versionFailing {
					level = slog.LevelError
				}
				versionFailing = true
				p.log.Log(context.Background(), level, "transport: cannot open stream to a peer that runs another synod version",
					"peer_version", ve.Peer, "version", ve.Local, "err", err, "failures", failures, "retry_in", wait)
			default:
				versionFailing = false
				level := slog.LevelDebug
				if failures == 1 {
					level = slog.LevelWarn
				}
				p.log.Log(context.Background(), level, "transport: cannot open stream to peer", "err", err, "failures", failures, "retry_in", wait)
			}
			p.fail()
			if !p.sleep(jitter(wait)) {
				return
			}
			p.setState(peerIdle)
			continue
		}
		if p.streamsOpened.Add(1) > 1 {
			p.reconnects.Add(1)
		}
		p.log.Info("transport: stream to peer open", "after_failures", failures)
		failures, versionFailing = 0, false
		p.setState(peerConnected)
		opened := time.Now()
		err = p.pump(s)
		s.close()
		if p.isClosed() {
			return
		}
		if time.Since(opened) > p.t.cfg.DialBackoffMax {
			wait = 0 // the stream was healthy for a while: start back-off over
		}
		wait = nextBackoff(wait, p.t.cfg.DialBackoffBase, p.t.cfg.DialBackoffMax)
		p.log.Warn("transport: stream to peer failed", "err", err, "retry_in", wait)
		p.fail()
		if !p.sleep(jitter(wait)) {
			return
		}
		p.setState(peerIdle)
	}
}

func (p *peer) isClosed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitForWork waits until a message is queued; it returns false if the
// transport closes first.
func (p *peer) waitForWork() bool {
	for {
		p.mu.Lock()
		n := p.n
		p.mu.Unlock()
		if n > 0 {
			return true
		}
		select {
		case <-p.wake:
		case <-p.done:
			return false
		}
	}
}

// sleep waits d; it returns false if the transport closes first.
func (p *peer) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-p.done:
		return false
	}
}

// outStream is an open outbound stream and the goroutine reading it.
type outStream struct {
	stream grpc.ClientStream
	cancel context.CancelFunc
	// recvErr receives the error that ended the stream's read side. The
	// acceptor sends nothing after its hello, so any read ends the stream.
	recvErr chan error
	// readerDone is closed when the reading goroutine returns.
	readerDone chan struct{}
}

// close cancels the stream and waits for its reader.
func (s *outStream) close() {
	s.cancel()
	<-s.readerDone
}

// open opens a stream to the peer and exchanges hellos, within
// Config.HandshakeTimeout.
func (p *peer) open() (*outStream, error) {
	cfg := &p.t.cfg
	ctx, cancel := context.WithCancel(p.t.ctx)
	timer := time.AfterFunc(cfg.HandshakeTimeout, cancel)
	fail := func(err error) (*outStream, error) {
		timer.Stop()
		cancel()
		return nil, err
	}
	stream, err := p.conn.NewStream(ctx, &streamDesc, streamMethod)
	if err != nil {
		return fail(err)
	}
	hb := appendHelloFrame(nil, hello{ClusterID: cfg.ClusterID, From: cfg.ID, To: p.id})
	if err := stream.SendMsg(&hb); err != nil {
		if errors.Is(err, io.EOF) {
			// The stream ended; its status says why.
			var b []byte
			if err = stream.RecvMsg(&b); err != nil && !errors.Is(err, io.EOF) {
				err = versionRefusal(stream, err)
			}
		}
		return fail(fmt.Errorf("sending hello: %w", err))
	}
	var resp []byte
	if err := stream.RecvMsg(&resp); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("peer closed the stream without a hello")
		} else {
			err = versionRefusal(stream, err)
		}
		return fail(fmt.Errorf("awaiting hello: %w", err))
	}
	if !timer.Stop() {
		return fail(fmt.Errorf("no hello within %v", cfg.HandshakeTimeout))
	}
	f, err := decodeFrame(resp, cfg.MessageBytesMax)
	if err == nil && f.Kind != frameKindHello {
		err = frameErrorf("kind %d, want a hello", f.Kind)
	}
	var h hello
	if err == nil {
		h, err = decodeHello(f.Body)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("peer's hello: %w", err)
	}
	if h.ClusterID != cfg.ClusterID || h.From != p.id || h.To != cfg.ID {
		cancel()
		return nil, fmt.Errorf("peer says it is node %d of cluster %d talking to node %d; want node %d of cluster %d talking to node %d",
			h.From, h.ClusterID, h.To, p.id, cfg.ClusterID, cfg.ID)
	}
	s := &outStream{stream: stream, cancel: cancel, recvErr: make(chan error, 1), readerDone: make(chan struct{})}
	go func() {
		defer close(s.readerDone)
		var b []byte
		err := stream.RecvMsg(&b)
		if err == nil {
			err = errors.New("peer sent a frame after its hello")
		} else if errors.Is(err, io.EOF) {
			err = errors.New("peer closed the stream")
		}
		s.recvErr <- err
	}()
	return s, nil
}

// frameV1VersionRefusal is the status message with which a version 1
// acceptor refuses a hello of another version: the hello's version, then
// the acceptor's.
const frameV1VersionRefusal = "synod transport: first frame: transport: malformed frame: version %d, want %d"

// versionRefusal returns a *versionError if err, with which stream ended
// during the handshake (a RecvMsg error other than io.EOF), is the peer
// refusing this node's hello for its version: a status naming the peer's
// version in frameVersionTrailerKey, or a version 1 peer's
// codes.InvalidArgument with frameV1VersionRefusal. Else it returns err.
func versionRefusal(stream grpc.ClientStream, err error) error {
	if v := stream.Trailer().Get(frameVersionTrailerKey); len(v) == 1 {
		if peer, perr := strconv.ParseUint(v[0], 10, 8); perr == nil && byte(peer) != frameVersion {
			return &versionError{Local: frameVersion, Peer: byte(peer)}
		}
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
		var sent, peer uint8
		if n, _ := fmt.Sscanf(st.Message(), frameV1VersionRefusal, &sent, &peer); n == 2 && sent == frameVersion && peer != frameVersion {
			return &versionError{Local: frameVersion, Peer: peer}
		}
	}
	return err
}

// pump sends the queue's messages on s, batched, until s fails or the
// transport closes; it returns why.
func (p *peer) pump(s *outStream) error {
	var batch []wireMsg
	for {
		batch = p.take(batch[:0])
		if len(batch) == 0 {
			select {
			case <-p.wake:
				continue
			case err := <-s.recvErr:
				return err
			case <-p.done:
				return ErrClosed
			}
		}
		size := batchOverheadMax
		for i := range batch {
			size += batch[i].batchBytes()
		}
		// A fresh buffer per frame: gRPC may still hold the previous one.
		frame := appendBatchFrame(make([]byte, 0, size), batch)
		if err := s.stream.SendMsg(&frame); err != nil {
			p.droppedUnreachable.Add(uint64(len(batch)))
			if errors.Is(err, io.EOF) {
				select {
				case err = <-s.recvErr:
				case <-p.done:
					err = ErrClosed
				}
			}
			return fmt.Errorf("sending: %w", err)
		}
		p.messagesSent.Add(uint64(len(batch)))
		p.bytesSent.Add(uint64(len(frame)))
		p.framesSent.Add(1)
		p.mu.Lock()
		p.dropping = false
		p.mu.Unlock()
		clear(batch)
	}
}

// nextBackoff doubles the wait, from base, up to limit.
func nextBackoff(wait, base, limit time.Duration) time.Duration {
	if wait <= 0 {
		return base
	}
	return min(2*wait, limit)
}

// jitter picks a wait in [d/2, d], so that peers that failed together do
// not retry in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func (p *peer) stats() PeerStats {
	p.mu.Lock()
	s := PeerStats{Addr: p.addr, Connected: p.state == peerConnected, QueueLen: p.n, QueueBytes: p.bytes}
	p.mu.Unlock()
	s.MessagesSent = p.messagesSent.Load()
	s.BytesSent = p.bytesSent.Load()
	s.FramesSent = p.framesSent.Load()
	s.MessagesReceived = p.messagesReceived.Load()
	s.BytesReceived = p.bytesReceived.Load()
	s.FramesReceived = p.framesReceived.Load()
	s.DroppedQueueFull = p.droppedQueueFull.Load()
	s.DroppedTooLarge = p.droppedTooLarge.Load()
	s.DroppedInvalid = p.droppedInvalid.Load()
	s.DroppedUnreachable = p.droppedUnreachable.Load()
	s.StreamsOpened = p.streamsOpened.Load()
	s.Reconnects = p.reconnects.Load()
	s.DialFailures = p.dialFailures.Load()
	return s
}
