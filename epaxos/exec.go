package epaxos

import (
	"fmt"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// executor orders committed instances for execution. It walks the
// execution graph (see below) with Tarjan's algorithm (iteratively, with
// an explicit stack), executes each strongly connected component as soon
// as it is complete (everything it reaches outside itself executed), and
// inside a component orders instances by their execution key (seq,
// replica, instance).
//
// The execution graph has an edge from each committed instance u to the
// previous instance of its space (the same-space chain, see numEdges) and,
// for each explicit dependency d of u, an edge to the highest instance
// w = (d.Replica, m), m <= d.Instance, of d's space whose edge from u is
// not pruned. The edge u → w is pruned when w is committed, its key is
// above u's, and w itself depends on u (w is a later instance of u's
// space, or it has an explicit dependency on u or a later instance of u's
// space): w is then ordered after u anyway, and following it would only
// lead the walk into newer instances, the livelock of "EPaxos Revisited".
// The package doc proves that replicas still execute conflicting commands
// in the same order.
//
// Roots are committed, unexecuted instances, taken in commit order. A walk
// that needs an instance not committed here (to follow it, or to decide
// whether an edge to it is pruned) stops: the components it already
// executed stay executed, the rest of the walk is dropped, and its root
// waits until that instance commits. A walk that runs out of steps
// (Config.ExecuteStepsMax per Ready) is suspended and resumed at the next
// Ready, never restarted: the edges of a committed instance depend only on
// committed attributes, which never change, so the suspended state stays
// valid while new instances commit.
//
// What is executed is the replica's executed frontier (Replica.executedTo):
// a component runs whole within one step, and it holds, with each of its
// instances, every unexecuted earlier instance of that space (the chain
// edge), so the executed instances stay a prefix of each space.
type executor struct {
	r       *Replica
	queue   []InstanceID                // roots to try, in commit order
	waiting map[InstanceID][]InstanceID // uncommitted instance -> roots blocked on it

	// Tarjan state of the walk in progress (empty when none).
	index   map[InstanceID]int
	low     map[InstanceID]int
	onStack map[InstanceID]bool
	stack   []InstanceID
	frames  []frame
	root    InstanceID
	counter int
}

// frame is one instance on the walk's path.
type frame struct {
	id   InstanceID
	next int // index of the next edge to follow (see numEdges)
	// probe, when not zero, is the instance the edge being resolved may
	// lead to: the explicit dependency itself, then, while the edge to it
	// is pruned, each earlier instance of its space in turn.
	probe InstanceID
}

func (e *executor) init(r *Replica) {
	e.r = r
	e.waiting = map[InstanceID][]InstanceID{}
	e.reset()
}

// The walk's maps and stacks are reused (a walk is started per root); maps
// that grew large are dropped rather than cleared, so that clearing stays
// cheap.
func (e *executor) reset() {
	const reuseMax = 256
	if e.index == nil || len(e.index) > reuseMax {
		e.index = map[InstanceID]int{}
		e.low = map[InstanceID]int{}
		e.onStack = map[InstanceID]bool{}
	} else {
		clear(e.index)
		clear(e.low)
		clear(e.onStack)
	}
	if cap(e.stack) > reuseMax {
		e.stack, e.frames = nil, nil
	}
	e.stack = e.stack[:0]
	e.frames = e.frames[:0]
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
		if !e.r.executedTo.covers(id) {
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

// run executes what it can in at most budget steps (an instance pushed,
// an edge considered, or one probe of a pruned edge), appending executed
// commands to r.executed.
func (e *executor) run(r *Replica, budget int) {
	for budget > 0 {
		budget--
		if len(e.frames) == 0 {
			// Start a walk from the next unexecuted root.
			for len(e.queue) > 0 && r.executedTo.covers(e.queue[0]) {
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
			continue
		}
		f := &e.frames[len(e.frames)-1]
		it := r.insts[f.id]
		if f.probe.Instance == 0 && f.next < numEdges(it) {
			if f.next < len(it.Deps) {
				f.probe = it.Deps[f.next]
				f.next++
				continue
			}
			f.next++
			e.follow(r, f.id, chainPredecessor(it.ID))
			continue
		}
		if f.probe.Instance != 0 {
			d := f.probe
			switch {
			case d.Replica == f.id.Replica && d.Instance <= f.id.Instance:
				// The instance itself or an earlier one of its space: the
				// chain edge orders those.
				f.probe = InstanceID{}
			case r.executedTo.covers(d):
				// Executed, and so are the earlier instances of its space.
				f.probe = InstanceID{}
			default:
				w := r.insts[d]
				if w == nil || w.Status != StatusCommitted {
					e.block(d)
					continue
				}
				if r.cfg.bug != bugExecuteFullGraph && pruned(it, w) {
					f.probe = chainPredecessor(d)
					continue
				}
				f.probe = InstanceID{}
				e.follow(r, f.id, d)
			}
			continue
		}
		// Every edge of f.id is done.
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

// follow takes the edge from → to of the walk: it pushes to if the walk
// has not reached it, updates from's low link if to is on the stack, and
// blocks the walk if to is not committed.
func (e *executor) follow(r *Replica, from, to InstanceID) {
	if to.Instance == 0 || r.executedTo.covers(to) {
		return
	}
	if _, seen := e.index[to]; seen {
		if e.onStack[to] {
			e.low[from] = min(e.low[from], e.index[to])
		}
		return
	}
	if it := r.insts[to]; it == nil || it.Status != StatusCommitted {
		e.block(to)
		return
	}
	e.push(to)
}

// block drops the walk in progress: its root waits until id commits.
func (e *executor) block(id InstanceID) {
	e.waiting[id] = append(e.waiting[id], e.root)
	e.reset()
}

// pruned reports whether the execution graph leaves out the edge from u to
// w, both committed, w a dependency of u (or an earlier instance of that
// dependency's space): w's execution key is above u's and w depends on u,
// being a later instance of u's space or having an explicit dependency on
// u or on a later instance of u's space. The walk then tries the previous
// instance of w's space instead.
func pruned(u, w *inst) bool {
	if execKeyCompare(w, u) <= 0 {
		return false
	}
	if w.ID.Replica == u.ID.Replica {
		return w.ID.Instance > u.ID.Instance
	}
	return covers(w.Deps, u.ID)
}

// execKeyCompare orders instances by their execution key: seq, then
// replica, then instance number. Keys are unique, and the same at every
// replica once the instances are committed.
func execKeyCompare(a, b *inst) int {
	switch {
	case a.Seq < b.Seq:
		return -1
	case a.Seq > b.Seq:
		return 1
	}
	return a.ID.Compare(b.ID)
}

// execute runs one strongly connected component in (seq, replica,
// instance) order, each instance's commands in batch order, one entry
// each (none for a no-op), and moves the executed frontier past it.
func (e *executor) execute(r *Replica, scc []InstanceID) {
	if r.cfg.bug != bugSCCUnordered { // else Tarjan's stack order: depends on the walk
		slices.SortFunc(scc, func(a, b InstanceID) int { return execKeyCompare(r.insts[a], r.insts[b]) })
	}
	// Each space's frontier before, and how many of its instances the
	// component holds (a few spaces at most: a slice, not maps).
	type spaceCount struct {
		rep           consensus.NodeID
		before, count uint64
	}
	var spacesBuf [4]spaceCount
	spaces := spacesBuf[:0]
	for _, id := range scc {
		i := slices.IndexFunc(spaces, func(s spaceCount) bool { return s.rep == id.Replica })
		if i < 0 {
			i = len(spaces)
			spaces = append(spaces, spaceCount{rep: id.Replica, before: r.executedTo[id.Replica]})
		}
		spaces[i].count++
	}
	for _, id := range scc {
		it := r.insts[id]
		it.eachCommand(func(cmd *consensus.Command) bool {
			r.applied++
			r.sinceSnap++
			r.executed = append(r.executed, consensus.Entry{
				Index:   r.applied,
				Type:    consensus.EntryNormal,
				Command: *cmd,
			})
			return true
		})
		r.executedTo[id.Replica] = max(r.executedTo[id.Replica], id.Instance)
		if len(it.keys) > 0 {
			for _, k := range it.keys {
				ki := r.done[k]
				if ki == nil {
					ki = newKeyIndex(r.floor != nil)
					r.done[k] = ki
				}
				ki.add(id, it.Seq)
			}
			r.doneAny.add(id, it.Seq)
		}
	}
	// The component holds every instance between the old frontier and the
	// new one of each space it touches (see executor).
	for _, s := range spaces {
		if r.executedTo[s.rep]-s.before != s.count {
			panic(fmt.Sprintf("epaxos %d: executed %d instances of space %d, moving its frontier from %d to %d", r.id, s.count, s.rep, s.before, r.executedTo[s.rep]))
		}
	}
	if r.cfg.Snapshots != nil && r.sinceSnap >= r.cfg.SnapshotEntries {
		r.snapWanted = true
	}
}

// numEdges is the number of edges an instance has in the execution graph
// before pruning: one per explicit dependency and, if it is not the first
// of its space, one to the previous instance of its space. That implicit
// edge makes each space a chain, so a dependency on the latest instance of
// a space on a key reaches the earlier ones even when one in between was
// recovered as a no-op (which has no deps). Chain edges are never pruned.
func numEdges(it *inst) int {
	if it.ID.Instance > 1 {
		return len(it.Deps) + 1
	}
	return len(it.Deps)
}

// chainPredecessor is the previous instance of id's space (zero for the
// first).
func chainPredecessor(id InstanceID) InstanceID {
	if id.Instance <= 1 {
		return InstanceID{}
	}
	return InstanceID{id.Replica, id.Instance - 1}
}
