package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/storage/durable"
	"github.com/synod-io/synod/storage/vfs"
	"github.com/synod-io/synod/storage/wal"
)

// DiskConfig describes the simulated disks. Every node has a crashable
// in-memory file system holding a write-ahead log of its replica's records;
// a crash keeps only what was synced.
type DiskConfig struct {
	// Enabled puts records through a real WAL on a simulated disk. When
	// off, persisted records are kept as values (faster, no disk faults).
	Enabled bool
	// SegmentBytes is the WAL segment size.
	SegmentBytes int64
	// TornWrites: a crash keeps a random prefix of unsynced writes, the
	// last one cut at a random byte.
	TornWrites bool
	// SyncFail is the chance an fsync fails. A node whose fsync fails
	// stops (an fsync failure cannot be retried safely) and restarts
	// later from what was durable.
	SyncFail float64
	// SlowSync is the chance an fsync is slow, taking up to
	// SlowSyncMaxUnits of virtual time; the node's messages wait for it.
	SlowSync         float64
	SlowSyncMaxUnits int64
	// Faulty is how many nodes (at most a minority) have failing media:
	// their reads may return flipped bits (ReadBitFlip per read) and
	// their stored log may be corrupted (Corrupt per tick). Such a node
	// refuses to start from a log it cannot trust, and stays down.
	Faulty      int
	ReadBitFlip float64
	Corrupt     float64
	// CrashMidPersist is the chance, per crash, that the node crashes
	// after writing a Ready's records but before syncing them.
	CrashMidPersist float64
	// CrashAtDiskOp is the chance, per crash, that the node instead loses
	// power just before its k-th next disk operation (k in 1..8): inside
	// a WAL append or roll-over, a snapshot save or install, or a log
	// compaction.
	CrashAtDiskOp float64
	// SnapshotEntries asks replicas for a snapshot every that many applied
	// entries (0: the protocol's default); SnapshotChunkBytes bounds each
	// snapshot message.
	SnapshotEntries    int
	SnapshotChunkBytes int
}

// disk is one node's simulated disk and its open write-ahead log.
type disk struct {
	fs *vfs.MemFS
	// cfs wraps fs to cut the power at an exact operation.
	cfs *crashFS
	log *durable.Log // nil while the node is down
	rng *rand.Rand
	// faulty marks a node with failing media.
	faulty bool
	// corrupted is set once a bit of this node's stored log was flipped.
	corrupted bool
	// slowUnits accumulates the latency of slow fsyncs in the current Ready.
	slowUnits int64
}

const walDir = "wal"

func (w *world) newDisk(n *node, faulty bool) *disk {
	d := &disk{fs: vfs.NewMem(), faulty: faulty,
		rng: rand.New(rand.NewPCG(uint64(w.cfg.Seed), 0xd15c0000|uint64(n.id)))}
	d.cfs = &crashFS{inner: d.fs}
	w.setDiskFaults(d)
	return d
}

func (w *world) setDiskFaults(d *disk) {
	dc := &w.cfg.Disk
	f := vfs.Faults{Rand: d.rng, TornWrites: dc.TornWrites}
	if !w.quiet {
		f.SyncFailProb = dc.SyncFail
		if d.faulty {
			f.ReadBitFlipProb = dc.ReadBitFlip
		}
	}
	if dc.SlowSync > 0 && !w.quiet {
		f.OnSync = func(string) {
			if d.rng.Float64() < dc.SlowSync {
				d.slowUnits += 1 + d.rng.Int64N(dc.SlowSyncMaxUnits)
			}
		}
	}
	d.fs.SetFaults(f)
}

// openLog recovers the node's WAL after a start or crash and returns the
// records it holds, decoded. An error means the node cannot trust its disk
// and must not start (or, for an injected fault, must try again later).
func (w *world) openLog(n *node) ([]consensus.Record, error) {
	d := n.disk
	l, recs, err := durable.Open(d.cfs, walDir, wal.Options{SegmentBytes: w.cfg.Disk.SegmentBytes}, w.cfg.Protocol.Codec)
	if err != nil {
		return nil, err
	}
	d.log = l
	return recs, nil
}

// persist writes one Ready's records to the WAL as one atomic batch and
// syncs it (unless the replica marked them SyncOptional, or the node is
// armed to crash in between). It reports whether the node is still up.
// Once a checkpoint is durable, the WAL records before it are released.
func (w *world) persist(n *node, recs []consensus.Record, syncOptional bool) bool {
	if len(recs) == 0 {
		return true
	}
	d := n.disk
	index, checkpoint, err := d.log.Write(recs)
	if err != nil {
		w.diskFailure(n, err)
		return false
	}
	if n.crashMidPersist {
		w.res.Faults.CrashMidPersist++
		w.crash(n)
		w.scheduleRestart(n)
		return false
	}
	if syncOptional && !checkpoint {
		// Written, not yet durable: a later sync or a crash decides.
		return true
	}
	if err := d.log.Commit(index, checkpoint); err != nil {
		w.diskFailure(n, err)
		return false
	}
	return true
}

// diskFailure stops a node whose disk failed (a failed fsync cannot be
// retried: the node must restart from what is durable), or lost power.
func (w *world) diskFailure(n *node, err error) {
	if !n.alive {
		return
	}
	if errors.Is(err, errPowerLoss) {
		w.res.Faults.CrashAtDiskOp++
	} else {
		w.res.Faults.DiskFailure++
	}
	w.trace.note(w.now, fmt.Sprintf("node %d disk failure: %v", n.id, err))
	w.crash(n)
	w.scheduleRestart(n)
}

// corruptLog flips one bit inside a sealed (not the newest) WAL segment of
// a faulty node, and crashes it so that it must read its log again.
func (w *world) corruptLog(n *node) {
	d := n.disk
	names, err := d.fs.List(walDir)
	if err != nil {
		return
	}
	var segs []string
	for _, name := range names {
		if len(name) > 4 && name[len(name)-4:] == ".wal" {
			segs = append(segs, name)
		}
	}
	if len(segs) < 2 {
		return
	}
	name := walDir + "/" + segs[w.rng.IntN(len(segs)-1)]
	fi, err := d.fs.Stat(name)
	if err != nil || fi.Size() <= 64 {
		return
	}
	off := 32 + w.rng.Int64N(fi.Size()-32)
	if err := d.fs.Corrupt(name, off, uint(w.rng.IntN(8))); err != nil {
		return
	}
	d.corrupted = true
	w.res.Faults.Corruption++
	w.trace.note(w.now, fmt.Sprintf("corrupt node %d: flip a bit of %s at %d", n.id, name, off))
	w.crash(n)
	w.scheduleRestart(n)
}

// crashDisk models the power failure: the disk keeps only what was synced.
func (w *world) crashDisk(n *node) {
	d := n.disk
	if d.log != nil {
		// The process is gone; its file handles with it.
		d.log = nil
	}
	d.fs = d.fs.CrashClone()
	d.cfs = &crashFS{inner: d.fs}
	w.setDiskFaults(d)
}

// powerLost crashes a node whose armed power failure tripped, reporting
// whether it did.
func (w *world) powerLost(n *node) bool {
	if n.disk == nil || !n.disk.cfs.tripped || !n.alive {
		return false
	}
	w.diskFailure(n, errPowerLoss)
	return true
}
