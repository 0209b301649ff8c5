package sim

import (
	"errors"
	"fmt"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
	"github.com/synod-io/synod/sim/check"
)

// client is a closed-loop client: one operation at a time, retried at
// other nodes on timeouts and redirects, under one session so that a retried
// write applies exactly once.
type client struct {
	index  int32
	id     uint64 // session client ID; never zero
	seq    uint64
	target int // the node it believes leads
	op     *clientOp
	// lastSeen remembers the last value seen per key, to make
	// compare-and-swaps that may succeed.
	lastSeen map[string]string
	// keySessions holds, for a leaderless protocol, the client's session
	// on each key (see Protocol.Leaderless).
	keySessions map[string]consensus.Session
	// site is the client's site with a latency matrix (the index of the
	// node at that site), or -1.
	site int
}

// clientOp is the operation a client has outstanding.
type clientOp struct {
	input     check.KVInput
	data      []byte
	keys      []string
	session   consensus.Session
	call      int64 // history time
	callUnits int64
	attempts  int
	attempt   uint64 // ID of the live attempt
	// mayHaveApplied is set once an attempt of a write timed out: the
	// write may have taken effect.
	mayHaveApplied bool
	// backoff is set while the client waits to retry this operation.
	backoff bool
	// commitUnits is when the node that accepted the proposal learned the
	// command committed (measured only with a latency matrix); committed
	// says it did.
	committed   bool
	commitUnits int64
}

// request is what a client sends a node.
type request struct {
	client  int32
	attempt uint64
	op      *clientOp
}

// reply is what a node sends back.
type reply struct {
	// notLeader is set when the node refused; hint names the leader.
	notLeader bool
	hint      consensus.NodeID
	// failed is set when the node could not take the request for another
	// reason (a full queue); the client retries.
	failed bool
	result kv.Result
}

// clientNext draws the client's next operation and sends it, or resends
// the current one after a back-off.
func (w *world) clientNext(c *client) {
	if c.op != nil && c.op.backoff {
		c.op.backoff = false
		w.retry(c)
		return
	}
	if w.now >= (w.cfg.FaultTicks+w.cfg.LivenessTicks)*UnitsPerTick {
		return
	}
	wl := &w.cfg.Workload
	k := "k0"
	if wl.PrivateKeys {
		if w.wrng.Float64() >= wl.HotKey {
			k = fmt.Sprintf("c%d", c.id)
		}
	} else if wl.Keys > 1 && w.wrng.Float64() >= wl.HotKey {
		k = fmt.Sprintf("k%d", w.wrng.IntN(wl.Keys))
	}
	c.seq++
	in := check.KVInput{Key: k}
	total := wl.PutWeight + wl.GetWeight + wl.DeleteWeight + wl.CASWeight
	switch x := w.wrng.IntN(total); {
	case x < wl.PutWeight:
		in.Kind, in.Value = check.KVPut, fmt.Sprintf("c%d.%d", c.id, c.seq)
	case x < wl.PutWeight+wl.GetWeight:
		in.Kind = check.KVGet
	case x < wl.PutWeight+wl.GetWeight+wl.DeleteWeight:
		in.Kind = check.KVDelete
	default:
		in.Kind, in.Value = check.KVCompareAndSwap, fmt.Sprintf("c%d.%d", c.id, c.seq)
		in.Expected = c.lastSeen[k]
	}
	op := &clientOp{input: in, session: consensus.Session{ClientID: c.id, Seq: c.seq}}
	if w.cfg.Protocol.Leaderless {
		op.session = w.keySession(c, k)
		// Reads go through the log too.
		req := requestFor(in)
		op.data, op.keys = req.Encode(), req.Keys()
	} else if in.Kind != check.KVGet {
		req := requestFor(in)
		op.data = req.Encode()
		op.keys = req.Keys()
	}
	w.hclock++
	op.call, op.callUnits = w.hclock, w.now
	c.op = op
	w.sendAttempt(c)
}

// keySession returns the client's next session number on key: under a
// leaderless protocol only commands on one key are ordered the same
// everywhere, so the state machine's at-most-once rule (one increasing
// sequence per client ID) needs a client ID per key.
func (w *world) keySession(c *client, key string) consensus.Session {
	if c.keySessions == nil {
		c.keySessions = map[string]consensus.Session{}
	}
	s, ok := c.keySessions[key]
	if !ok {
		w.nextSessionID++
		s.ClientID = w.nextSessionID
	}
	s.Seq++
	c.keySessions[key] = s
	return s
}

func requestFor(in check.KVInput) kv.Request {
	switch in.Kind {
	case check.KVPut:
		return kv.Put(in.Key, in.Value)
	case check.KVDelete:
		return kv.Delete(in.Key)
	case check.KVCompareAndSwap:
		return kv.CompareAndSwap(in.Key, in.Expected, in.Value)
	}
	return kv.Get(in.Key)
}

// sendAttempt sends the client's operation to its target node.
func (w *world) sendAttempt(c *client) {
	op := c.op
	op.attempts++
	w.nextID++
	op.attempt = w.nextID
	lat := w.clientLatency(c.site, c.target)
	w.schedule(w.now+lat, event{kind: evClientRequest, node: int32(c.target),
		req: &request{client: c.index, attempt: op.attempt, op: op}})
	w.schedule(w.now+w.cfg.Workload.TimeoutTicks*UnitsPerTick, event{kind: evClientTimeout, node: -1,
		client: c.index, attempt: op.attempt})
}

// serveRequest is a node receiving a client request.
func (w *world) serveRequest(ev event) {
	n := w.nodes[ev.node]
	if !n.alive {
		return // the client times out
	}
	if w.now < n.pausedUntil {
		w.schedule(n.pausedUntil+1, ev)
		return
	}
	rq := ev.req
	var err error
	if rq.op.input.Kind == check.KVGet && !w.cfg.Protocol.Leaderless {
		w.nextID++
		id := w.nextID
		if err = n.replica.ReadIndex(readContext(id)); err == nil {
			n.pendingReads[id] = pendingRead{client: rq.client, attempt: rq.attempt, key: rq.op.input.Key}
		}
	} else {
		cmd := consensus.Command{Session: rq.op.session, Keys: rq.op.keys, Data: rq.op.data}
		if err = n.replica.Propose(cmd); err == nil {
			n.pendingWrites[rq.op.session] = pendingWrite{client: rq.client, attempt: rq.attempt}
		}
	}
	if err != nil {
		var nl *consensus.NotLeaderError
		if errors.As(err, &nl) {
			w.replyTo(n, rq.client, rq.attempt, &reply{notLeader: true, hint: nl.Leader})
		} else {
			w.trace.note(w.now, fmt.Sprintf("node %d refused a request of client %d: %v", n.id, rq.op.session.ClientID, err))
			w.replyTo(n, rq.client, rq.attempt, &reply{failed: true})
		}
	}
	w.process(n)
}

func (w *world) replyTo(n *node, client int32, attempt uint64, r *reply) {
	w.schedule(w.now+w.clientLatency(w.clients[client].site, n.index), event{kind: evClientReply, node: -1,
		client: client, attempt: attempt, reply: r})
}

// clientLatency is the one-way latency between a client at site and a
// node: ClientLatencyUnits, plus half the RTT between their sites (with
// jitter) when they are at different sites of a latency matrix.
func (w *world) clientLatency(site, node int) int64 {
	d := w.cfg.Workload.ClientLatencyUnits
	if site >= 0 && site != node {
		d += w.latency[site][node]
		if j := w.net.JitterUnits; j > 0 {
			d += w.rng.Int64N(j + 1)
		}
	}
	return d
}

// committed is node n's Ready showing that the command of session s is
// committed (Protocol.Commits). The first time the node that accepted the
// proposal learns it, the client's operation records the time: that node
// leads the command (the leader, or EPaxos's command leader).
func (w *world) committed(n *node, s consensus.Session) {
	pw, ok := n.pendingWrites[s]
	if !ok {
		return
	}
	if op := w.clients[pw.client].op; op != nil && op.session == s && !op.committed {
		op.committed, op.commitUnits = true, w.now
	}
}

// clientReply is a reply reaching its client.
func (w *world) clientReply(ev event) {
	c := w.clients[ev.client]
	op := c.op
	if op == nil || op.attempt != ev.attempt {
		return // a stale reply to an attempt already given up on
	}
	r := ev.reply
	switch {
	case r.notLeader && r.hint != consensus.None:
		c.target = int(r.hint) - 1
		w.retry(c)
	case r.notLeader:
		// No leader is known (an election may be under way): try another
		// node after a pause rather than spending attempts at once.
		c.target = w.wrng.IntN(len(w.nodes))
		w.retryLater(c)
	case r.failed:
		w.retryLater(c)
	default:
		w.complete(c, r.result)
	}
}

// clientTimeout is a client giving up on one attempt.
func (w *world) clientTimeout(ev event) {
	c := w.clients[ev.client]
	op := c.op
	if op == nil || op.attempt != ev.attempt {
		return
	}
	if op.input.Kind != check.KVGet {
		op.mayHaveApplied = true
	}
	c.target = (c.target + 1 + w.wrng.IntN(len(w.nodes))) % len(w.nodes)
	w.retry(c)
}

// retry sends the operation again, or gives up after AttemptsMax attempts.
func (w *world) retry(c *client) {
	if c.op.attempts >= w.cfg.Workload.AttemptsMax {
		w.abandon(c)
		w.think(c)
		return
	}
	w.sendAttempt(c)
}

// retryLater retries after an exponential back-off with jitter: half a
// tick to one tick after the first refusal, doubling with each attempt, at
// most half the client timeout.
func (w *world) retryLater(c *client) {
	op := c.op
	op.backoff = true
	w.nextID++
	op.attempt = w.nextID // no reply or timeout of an earlier attempt counts now
	d := min(int64(UnitsPerTick/2)<<min(op.attempts-1, 16), w.cfg.Workload.TimeoutTicks*UnitsPerTick/2)
	w.schedule(w.now+d+w.wrng.Int64N(d+1), event{kind: evClientNext, node: -1, client: c.index})
}

// abandon gives up on the client's operation. A write that may have taken
// effect goes into the history with an unknown outcome.
func (w *world) abandon(c *client) {
	op := c.op
	c.op = nil
	if op.mayHaveApplied {
		if !w.quietOver() {
			w.res.OpsUnknown++
		}
		w.history = append(w.history, check.KVOperation{Client: int(c.index), Input: op.input,
			Output: check.KVOutput{Unknown: true}, Call: op.call})
		// The key's value is now uncertain for this client.
		delete(c.lastSeen, op.input.Key)
		return
	}
	if !w.quietOver() {
		w.res.OpsFailed++
	}
}

// quietOver reports whether the run has ended (operations still in flight
// then are counted as pending, not as failed or unknown).
func (w *world) quietOver() bool {
	return w.now >= (w.cfg.FaultTicks+w.cfg.LivenessTicks)*UnitsPerTick
}

// complete records a finished operation and schedules the next.
func (w *world) complete(c *client, res kv.Result) {
	op := c.op
	c.op = nil
	out, err := outputOf(op.input, res)
	if err != nil {
		// The state machine refused the request: not an outcome the model
		// knows, so count it as failed (or unknown if it may have applied
		// in an earlier attempt).
		w.trace.note(w.now, fmt.Sprintf("client %d: %v", c.id, err))
		c.op = op
		w.abandon(c)
		w.think(c)
		return
	}
	w.hclock++
	w.history = append(w.history, check.KVOperation{Client: int(c.index), Input: op.input, Output: out,
		Call: op.call, Return: w.hclock})
	w.res.OpsOK++
	if op.callUnits >= w.cfg.WarmupTicks*UnitsPerTick {
		w.res.latencyUnits = append(w.res.latencyUnits, w.now-op.callUnits)
		if c.site >= 0 {
			// Measured from the request reaching the client's own site.
			start := op.callUnits + w.cfg.Workload.ClientLatencyUnits
			w.res.siteExecUnits[c.site] = append(w.res.siteExecUnits[c.site], w.now-start)
			if op.committed {
				w.res.siteCommitUnits[c.site] = append(w.res.siteCommitUnits[c.site], op.commitUnits-start)
			}
		}
	}
	w.trace.hash(uint64(w.now), 0xc11e, c.id, op.session.Seq, uint64(op.input.Kind))
	switch op.input.Kind {
	case check.KVPut:
		c.lastSeen[op.input.Key] = op.input.Value
	case check.KVGet:
		c.lastSeen[op.input.Key] = out.Value
	case check.KVDelete:
		c.lastSeen[op.input.Key] = ""
	case check.KVCompareAndSwap:
		if out.OK {
			c.lastSeen[op.input.Key] = op.input.Value
		}
	}
	if op.callUnits >= w.cfg.FaultTicks*UnitsPerTick {
		w.livenessOK = true
	}
	w.think(c)
}

func (w *world) think(c *client) {
	d := int64(1)
	if m := w.cfg.Workload.ThinkTicksMax * UnitsPerTick; m > 0 {
		d += w.wrng.Int64N(m)
	}
	w.schedule(w.now+d, event{kind: evClientNext, node: -1, client: c.index})
}

// outputOf turns a state-machine result into what the model checks.
func outputOf(in check.KVInput, res kv.Result) (check.KVOutput, error) {
	if res.Err != nil {
		return check.KVOutput{}, res.Err
	}
	var out check.KVOutput
	switch in.Kind {
	case check.KVGet:
		if len(res.KVs) > 0 {
			out.Exists, out.Value = true, string(res.KVs[0].Value)
		}
	case check.KVDelete:
		out.Deleted = res.Deleted
	case check.KVCompareAndSwap:
		out.OK = res.Succeeded
	}
	return out, nil
}
