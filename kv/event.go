package kv

import "fmt"

// EventType says how a write changed a key. The values match etcd's
// mvccpb.Event_EventType.
type EventType uint8

const (
	// EventPut: the key was created or its value replaced.
	EventPut EventType = iota
	// EventDelete: the key was deleted.
	EventDelete
)

// String names the type as etcd does.
func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Event is one key's change by an applied write, shaped like etcd's
// mvccpb.Event. A request's events share its revision and come in the
// order of its writes (a DeleteRange's in key order).
//
// Invariant: len(KV.Key) > 0; KV.ModRevision is the request's revision.
// For a put, KV is the key's new record. For a delete, KV holds only Key
// and ModRevision (the deleting revision), as etcd's delete events do, and
// PrevKV the deleted record. PrevKV is the zero KeyValue (nil Key) exactly
// when a put created the key.
type Event struct {
	Type   EventType
	KV     KeyValue
	PrevKV KeyValue
}

// HasPrev reports whether the key was live before the write.
func (e *Event) HasPrev() bool { return len(e.PrevKV.Key) > 0 }
