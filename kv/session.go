package kv

import (
	"errors"
	"fmt"
)

// SessionsMax is the number of client sessions a Store remembers. When a
// command from a client the store does not know arrives with the table full,
// the store forgets the client whose last command was applied longest ago
// (least recently used, by log index; a retry counts as use). Eviction
// depends only on the applied entries, so every replica evicts the same
// client, and the table (with its order) is part of Snapshot and Hash.
//
// A forgotten client is treated as new: a late retry of a command it already
// applied would be applied again. Deployments must keep the number of clients
// that may still retry below SessionsMax. Each session also holds the Result
// of the client's last command, so the table's memory is bounded by
// SessionsMax results (send large reads through Store.Read, not the log).
const SessionsMax = 4096

// ErrSessionExpired reports a command whose sequence number is older than
// the last one applied for its client: its result is no longer cached, and
// the command was not applied again.
var ErrSessionExpired = errors.New("kv: session expired: command older than the last applied for this client")

// ErrInvalidSession reports a session with a client ID but sequence number 0
// (clients number their commands from 1).
var ErrInvalidSession = errors.New("kv: invalid session: sequence number 0")

// session is what the store remembers about one client.
type session struct {
	clientID uint64 // Invariant: != 0.
	seq      uint64 // the last sequence number applied; > 0
	index    uint64 // log index of the client's last command (applied or retried)
	result   Result // the result of seq; Err is always nil

	// Links in the table's recency list.
	prev, next *session
}

// sessionTable is a bounded map from client ID to session.
//
// Invariant: len(byID) <= max; the list from head (least recently used) to
// tail (most recent) holds exactly the sessions in byID, in strictly
// increasing index order.
type sessionTable struct {
	max        int
	byID       map[uint64]*session
	head, tail *session
}

func newSessionTable(max int) sessionTable {
	return sessionTable{max: max, byID: make(map[uint64]*session)}
}

func (t *sessionTable) len() int { return len(t.byID) }

func (t *sessionTable) get(clientID uint64) *session { return t.byID[clientID] }

// touch records that s's client sent a command at index and makes it the
// most recently used session.
func (t *sessionTable) touch(s *session, index uint64) {
	s.index = index
	if t.tail == s {
		return
	}
	t.unlink(s)
	t.pushBack(s)
}

// record stores result as the client's result for seq, applied at index,
// evicting the least recently used session if a new client overflows the
// table.
func (t *sessionTable) record(clientID, seq, index uint64, result Result) {
	if result.Err != nil {
		panic(fmt.Sprintf("kv: caching an error result for client %d: %v", clientID, result.Err))
	}
	if s := t.byID[clientID]; s != nil {
		s.seq, s.result = seq, result
		t.touch(s, index)
		return
	}
	if len(t.byID) >= t.max {
		old := t.head
		t.unlink(old)
		delete(t.byID, old.clientID)
	}
	s := &session{clientID: clientID, seq: seq, index: index, result: result}
	t.byID[clientID] = s
	t.pushBack(s)
}

// remove forgets clientID's session, which must exist.
func (t *sessionTable) remove(clientID uint64) {
	s := t.byID[clientID]
	if s == nil {
		panic(fmt.Sprintf("kv: removing client %d, which has no session", clientID))
	}
	t.unlink(s)
	delete(t.byID, clientID)
}

// all calls fn on every session from least to most recently used.
func (t *sessionTable) all(fn func(*session)) {
	for s := t.head; s != nil; s = s.next {
		fn(s)
	}
}

func (t *sessionTable) unlink(s *session) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		t.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		t.tail = s.prev
	}
	s.prev, s.next = nil, nil
}

func (t *sessionTable) pushBack(s *session) {
	s.prev = t.tail
	if t.tail != nil {
		t.tail.next = s
	} else {
		t.head = s
	}
	t.tail = s
}
