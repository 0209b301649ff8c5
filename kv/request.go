package kv

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/synod-io/synod/consensus"
)

// TxnOpsMax is the largest number of operations allowed in each branch of a
// Txn (etcd's default --max-txn-ops).
const TxnOpsMax = 128

// ErrInvalidRequest is matched (with errors.Is) by every error that reports a
// well-encoded but invalid request: ErrEmptyKey, ErrDuplicateKey,
// ErrTooManyOps and the rest.
var ErrInvalidRequest = errors.New("kv: invalid request")

var (
	// ErrEmptyKey reports an operation or compare with an empty key. To
	// range over every key use key "\x00" and range end "\x00".
	ErrEmptyKey = fmt.Errorf("%w: empty key", ErrInvalidRequest)
	// ErrDuplicateKey reports a Txn branch that writes a key twice: two
	// puts of one key, or a put of a key that a delete in the same branch
	// also covers (etcd rejects these too).
	ErrDuplicateKey = fmt.Errorf("%w: duplicate key given in txn request", ErrInvalidRequest)
	// ErrTooManyOps reports a Txn branch with more than TxnOpsMax operations.
	ErrTooManyOps = fmt.Errorf("%w: too many operations in txn request", ErrInvalidRequest)
	// ErrNestedTxn reports a Txn inside a Txn branch (not supported).
	ErrNestedTxn = fmt.Errorf("%w: nested txn", ErrInvalidRequest)
)

// KeyValue is a live key with its value and revision metadata, shaped like
// etcd's mvccpb.KeyValue.
//
// Invariant (for a key in the store): len(Key) > 0; 2 <= CreateRevision <=
// ModRevision <= the store revision; 1 <= Version <= ModRevision -
// CreateRevision + 1 (every put uses a distinct revision).
type KeyValue struct {
	Key   []byte
	Value []byte
	// CreateRevision is the revision of the put that created the key since
	// it was last deleted.
	CreateRevision int64
	// ModRevision is the revision of the key's last put.
	ModRevision int64
	// Version is the number of puts since the key was created: 1 on create.
	Version int64
}

// Request is one client request. Exactly one of its fields is set, like
// etcd's RequestOp. Build requests with the helpers (Put, Get, Delete,
// CompareAndSwap, RangePrefix) or by hand, and check hand-built ones with
// Validate.
type Request struct {
	Range       *RangeRequest
	Put         *PutRequest
	DeleteRange *DeleteRangeRequest
	Txn         *TxnRequest
}

// RangeRequest reads one key, or the keys in [Key, RangeEnd).
//
// An empty RangeEnd means the single key Key. RangeEnd "\x00" means every key
// >= Key; with Key "\x00" too, that is every key. A RangeEnd <= Key selects
// nothing. PrefixEnd(p) as RangeEnd selects the keys with prefix p.
type RangeRequest struct {
	Key      []byte
	RangeEnd []byte
	// Limit bounds the number of keys returned; 0 means no limit. Result.Count
	// is still the number of keys in the range, and Result.More says whether
	// the limit cut the answer short.
	Limit int64
	// CountOnly returns only Result.Count, no keys.
	CountOnly bool
	// KeysOnly returns keys and their metadata without values.
	KeysOnly bool
}

// PutRequest sets Key to Value.
type PutRequest struct {
	Key   []byte
	Value []byte
	// PrevKV returns the key's previous KeyValue, if it existed, in
	// Result.PrevKVs.
	PrevKV bool
}

// DeleteRangeRequest deletes one key, or the keys in [Key, RangeEnd), with the
// same range rules as RangeRequest.
type DeleteRangeRequest struct {
	Key      []byte
	RangeEnd []byte
	// PrevKV returns the deleted KeyValues in Result.PrevKVs.
	PrevKV bool
}

// TxnRequest evaluates Compare and then applies Success if it holds, Failure
// if not, as one atomic request with one revision. Branch operations are
// Range, Put and DeleteRange requests (no nested Txn), applied in order; a
// Range sees the writes of earlier operations in its branch. A branch may not
// write a key twice (ErrDuplicateKey) and holds at most TxnOpsMax operations.
type TxnRequest struct {
	Compare Compare
	Success []Request
	Failure []Request
}

// CompareTarget is the part of a key a Compare looks at. The values match
// etcd's Compare.CompareTarget.
type CompareTarget uint8

const (
	CompareVersion CompareTarget = iota
	CompareCreate
	CompareMod
	CompareValue
)

// String names the target.
func (t CompareTarget) String() string {
	switch t {
	case CompareVersion:
		return "version"
	case CompareCreate:
		return "create"
	case CompareMod:
		return "mod"
	case CompareValue:
		return "value"
	}
	return fmt.Sprintf("CompareTarget(%d)", uint8(t))
}

// CompareResult is the relation a Compare checks. The values match etcd's
// Compare.CompareResult.
type CompareResult uint8

const (
	CompareEqual CompareResult = iota
	CompareGreater
	CompareLess
	CompareNotEqual
)

// String names the relation.
func (r CompareResult) String() string {
	switch r {
	case CompareEqual:
		return "="
	case CompareGreater:
		return ">"
	case CompareLess:
		return "<"
	case CompareNotEqual:
		return "!="
	}
	return fmt.Sprintf("CompareResult(%d)", uint8(r))
}

// Compare is a Txn's guard: it holds when the key's Target, compared with
// the matching operand field, satisfies Result ("key's version > 3").
//
// Only the operand that matches Target is meaningful; the others are ignored
// and are not encoded. Values compare as byte strings. A missing key has
// Version, CreateRevision and ModRevision 0, but has no value: a
// CompareValue on a missing key is false for every Result (as in etcd).
type Compare struct {
	Key    []byte
	Target CompareTarget
	Result CompareResult

	Value          []byte // operand for CompareValue
	Version        int64  // operand for CompareVersion
	CreateRevision int64  // operand for CompareCreate
	ModRevision    int64  // operand for CompareMod
}

// Put returns a request that sets key to value.
func Put(key, value string) Request {
	return Request{Put: &PutRequest{Key: []byte(key), Value: []byte(value)}}
}

// Get returns a request that reads key.
func Get(key string) Request {
	return Request{Range: &RangeRequest{Key: []byte(key)}}
}

// Delete returns a request that deletes key.
func Delete(key string) Request {
	return Request{DeleteRange: &DeleteRangeRequest{Key: []byte(key)}}
}

// RangePrefix returns a request that reads every key that starts with
// prefix, in key order. An empty prefix reads every key.
func RangePrefix(prefix string) Request {
	if prefix == "" {
		return Request{Range: &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}}
	}
	return Request{Range: &RangeRequest{Key: []byte(prefix), RangeEnd: PrefixEnd([]byte(prefix))}}
}

// CompareAndSwap returns a Txn that puts newValue at key if key's value is
// expected, and otherwise reads key. Result.Succeeded says which happened;
// on failure Result.Responses[0].KVs holds the current value, if any.
func CompareAndSwap(key, expected, newValue string) Request {
	return Request{Txn: &TxnRequest{
		Compare: Compare{Key: []byte(key), Target: CompareValue, Result: CompareEqual, Value: []byte(expected)},
		Success: []Request{Put(key, newValue)},
		Failure: []Request{Get(key)},
	}}
}

// PrefixEnd returns the range end that, with prefix as the start key,
// selects exactly the keys that begin with prefix: prefix with its last byte
// below 0xff incremented and the rest dropped. If prefix is empty or all
// 0xff bytes it returns "\x00" (no upper bound).
func PrefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] < 0xff {
			end := slices.Clone(prefix[:i+1])
			end[i]++
			return end
		}
	}
	return []byte{0}
}

// ops counts the operations set in r.
func (r *Request) ops() int {
	n := 0
	if r.Range != nil {
		n++
	}
	if r.Put != nil {
		n++
	}
	if r.DeleteRange != nil {
		n++
	}
	if r.Txn != nil {
		n++
	}
	return n
}

// Validate reports whether r is a request the store accepts. DecodeRequest
// validates what it decodes, and Store.Read validates its argument; every
// error it returns matches ErrInvalidRequest.
func (r *Request) Validate() error { return r.validate(0) }

func (r *Request) validate(depth int) error {
	if n := r.ops(); n != 1 {
		return fmt.Errorf("%w: request sets %d operations, want exactly 1", ErrInvalidRequest, n)
	}
	switch {
	case r.Range != nil:
		if len(r.Range.Key) == 0 {
			return ErrEmptyKey
		}
		if r.Range.Limit < 0 {
			return fmt.Errorf("%w: negative range limit %d", ErrInvalidRequest, r.Range.Limit)
		}
	case r.Put != nil:
		if len(r.Put.Key) == 0 {
			return ErrEmptyKey
		}
	case r.DeleteRange != nil:
		if len(r.DeleteRange.Key) == 0 {
			return ErrEmptyKey
		}
	case r.Txn != nil:
		if depth > 0 {
			return ErrNestedTxn
		}
		return r.Txn.validate()
	}
	return nil
}

func (t *TxnRequest) validate() error {
	c := &t.Compare
	if len(c.Key) == 0 {
		return ErrEmptyKey
	}
	if c.Target > CompareValue {
		return fmt.Errorf("%w: unknown compare target %d", ErrInvalidRequest, c.Target)
	}
	if c.Result > CompareNotEqual {
		return fmt.Errorf("%w: unknown compare result %d", ErrInvalidRequest, c.Result)
	}
	for _, branch := range [2][]Request{t.Success, t.Failure} {
		if len(branch) > TxnOpsMax {
			return fmt.Errorf("%w: %d > %d", ErrTooManyOps, len(branch), TxnOpsMax)
		}
		for i := range branch {
			if err := branch[i].validate(1); err != nil {
				return err
			}
		}
		if err := checkDuplicateWrites(branch); err != nil {
			return err
		}
	}
	return nil
}

// checkDuplicateWrites rejects a branch that puts a key twice or puts a key
// that one of its deletes covers. Overlapping deletes are allowed.
func checkDuplicateWrites(branch []Request) error {
	var puts [][]byte
	for i := range branch {
		if p := branch[i].Put; p != nil {
			puts = append(puts, p.Key)
		}
	}
	slices.SortFunc(puts, bytes.Compare)
	for i := 1; i < len(puts); i++ {
		if bytes.Equal(puts[i-1], puts[i]) {
			return fmt.Errorf("%w: %q", ErrDuplicateKey, puts[i])
		}
	}
	for i := range branch {
		d := branch[i].DeleteRange
		if d == nil {
			continue
		}
		for _, k := range puts {
			if inRange(k, d.Key, d.RangeEnd) {
				return fmt.Errorf("%w: %q", ErrDuplicateKey, k)
			}
		}
	}
	return nil
}

// inRange reports whether k is selected by the range (key, end) under the
// RangeRequest rules.
func inRange(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case isNoEnd(end):
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

// isNoEnd reports whether end is the "\x00" range end, meaning no upper bound.
func isNoEnd(end []byte) bool { return len(end) == 1 && end[0] == 0 }

// ReadOnly reports whether r changes nothing: a Range, or a Txn whose
// branches only hold Ranges.
func (r *Request) ReadOnly() bool {
	if r.Put != nil || r.DeleteRange != nil {
		return false
	}
	if r.Txn == nil {
		return r.Range != nil
	}
	if r.Range != nil {
		return false
	}
	for _, branch := range [2][]Request{r.Txn.Success, r.Txn.Failure} {
		for i := range branch {
			// Only Ranges qualify; a nested Txn is invalid anyway.
			if op := &branch[i]; op.Range == nil || op.ops() != 1 {
				return false
			}
		}
	}
	return true
}

// Keys returns the request's conflict keys, sorted and without duplicates,
// for consensus.Command.Keys. A request that names only single keys gets
// those keys: the key of a Put, of a Range or DeleteRange without a
// RangeEnd, and for a Txn its compare key and its operations' keys (both
// branches, since which one runs is decided only when it is applied).
//
// A request that touches a range of keys — a Range or DeleteRange with a
// RangeEnd (which includes prefix reads and deletes), at the top level or
// in either branch of a Txn — gets the single key consensus.ConflictAll
// instead: which keys a range holds is known only when the command is
// applied, so it must be ordered against every other command. Raft and
// Multi-Paxos ignore conflict keys; EPaxos orders two commands only when
// they share a key, so these keys are what keeps its replicas in
// agreement on every key's history and makes a range see a consistent
// state.
func (r *Request) Keys() []string {
	var keys []string
	if r.appendKeys(&keys, 0) {
		return []string{consensus.ConflictAll}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// appendKeys appends r's single keys to keys and reports whether r
// touches a range of keys (then keys is incomplete and irrelevant).
func (r *Request) appendKeys(keys *[]string, depth int) (ranged bool) {
	if r.Range != nil {
		*keys = append(*keys, string(r.Range.Key))
		ranged = ranged || len(r.Range.RangeEnd) > 0
	}
	if r.Put != nil {
		*keys = append(*keys, string(r.Put.Key))
	}
	if r.DeleteRange != nil {
		*keys = append(*keys, string(r.DeleteRange.Key))
		ranged = ranged || len(r.DeleteRange.RangeEnd) > 0
	}
	if r.Txn != nil {
		*keys = append(*keys, string(r.Txn.Compare.Key))
		if depth > 0 {
			return ranged // a nested Txn is invalid; don't follow it (it may be cyclic)
		}
		for _, branch := range [2][]Request{r.Txn.Success, r.Txn.Failure} {
			for i := range branch {
				if branch[i].appendKeys(keys, depth+1) {
					ranged = true
				}
			}
		}
	}
	return ranged
}

// Command returns a consensus command carrying r, with its conflict keys
// and the given session (the zero Session for none).
func (r *Request) Command(s consensus.Session) consensus.Command {
	return consensus.Command{Session: s, Keys: r.Keys(), Data: r.Encode()}
}
