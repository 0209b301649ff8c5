package durable

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/storage/snap"
)

// Snapshots is a replica's snapshot store (consensus.SnapshotStore) over
// storage/snap: the newest snapshot's metadata, bounded chunks of a stored
// snapshot for sending, and incoming chunks written to a temporary file and
// installed atomically on the last one. It is safe for concurrent use.
type Snapshots struct {
	mu     sync.Mutex
	store  *snap.Store
	voters []consensus.NodeID
	// src is the snapshot being read for sending, kept open between chunks.
	src     *snap.Source
	srcName string
	// protoName's Protocol state is proto (see protocol).
	protoName string
	proto     []byte
	// recv is the transfer being received, if any.
	recv *snap.Receiver
	// OnReceived, if set, is told of each snapshot fully received and
	// installed.
	OnReceived func(snap.Info)
}

var _ consensus.SnapshotStore = (*Snapshots)(nil)

// NewSnapshots serves store's snapshots; voters is the membership reported
// with them.
func NewSnapshots(store *snap.Store, voters []consensus.NodeID) *Snapshots {
	return &Snapshots{store: store, voters: slices.Clone(voters)}
}

// Store is the underlying snapshot store.
func (s *Snapshots) Store() *snap.Store { return s.store }

// Newest implements consensus.SnapshotStore: the newest snapshot by index,
// then term, with the Protocol state it was saved with (read from its
// header, which is checked; the data is checked when it is read).
func (s *Snapshots) Newest() (consensus.SnapshotMeta, bool) {
	infos, err := s.store.List()
	if err != nil || len(infos) == 0 {
		return consensus.SnapshotMeta{}, false
	}
	in := infos[len(infos)-1]
	proto, err := s.protocol(in.Name)
	if err != nil {
		return consensus.SnapshotMeta{}, false
	}
	return consensus.SnapshotMeta{Index: in.Index, Term: in.Term, Voters: slices.Clone(s.voters), Protocol: proto}, true
}

// protocol returns the Protocol state the named snapshot was saved with.
// Snapshot files never change once named, so the newest one's is cached.
func (s *Snapshots) protocol(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.protoName == name {
		return slices.Clone(s.proto), nil
	}
	r, err := s.store.Open(name)
	if err != nil {
		return nil, err
	}
	proto := r.Meta().Protocol
	_ = r.Close()
	s.protoName, s.proto = name, proto
	return slices.Clone(proto), nil
}

// Find returns the stored snapshot with the given index; if several have
// it (with different terms), the newest.
func (s *Snapshots) Find(index uint64) (snap.Info, error) {
	infos, err := s.store.List()
	if err != nil {
		return snap.Info{}, err
	}
	for i := len(infos) - 1; i >= 0; i-- {
		if infos[i].Index == index {
			return infos[i], nil
		}
	}
	return snap.Info{}, fmt.Errorf("durable: snapshot %d is not in %s", index, s.store.Dir())
}

// ReadAll returns the state-machine data of the stored snapshot with the
// given index, verified against its checksum.
func (s *Snapshots) ReadAll(index uint64) ([]byte, error) {
	in, err := s.Find(index)
	if err != nil {
		return nil, err
	}
	r, err := s.store.Open(in.Name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// ReadChunk implements consensus.SnapshotStore. The returned slice is
// fresh on every call.
func (s *Snapshots) ReadChunk(index uint64, offset int64, max int) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.Find(index)
	if err != nil {
		s.closeSourceLocked()
		return nil, false, err
	}
	if s.src == nil || s.srcName != in.Name {
		s.closeSourceLocked()
		if s.src, err = s.store.OpenSource(in.Name); err != nil {
			return nil, false, err
		}
		s.srcName = in.Name
	}
	c, err := s.src.ReadChunk(offset, make([]byte, max))
	if err != nil {
		s.closeSourceLocked()
		return nil, false, err
	}
	return c.Data, c.Done, nil
}

func (s *Snapshots) closeSourceLocked() {
	if s.src != nil {
		_ = s.src.Close()
		s.src = nil
	}
}

// ReceiveChunk implements consensus.SnapshotStore: a chunk at offset 0
// starts a new transfer; the last chunk verifies, installs and checks the
// installed snapshot against meta (index, term, and Protocol if meta has
// one).
func (s *Snapshots) ReceiveChunk(meta consensus.SnapshotMeta, offset int64, data []byte, last bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if offset == 0 || s.recv == nil {
		if s.recv != nil {
			_ = s.recv.Abort()
		}
		var err error
		if s.recv, err = s.store.NewReceiver(); err != nil {
			s.recv = nil
			return err
		}
	}
	info, err := s.recv.Accept(snap.Chunk{Offset: offset, Data: data, Done: last})
	if err != nil {
		return err
	}
	if !last {
		return nil
	}
	s.recv = nil
	if info.Index != meta.Index || info.Term != meta.Term {
		return fmt.Errorf("durable: received snapshot %d/%d, but the sender named %d/%d", info.Index, info.Term, meta.Index, meta.Term)
	}
	if len(meta.Protocol) > 0 {
		r, err := s.store.Open(info.Name)
		if err != nil {
			return err
		}
		got := r.Meta().Protocol
		_ = r.Close()
		if !bytes.Equal(got, meta.Protocol) {
			return fmt.Errorf("durable: received snapshot %d/%d carries %d bytes of protocol state that differ from the %d bytes the sender named", info.Index, info.Term, len(got), len(meta.Protocol))
		}
	}
	_ = s.store.GC()
	if s.OnReceived != nil {
		s.OnReceived(info)
	}
	return nil
}

// Close releases open files.
func (s *Snapshots) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeSourceLocked()
	if s.recv != nil {
		_ = s.recv.Abort()
		s.recv = nil
	}
}
