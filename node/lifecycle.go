package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synod-io/synod/transport"
)

// lifecycle is what the two kinds of member (Node and GossipNode) share
// about running: the loop's stop and done channels, the fatal error that
// stopped it, a Stop that runs once, and the wait for an answer from the
// loop. A member embeds it, so Err and Done are its methods.
type lifecycle struct {
	stopc chan struct{} // closed by Stop
	donec chan struct{} // closed when the loop returns
	fatal atomic.Pointer[error]

	stopMu sync.Mutex
	// stopped is set once Stop began (under stopMu); closeErr is what it
	// returned.
	stopped  bool
	closeErr error
}

func newLifecycle() lifecycle {
	return lifecycle{stopc: make(chan struct{}), donec: make(chan struct{})}
}

// Err returns the fatal error that stopped the member's loop, or nil.
func (l *lifecycle) Err() error {
	if p := l.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// Done is closed when the member's loop has stopped, by Stop or by a fatal
// error (see Err).
func (l *lifecycle) Done() <-chan struct{} { return l.donec }

// setFatal records the error that stops the loop, and logs it.
func (l *lifecycle) setFatal(log *slog.Logger, err error) {
	l.fatal.Store(&err)
	log.Error("member stopped after a fatal error; restart it to recover from what is durable", "err", err)
}

// checkRunning returns ErrStopped (wrapping the fatal error, if any) once
// the loop has stopped.
func (l *lifecycle) checkRunning() error {
	select {
	case <-l.donec:
		if err := l.Err(); err != nil {
			return fmt.Errorf("%w: %w", ErrStopped, err)
		}
		return ErrStopped
	default:
		return nil
	}
}

// await waits for the loop's answer on done, for ctx, or for the loop to
// stop (the loop answers everything queued before it exits). It returns
// the answer's err as its error.
func (l *lifecycle) await(ctx context.Context, done chan proposalResult) (proposalResult, error) {
	var r proposalResult
	select {
	case r = <-done:
	case <-ctx.Done():
		return proposalResult{}, ctx.Err()
	case <-l.donec:
		select {
		case r = <-done:
		default:
			return proposalResult{}, l.checkRunning()
		}
	}
	return r, r.err
}

// stop stops the loop and waits for it, then, once, waits up to
// leaveTimeout for the SWIM leave announcement to be sent, closes the
// transport and calls closeStorage. Calling it again returns the same
// error.
func (l *lifecycle) stop(log *slog.Logger, leaveTimeout time.Duration, tr transport.Transport, closeStorage func() error) error {
	l.stopMu.Lock()
	defer l.stopMu.Unlock()
	if l.stopped {
		return l.closeErr
	}
	l.stopped = true
	close(l.stopc)
	<-l.donec
	awaitSent(tr, leaveTimeout)
	var errs []error
	if err := tr.Close(); err != nil {
		errs = append(errs, fmt.Errorf("node: closing the transport: %w", err))
	}
	errs = append(errs, closeStorage())
	l.closeErr = errors.Join(errs...)
	log.Info("stopped")
	return l.closeErr
}

// announceLeave starts SWIM's graceful leave, if leaveTimeout asks for one,
// and sends the announcement; the loop calls it as it stops.
func announceLeave(log *slog.Logger, leaveTimeout time.Duration, swim *membership, tr transport.Transport) {
	if leaveTimeout <= 0 {
		return
	}
	msgs, err := swim.leave()
	if err != nil {
		log.Warn("leaving the SWIM group", "err", err)
	}
	tr.Send(msgs)
}

// withTimeout bounds ctx by d if it has no deadline.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// clonePeers copies a member list, URLs included.
func clonePeers(peers []Peer) []Peer {
	out := make([]Peer, len(peers))
	for i, p := range peers {
		p.PeerURLs, p.ClientURLs = slices.Clone(p.PeerURLs), slices.Clone(p.ClientURLs)
		out[i] = p
	}
	return out
}
