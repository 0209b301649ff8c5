package epaxos

import (
	"slices"

	"github.com/synod-io/synod/consensus"
)

// executor orders committed instances for execution: it walks the
// dependency graph with Tarjan's algorithm (iteratively, with an explicit
// stack), executes each strongly connected component as soon as it is
// complete (all its dependencies outside it executed), and inside a
// component orders instances by (seq, replica, instance).
//
// Roots are committed, unexecuted instances, taken in commit order. A walk
// that reaches an instance not committed here stops: the components it
// already executed stay executed, the rest of the walk is dropped, and its
// root waits until that instance commits. A walk that runs out of steps
// (Config.ExecuteStepsMax per Ready) is suspended and resumed at the next
// Ready, never restarted: the out-edges of committed instances never
// change, so the suspended state stays valid while new instances commit.
type executor struct {
	executed map[InstanceID]bool
	queue    []InstanceID                // roots to try, in commit order
	waiting  map[InstanceID][]InstanceID // uncommitted instance -> roots blocked on it

	// Tarjan state of the walk in progress (empty when none).
	index   map[InstanceID]int
	low     map[InstanceID]int
	onStack map[InstanceID]bool
	stack   []InstanceID
	frames  []frame
	root    InstanceID
	counter int
}

// bugSCCUnordered is a deliberately wrong variant for showing that the
// cluster checker catches it: components execute in the order Tarjan's
// stack holds them instead of (seq, replica, instance). Only tests set it.
var bugSCCUnordered bool

type frame struct {
	id   InstanceID
	next int // next dependency to follow
}

func (e *executor) init() {
	e.executed = map[InstanceID]bool{}
	e.waiting = map[InstanceID][]InstanceID{}
	e.reset()
}

func (e *executor) reset() {
	e.index = map[InstanceID]int{}
	e.low = map[InstanceID]int{}
	e.onStack = map[InstanceID]bool{}
	e.stack = nil
	e.frames = nil
	e.counter = 0
}

// committed tells the executor id committed: it becomes a root, and roots
// blocked on it are retried.
func (e *executor) committed(id InstanceID) {
	e.queue = append(e.queue, id)
	if ws, ok := e.waiting[id]; ok {
		delete(e.waiting, id)
		e.queue = append(e.queue, ws...)
	}
}

// busy reports whether a walk is suspended or roots wait to be tried.
func (e *executor) busy() bool {
	if len(e.frames) > 0 {
		return true
	}
	for _, id := range e.queue {
		if !e.executed[id] {
			return true
		}
	}
	return false
}

func (e *executor) push(id InstanceID) {
	e.index[id] = e.counter
	e.low[id] = e.counter
	e.counter++
	e.onStack[id] = true
	e.stack = append(e.stack, id)
	e.frames = append(e.frames, frame{id: id})
}

// run executes what it can in at most budget steps, appending executed
// commands to r.executed.
func (e *executor) run(r *Replica, budget int) {
	for budget > 0 {
		if len(e.frames) == 0 {
			// Start a walk from the next unexecuted root.
			for len(e.queue) > 0 && e.executed[e.queue[0]] {
				e.queue = e.queue[1:]
			}
			if len(e.queue) == 0 {
				e.queue = nil
				return
			}
			e.root = e.queue[0]
			e.queue = e.queue[1:]
			e.reset()
			e.push(e.root)
			budget--
			continue
		}
		budget--
		f := &e.frames[len(e.frames)-1]
		it := r.insts[f.id]
		if f.next < numDeps(it) {
			d := depAt(it, f.next)
			f.next++
			if e.executed[d] {
				continue
			}
			if _, seen := e.index[d]; !seen {
				dep := r.insts[d]
				if dep == nil || dep.Status != StatusCommitted {
					// Blocked: drop the walk; its root waits for d.
					e.waiting[d] = append(e.waiting[d], e.root)
					e.reset()
					continue
				}
				e.push(d)
				continue
			}
			if e.onStack[d] {
				e.low[f.id] = min(e.low[f.id], e.index[d])
			}
			continue
		}
		// All dependencies of f.id are done.
		id := f.id
		e.frames = e.frames[:len(e.frames)-1]
		if e.low[id] == e.index[id] {
			i := len(e.stack) - 1
			for e.stack[i] != id {
				i--
			}
			scc := slices.Clone(e.stack[i:])
			e.stack = e.stack[:i]
			for _, s := range scc {
				delete(e.onStack, s)
			}
			e.execute(r, scc)
		}
		if len(e.frames) > 0 {
			p := e.frames[len(e.frames)-1].id
			e.low[p] = min(e.low[p], e.low[id])
		}
	}
}

// execute runs one strongly connected component in (seq, replica,
// instance) order.
func (e *executor) execute(r *Replica, scc []InstanceID) {
	if bugSCCUnordered {
		scc = slices.Clone(scc) // Tarjan's stack order: depends on the walk
	} else {
		slices.SortFunc(scc, func(a, b InstanceID) int {
			sa, sb := r.insts[a].Seq, r.insts[b].Seq
			switch {
			case sa < sb:
				return -1
			case sa > sb:
				return 1
			}
			return a.Compare(b)
		})
	}
	for _, id := range scc {
		e.executed[id] = true
		it := r.insts[id]
		if it.NoOp {
			continue
		}
		r.applied++
		r.executed = append(r.executed, consensus.Entry{
			Index:   r.applied,
			Type:    consensus.EntryNormal,
			Command: it.Command,
		})
	}
}

// numDeps and depAt enumerate an instance's edges for execution: its deps
// and, if it is not the first of its space, the previous instance of its
// space. That implicit edge makes each space a chain, so a dep on the
// latest instance of a space on a key reaches the earlier ones even when
// one in between was recovered as a no-op (which has no deps).
func numDeps(it *inst) int {
	if it.ID.Instance > 1 {
		return len(it.Deps) + 1
	}
	return len(it.Deps)
}

func depAt(it *inst, k int) InstanceID {
	if k < len(it.Deps) {
		return it.Deps[k]
	}
	return InstanceID{it.ID.Replica, it.ID.Instance - 1}
}
