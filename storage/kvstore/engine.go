package kvstore

// engine is the embedded store under a Store: ordered byte keys in
// numbered spaces, with transactions.
type engine interface {
	begin(m mode) (tx, error)
	close() error
}

type mode int

const (
	modeRead  mode = iota // a consistent read-only view
	modeWrite             // reads see the transaction's own writes
	modeLoad              // writes, and reads of committed data only
)

// tx is one engine transaction. Values returned by get and passed to
// ascend's fn are valid until the next call on the tx; keys and values
// passed to put and delete may be reused by the caller after the call.
type tx interface {
	// get returns key's value in space, or nil if absent.
	get(space uint64, key []byte) ([]byte, error)
	// ascend calls fn on each key in [from, to) of space, in order, until
	// fn returns false. The tx must not be written during the scan.
	ascend(space uint64, from, to []byte, fn func(k, v []byte) bool) error
	put(space uint64, key, val []byte) error
	delete(space uint64, key []byte) error
	// dropSpace deletes every key of space.
	dropSpace(space uint64) error
	// commit makes the writes visible, and durable if sync is set.
	commit(sync bool) error
	// rollback discards the tx; after commit it does nothing.
	rollback()
}
