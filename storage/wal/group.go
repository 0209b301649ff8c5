package wal

import (
	"fmt"
	"sync"
)

// Group commit limits.
const (
	// QueueAppendsMaxDefault is the default bound on Append calls waiting
	// for the writer; further callers block (backpressure).
	QueueAppendsMaxDefault = 1024
	// QueueAppendsLimit caps GroupOptions.QueueAppendsMax.
	QueueAppendsLimit = 1 << 16
	// BatchBytesMaxDefault is the default number of payload bytes after
	// which the writer stops adding appends to a batch.
	BatchBytesMaxDefault = 4 << 20
)

// GroupOptions configure a Committer. The zero value is usable.
type GroupOptions struct {
	// QueueAppendsMax bounds the Append calls waiting to be written, in
	// [1, QueueAppendsLimit]. Zero means QueueAppendsMaxDefault.
	QueueAppendsMax int
	// BatchBytesMax is the payload size after which a batch takes no more
	// appends (one append is never split). Zero means BatchBytesMaxDefault.
	BatchBytesMax int
}

// Result is the outcome of an asynchronous append.
type Result struct {
	// Last is the index of the append's last record, durable if Err is nil.
	Last uint64
	// Err, if not nil, means the records must not be considered durable.
	Err error
}

// GroupStats counts a Committer's work.
type GroupStats struct {
	Batches int64 // write+fsync rounds
	Appends int64 // Append calls completed
	Records int64 // records in them
}

// Committer is a group-commit front end for a Log: concurrent appenders
// queue their records, and one writer goroutine takes everything queued,
// writes it with one Log.Append and makes it durable with one fsync, then
// reports each caller's last index. Each Append call's records are
// contiguous in the log, and calls are ordered as the writer dequeues them.
//
// Committer is for the real host; the deterministic simulator uses the
// Log directly. While a Committer runs, other goroutines may still call the
// Log's methods, but their order relative to queued appends is unspecified.
type Committer struct {
	log  *Log
	opts GroupOptions

	// mu guards closed and sending on reqs: senders hold it shared, Close
	// exclusively, so reqs is never sent on after it is closed.
	mu     sync.RWMutex
	closed bool
	reqs   chan *appendReq
	done   chan struct{}

	statsMu sync.Mutex
	stats   GroupStats
}

type appendReq struct {
	recs  []Record
	bytes int
	res   chan Result
}

// NewCommitter starts a Committer's writer goroutine over l. Close stops
// it; l stays open and remains the caller's to close.
func NewCommitter(l *Log, opts GroupOptions) (*Committer, error) {
	if opts.QueueAppendsMax == 0 {
		opts.QueueAppendsMax = QueueAppendsMaxDefault
	}
	if opts.BatchBytesMax == 0 {
		opts.BatchBytesMax = BatchBytesMaxDefault
	}
	if opts.QueueAppendsMax < 1 || opts.QueueAppendsMax > QueueAppendsLimit {
		return nil, fmt.Errorf("wal: GroupOptions.QueueAppendsMax %d must be in [1, %d]", opts.QueueAppendsMax, QueueAppendsLimit)
	}
	if opts.BatchBytesMax < 1 {
		return nil, fmt.Errorf("wal: GroupOptions.BatchBytesMax %d must be positive", opts.BatchBytesMax)
	}
	c := &Committer{
		log:  l,
		opts: opts,
		reqs: make(chan *appendReq, opts.QueueAppendsMax),
		done: make(chan struct{}),
	}
	go c.run()
	return c, nil
}

// AppendAsync queues recs and returns a channel that receives one Result
// once they are durable or have failed. It blocks while the queue is full.
// Invalid records fail at once, without being queued.
func (c *Committer) AppendAsync(recs ...Record) <-chan Result {
	res := make(chan Result, 1)
	req := &appendReq{recs: recs, res: res}
	for _, r := range recs {
		if err := c.log.validate(r); err != nil {
			res <- Result{Err: err}
			return res
		}
		req.bytes += len(r.Data)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		res <- Result{Err: ErrClosed}
		return res
	}
	c.reqs <- req
	return res
}

// Append queues recs and waits until they are durable, returning the index
// of the last one. With no records it waits for nothing and returns the
// log's last index.
func (c *Committer) Append(recs ...Record) (uint64, error) {
	r := <-c.AppendAsync(recs...)
	return r.Last, r.Err
}

// Stats returns the Committer's counters.
func (c *Committer) Stats() GroupStats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return c.stats
}

// Close stops accepting appends, waits until every queued append is
// written and synced (or failed), and stops the writer goroutine. It does
// not close the Log. Calling Close again returns ErrClosed.
func (c *Committer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.closed = true
	close(c.reqs)
	c.mu.Unlock()
	<-c.done
	return nil
}

// run is the writer: it takes one queued append (waiting for it), then
// whatever else is queued up to the batch limit, and commits them together.
func (c *Committer) run() {
	defer close(c.done)
	var batch []*appendReq
	var recs []Record
	for {
		req, ok := <-c.reqs
		if !ok {
			return
		}
		batch, recs = append(batch[:0], req), append(recs[:0], req.recs...)
		bytes := req.bytes
		open := true
	drain:
		for bytes < c.opts.BatchBytesMax {
			select {
			case req, ok := <-c.reqs:
				if !ok {
					open = false
					break drain
				}
				batch = append(batch, req)
				recs = append(recs, req.recs...)
				bytes += req.bytes
			default:
				break drain
			}
		}
		c.commit(batch, recs)
		clear(batch) // drop references to completed requests
		clear(recs)
		if !open {
			return
		}
	}
}

// commit appends and syncs one batch and answers each request.
func (c *Committer) commit(batch []*appendReq, recs []Record) {
	last, err := c.log.AppendSync(recs...)
	if err == nil && len(recs) == 0 {
		last = c.log.LastIndex()
	}
	end := last - uint64(len(recs)) // index before the batch's first record
	for _, req := range batch {
		if err != nil {
			req.res <- Result{Err: err}
			continue
		}
		end += uint64(len(req.recs))
		req.res <- Result{Last: end}
	}
	c.statsMu.Lock()
	c.stats.Batches++
	c.stats.Appends += int64(len(batch))
	c.stats.Records += int64(len(recs))
	c.statsMu.Unlock()
}
