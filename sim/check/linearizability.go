package check

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// KVOpKind is the kind of a client operation on one key.
type KVOpKind uint8

const (
	KVGet KVOpKind = iota
	KVPut
	KVDelete
	KVCompareAndSwap
)

// String names the kind.
func (k KVOpKind) String() string {
	switch k {
	case KVGet:
		return "get"
	case KVPut:
		return "put"
	case KVDelete:
		return "delete"
	case KVCompareAndSwap:
		return "cas"
	}
	return fmt.Sprintf("KVOpKind(%d)", uint8(k))
}

// KVInput is a client operation on one key.
type KVInput struct {
	Kind     KVOpKind
	Key      string
	Value    string // put, cas: the value written
	Expected string // cas: the value compared against
}

// KVOutput is what the client was told.
type KVOutput struct {
	// Unknown is set when the client never learned the outcome (it timed
	// out); the operation may or may not have taken effect.
	Unknown bool
	Value   string // get: the value read
	Exists  bool   // get: whether the key existed
	OK      bool   // cas: whether the swap happened
	Deleted int64  // delete: how many keys were deleted (0 or 1)
}

// KVOperation is one completed (or abandoned) client operation. Times are
// in any unit that orders events; Return must be after Call. An operation
// with an unknown outcome is checked as if it could take effect at any
// point after its call.
type KVOperation struct {
	Client int
	Input  KVInput
	Output KVOutput
	Call   int64
	Return int64
}

// kvState is the per-key model state.
type kvState struct {
	value  string
	exists bool
}

// KVModel is the sequential specification of one key of the store, for
// porcupine. Histories are partitioned per key.
var KVModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(KVInput).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		s := state.(kvState)
		in := input.(KVInput)
		out := output.(KVOutput)
		switch in.Kind {
		case KVGet:
			if out.Unknown {
				return true, s
			}
			return out.Exists == s.exists && (!s.exists || out.Value == s.value), s
		case KVPut:
			return true, kvState{value: in.Value, exists: true}
		case KVDelete:
			want := int64(0)
			if s.exists {
				want = 1
			}
			return out.Unknown || out.Deleted == want, kvState{}
		case KVCompareAndSwap:
			swap := s.exists && s.value == in.Expected
			if out.Unknown {
				// Could have happened or not; if it happened, the swap
				// rule decided its effect.
				if swap {
					return true, kvState{value: in.Value, exists: true}
				}
				return true, s
			}
			if out.OK != swap {
				return false, s
			}
			if swap {
				return true, kvState{value: in.Value, exists: true}
			}
			return true, s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in := input.(KVInput)
		out := output.(KVOutput)
		var res string
		switch {
		case out.Unknown:
			res = "unknown"
		case in.Kind == KVGet && !out.Exists:
			res = "<none>"
		case in.Kind == KVGet:
			res = fmt.Sprintf("%q", out.Value)
		case in.Kind == KVCompareAndSwap:
			res = fmt.Sprint(out.OK)
		case in.Kind == KVDelete:
			res = fmt.Sprintf("deleted %d", out.Deleted)
		default:
			res = "ok"
		}
		switch in.Kind {
		case KVPut:
			return fmt.Sprintf("put(%s, %q) → %s", in.Key, in.Value, res)
		case KVCompareAndSwap:
			return fmt.Sprintf("cas(%s, %q→%q) → %s", in.Key, in.Expected, in.Value, res)
		default:
			return fmt.Sprintf("%v(%s) → %s", in.Kind, in.Key, res)
		}
	},
	DescribeState: func(state any) string {
		s := state.(kvState)
		if !s.exists {
			return "<none>"
		}
		return fmt.Sprintf("%q", s.value)
	},
}

// LinearizabilityResult is the outcome of checking a history.
type LinearizabilityResult struct {
	// Result is porcupine.Ok, porcupine.Illegal, or porcupine.Unknown if
	// the check timed out.
	Result porcupine.CheckResult
	// Operations checked (gets with unknown outcomes are left out: they
	// constrain nothing).
	Operations int
	info       porcupine.LinearizationInfo
	history    []porcupine.Operation
}

// CheckLinearizable checks a key-value history against KVModel, giving up
// after timeout (0 means no limit).
func CheckLinearizable(ops []KVOperation, timeout time.Duration) *LinearizabilityResult {
	history := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		if op.Output.Unknown && op.Input.Kind == KVGet {
			continue
		}
		ret := op.Return
		if op.Output.Unknown {
			ret = math.MaxInt64
		}
		history = append(history, porcupine.Operation{
			ClientId: op.Client, Input: op.Input, Output: op.Output, Call: op.Call, Return: ret,
		})
	}
	res := porcupine.CheckOperationsTimeout(KVModel, history, timeout)
	return &LinearizabilityResult{Result: res, Operations: len(history), history: history}
}

// WriteVisualization writes porcupine's HTML visualization of the history
// to path. It re-runs the check with full linearization info, which may take
// longer than the first check.
func (r *LinearizabilityResult) WriteVisualization(path string, timeout time.Duration) error {
	_, info := porcupine.CheckOperationsVerbose(KVModel, r.history, timeout)
	return porcupine.VisualizePath(KVModel, info, path)
}
