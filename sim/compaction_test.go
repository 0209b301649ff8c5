package sim

import (
	"testing"

	"github.com/synod-io/synod/storage/durable"
	"github.com/synod-io/synod/storage/wal"
)

// storageFigures runs cfg to its end and returns, summed over the nodes
// still up, the bytes of their WAL files, the records a restart would
// replay, and the instances their replicas hold in memory.
func storageFigures(t *testing.T, cfg Config) (walBytes int64, records, held int, res *Result) {
	t.Helper()
	w := newWorld(cfg)
	if err := w.boot(); err != nil {
		t.Fatal(err)
	}
	end := (cfg.FaultTicks + cfg.LivenessTicks) * UnitsPerTick
	for w.queue.len() > 0 && len(w.violations) == 0 {
		ev := w.queue.pop()
		if ev.at > end {
			break
		}
		w.now = ev.at
		w.handle(ev)
	}
	w.now = end
	w.finish()
	for _, n := range w.nodes {
		if !n.alive {
			continue
		}
		names, err := n.disk.fs.List(walDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			fi, err := n.disk.fs.Stat(walDir + "/" + name)
			if err != nil {
				t.Fatal(err)
			}
			walBytes += fi.Size()
		}
		_, recs, err := durable.Open(n.disk.fs.CrashClone(), walDir, wal.Options{SegmentBytes: cfg.Disk.SegmentBytes}, cfg.Protocol.Codec)
		if err != nil {
			t.Fatal(err)
		}
		records += len(recs)
		if h, ok := n.replica.(interface{ InstancesHeld() int }); ok {
			held += h.InstancesHeld()
		}
	}
	return walBytes, records, held, w.res
}

// TestEPaxosCompactionBoundsStorage: over a long run, EPaxos with
// snapshots keeps its WAL and the instances in memory bounded by the
// snapshot period, while without compaction both grow with the history.
func TestEPaxosCompactionBoundsStorage(t *testing.T) {
	if testing.Short() {
		t.Skip("a long run")
	}
	base := DefaultConfig(5, EPaxos())
	base.FaultTicks = 8000
	base.Faults = FaultConfig{CrashDowntimeMaxTicks: 1, PartitionMaxTicks: 1, ClogMaxTicks: 1, PauseMaxTicks: 1}
	base.Disk = DiskConfig{Enabled: true, SegmentBytes: 64 << 10, SnapshotEntries: 500, SnapshotChunkBytes: 16 << 10}
	on := base
	off := base
	off.Disk.SnapshotEntries = 1 << 30 // never asked for
	wOn, rOn, hOn, resOn := storageFigures(t, on)
	wOff, rOff, hOff, resOff := storageFigures(t, off)
	if !resOn.OK() || !resOff.OK() {
		t.Fatalf("runs failed:\n%s\n%s", resOn.Report(), resOff.Report())
	}
	t.Logf("%d nodes, %d ticks, %d and %d commands executed", base.Nodes, base.FaultTicks, resOn.Committed, resOff.Committed)
	t.Logf("with compaction (snapshot every %d): WAL %d bytes, %d records to replay, %d instances in memory; %d snapshots", on.Disk.SnapshotEntries, wOn, rOn, hOn, resOn.Snapshots)
	t.Logf("without compaction: WAL %d bytes, %d records to replay, %d instances in memory", wOff, rOff, hOff)
	if resOn.Snapshots == 0 || wOn*4 > wOff || rOn*4 > rOff || hOn*4 > hOff {
		t.Fatalf("compaction does not bound storage: WAL %d vs %d bytes, %d vs %d records, %d vs %d instances", wOn, wOff, rOn, rOff, hOn, hOff)
	}
}
