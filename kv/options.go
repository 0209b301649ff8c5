package kv

import (
	"fmt"

	"github.com/synod-io/synod/consensus"
)

// Options are a state machine's settings. The replication protocol picks
// them (a host never lets a user choose), and every replica of a cluster
// must use the same ones, since Apply's results depend on them. The zero
// value is the default: one global revision, as in etcd.
type Options struct {
	// PerKeyOrder declares that the replicas apply commands in the same
	// order only when they share a conflict key (Request.Keys), as EPaxos
	// replicas do, instead of in one global order. Then:
	//
	//   - a key's value, Version and existence are the same on every
	//     replica once they have applied the same commands, and so is the
	//     outcome of every request that depends only on them;
	//   - revisions are local: the store revision, and with it every
	//     CreateRevision, ModRevision, Event revision and Result.Revision,
	//     counts this replica's applied writes in this replica's order. It
	//     grows with each write to a key (so it orders a key's history),
	//     but the same write gets different revisions on different
	//     replicas, and on the same replica after it rebuilds its state by
	//     applying its log again;
	//   - a Txn compare whose outcome would depend on those local numbers
	//     (a compare on CreateRevision or ModRevision against a positive
	//     operand) is refused with ErrRevisionCompare, by Apply, Read and
	//     Check alike, so that no replica takes a branch another does not.
	//     A compare against an operand <= 0 is allowed: a missing key has
	//     revision 0 and a live one a revision >= 2, so it only asks
	//     whether the key exists;
	//   - sessions are not used: a client's commands on different keys do
	//     not conflict, so they are not applied in the order of their
	//     sequence numbers, which the session table relies on. Every
	//     command is applied as it comes, whatever its Session (which the
	//     host may still use to recognise its own commands), and nothing
	//     is remembered for retries: the protocol must execute each
	//     proposed command once, and the host must not propose one twice.
	//
	// Hash and Snapshot cover the local revisions, so they differ between
	// such replicas even when every key agrees.
	PerKeyOrder bool
}

// ErrRevisionCompare is returned, under Options.PerKeyOrder, for a Txn
// whose compare tests a key's create or mod revision against a positive
// revision. It matches ErrInvalidRequest; the request changed nothing.
var ErrRevisionCompare = fmt.Errorf("%w: compare on a key's create or mod revision: "+
	"revisions are local to each replica under this protocol (EPaxos), so the outcome would differ between replicas; "+
	"compare the key's version or value instead (a revision compare against 0, which tests whether the key exists, is allowed)",
	ErrInvalidRequest)

// Check reports whether a store with these options accepts r: r.Validate,
// then, under PerKeyOrder, ErrRevisionCompare for a compare on
// revisions. Apply and Read run the same check; a host calls Check to
// refuse a request before replicating it.
func (o Options) Check(r *Request) error {
	if err := r.Validate(); err != nil {
		return err
	}
	return o.checkRevisions(r)
}

// checkRevisions is Check for a request that passed Validate.
func (o Options) checkRevisions(r *Request) error {
	if !o.PerKeyOrder || r.Txn == nil {
		return nil // Validate allows no Txn below the top level
	}
	c := &r.Txn.Compare
	switch {
	case c.Target == CompareCreate && c.CreateRevision > 0,
		c.Target == CompareMod && c.ModRevision > 0:
		return fmt.Errorf("%w; refused: %s(%q) %s %d", ErrRevisionCompare, c.Target, c.Key, c.Result, compareOperand(c))
	}
	return nil
}

func compareOperand(c *Compare) int64 {
	if c.Target == CompareCreate {
		return c.CreateRevision
	}
	return c.ModRevision
}

// Apply applies a committed entry to the state in b, with exactly the
// semantics of Store.Apply for a store with these options. Every change
// goes through b; the applied index and revision are written once, with
// SetMeta, after the entry's data.
func (o Options) Apply(b Backend, e consensus.Entry) Result {
	m := b.Meta()
	if e.Index != m.Applied+1 {
		panic(fmt.Sprintf("kv: applying entry %d, but the last applied entry is %d (entries must be applied in order, each once)", e.Index, m.Applied))
	}
	switch e.Type {
	case consensus.EntryNormal:
	case consensus.EntryNoOp:
	default:
		panic(fmt.Sprintf("kv: entry %d has unknown type %v", e.Index, e.Type))
	}
	m.Applied = e.Index
	var res Result
	if e.Type == consensus.EntryNoOp {
		res = Result{Revision: m.Revision}
	} else {
		res = o.applyCommand(b, &m, e)
	}
	b.SetMeta(m)
	return res
}

// Read serves a read-only request against the state in v, with exactly
// the semantics of Store.Read for a store with these options.
func (o Options) Read(v View, r Request) Result {
	m := v.Meta()
	if err := o.Check(&r); err != nil {
		return Result{Revision: m.Revision, Err: err}
	}
	if !r.ReadOnly() {
		return Result{Revision: m.Revision, Err: ErrNotReadOnly}
	}
	return apply(v, nil, &m, &r)
}
