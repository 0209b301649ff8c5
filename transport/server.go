package transport

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/synod-io/synod/consensus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// serveStream handles one inbound stream: it reads the dialer's hello,
// refuses the stream unless the hello is of this version (frameVersion)
// and the dialer is a configured peer of this cluster dialing this node,
// answers with this node's hello, and then delivers the messages of each
// batch frame to the Handler in order. A malformed frame or payload ends
// the stream with codes.InvalidArgument.
func (t *GRPC) serveStream(ss grpc.ServerStream) error {
	if !t.enter() {
		return status.Error(codes.Unavailable, "transport: closed")
	}
	defer t.wg.Done()
	remote := "unknown"
	if pr, ok := grpcpeer.FromContext(ss.Context()); ok && pr.Addr != nil {
		remote = pr.Addr.String()
	}
	log := t.log.With("remote", remote)

	h, err := t.recvHello(ss)
	if ve := (*versionError)(nil); errors.As(err, &ve) {
		t.streamsRejected.Add(1)
		log.Error("transport: rejecting inbound stream from a peer that runs another synod version",
			"peer_version", ve.Peer, "version", ve.Local, "err", ve)
		// Tell the dialer, in its terms: its peer is this node.
		ss.SetTrailer(metadata.Pairs(frameVersionTrailerKey, strconv.Itoa(int(ve.Local))))
		return status.Error(codes.FailedPrecondition, "synod transport: "+(&versionError{Local: ve.Peer, Peer: ve.Local}).text())
	}
	if err != nil {
		t.streamsRejected.Add(1)
		log.Warn("transport: rejecting inbound stream", "err", err)
		return err
	}
	p := t.peers[h.From]
	switch {
	case h.ClusterID != t.cfg.ClusterID:
		err = status.Errorf(codes.PermissionDenied, "synod transport: node %d is in cluster %d, not cluster %d", t.cfg.ID, t.cfg.ClusterID, h.ClusterID)
	case p == nil:
		err = status.Errorf(codes.PermissionDenied, "synod transport: node %d is not a peer of node %d in cluster %d", h.From, t.cfg.ID, t.cfg.ClusterID)
	case h.To != t.cfg.ID:
		err = status.Errorf(codes.FailedPrecondition, "synod transport: this is node %d, not node %d", t.cfg.ID, h.To)
	}
	if err != nil {
		t.streamsRejected.Add(1)
		log.Warn("transport: rejecting inbound stream", "cluster", h.ClusterID, "from", uint64(h.From), "to", uint64(h.To), "err", err)
		return err
	}
	log = log.With("peer", uint64(h.From))
	reply := appendHelloFrame(nil, hello{ClusterID: t.cfg.ClusterID, From: t.cfg.ID, To: h.From})
	if err := ss.SendMsg(&reply); err != nil {
		log.Debug("transport: inbound stream ended during hello", "err", err)
		return err
	}
	t.streamsAccepted.Add(1)
	log.Info("transport: inbound stream open")

	misaddressedLogged := false
	for {
		var data []byte
		if err := ss.RecvMsg(&data); err != nil {
			if errors.Is(err, io.EOF) {
				log.Debug("transport: inbound stream closed by peer")
				return nil
			}
			log.Debug("transport: inbound stream ended", "err", err)
			return err
		}
		msgs, err := decodeBatchFrame(data, t.cfg.MessageBytesMax)
		if err != nil {
			t.framesMalformed.Add(1)
			log.Error("transport: malformed frame from peer; closing its stream", "bytes", len(data), "err", err)
			return status.Errorf(codes.InvalidArgument, "synod transport: %v", err)
		}
		p.framesReceived.Add(1)
		p.bytesReceived.Add(uint64(len(data)))
		for i := range msgs {
			w := &msgs[i]
			if w.From != h.From || w.To != t.cfg.ID {
				t.messagesMisaddressed.Add(1)
				if !misaddressedLogged {
					misaddressedLogged = true
					log.Warn("transport: dropping misaddressed message (further ones on this stream are dropped silently)",
						"from", uint64(w.From), "to", uint64(w.To))
				}
				continue
			}
			payload, err := t.cfg.Codec.DecodeMessage(w.Payload)
			if err != nil {
				t.framesMalformed.Add(1)
				log.Error("transport: undecodable message from peer; closing its stream", "err", err)
				return status.Errorf(codes.InvalidArgument, "synod transport: message %d of frame: %v", i, err)
			}
			if t.ctx.Err() != nil {
				return status.Error(codes.Unavailable, "transport: closed")
			}
			p.messagesReceived.Add(1)
			t.cfg.Handler(consensus.Message{From: w.From, To: w.To, Payload: payload})
		}
	}
}

// decodeBatchFrame decodes a frame that must be a batch. A batch comes
// after hellos of the same version, so one of another version is
// malformed (corrupt), not a versionError.
func decodeBatchFrame(data []byte, maxBytes int) ([]wireMsg, error) {
	f, err := decodeFrame(data, maxBytes)
	if ve := (*versionError)(nil); errors.As(err, &ve) {
		return nil, frameErrorf("version %d, want %d", ve.Peer, ve.Local)
	}
	if err != nil {
		return nil, err
	}
	if f.Kind != frameKindBatch {
		return nil, frameErrorf("kind %d, want a batch", f.Kind)
	}
	return decodeBatch(f.Body)
}

// recvHello reads the stream's first frame, which must be a hello, within
// Config.HandshakeTimeout. The error it returns is a *versionError for a
// frame of another version, else a gRPC status.
func (t *GRPC) recvHello(ss grpc.ServerStream) (hello, error) {
	type result struct {
		data []byte
		err  error
	}
	ch := make(chan result, 1)
	// RecvMsg cannot be given a deadline; read on another goroutine, which
	// returns when the stream ends (at the latest when this handler
	// returns).
	if !t.goTracked(func() {
		var data []byte
		err := ss.RecvMsg(&data)
		ch <- result{data, err}
	}) {
		return hello{}, status.Error(codes.Unavailable, "transport: closed")
	}
	timer := time.NewTimer(t.cfg.HandshakeTimeout)
	defer timer.Stop()
	var r result
	select {
	case r = <-ch:
	case <-timer.C:
		return hello{}, status.Errorf(codes.DeadlineExceeded, "synod transport: no hello within %v", t.cfg.HandshakeTimeout)
	case <-ss.Context().Done():
		return hello{}, status.FromContextError(ss.Context().Err()).Err()
	}
	if r.err != nil {
		if errors.Is(r.err, io.EOF) {
			return hello{}, status.Error(codes.InvalidArgument, "synod transport: stream closed before its hello")
		}
		return hello{}, r.err
	}
	f, err := decodeFrame(r.data, t.cfg.MessageBytesMax)
	if ve := (*versionError)(nil); errors.As(err, &ve) {
		return hello{}, ve
	}
	if err == nil && f.Kind != frameKindHello {
		err = frameErrorf("kind %d, want a hello", f.Kind)
	}
	var h hello
	if err == nil {
		h, err = decodeHello(f.Body)
	}
	if err != nil {
		t.framesMalformed.Add(1)
		return hello{}, status.Errorf(codes.InvalidArgument, "synod transport: %v", fmt.Errorf("first frame: %w", err))
	}
	return h, nil
}
