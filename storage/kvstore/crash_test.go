package kvstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/kv"
)

const (
	crashDirEnv = "KVSTORE_CRASH_CHILD_DIR"
	crashSeed   = 5
	crashBatch  = 20 // largest batch the crash child applies
)

// crashBatches returns the crash child's batches, in order, until they
// reach index upTo.
func crashBatches(upTo uint64) [][]consensus.Entry {
	w := newWorkload(crashSeed)
	var out [][]consensus.Entry
	for w.next <= upTo {
		out = append(out, w.entries(1+w.r.IntN(crashBatch)))
	}
	return out
}

// TestCrashChild is the process TestCrashRestart kills: it applies the
// crash workload with durable batches, printing the applied index after
// each, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashRestart")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	w := newWorkload(crashSeed)
	for {
		if _, err := s.ApplyBatch(w.entries(1 + w.r.IntN(crashBatch))); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("applied", s.AppliedIndex())
	}
}

// TestCrashRestart kills a process in the middle of applying durable
// batches (no Close, no clean shutdown), reopens its store and checks that
// it holds exactly a prefix of whole batches that includes every batch
// whose ApplyBatch returned, with the state the in-memory store has at
// that index; then the host replays the log from the start, and only the
// unapplied suffix is applied.
func TestCrashRestart(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var reported uint64
	lines := 0
	for sc.Scan() {
		line := sc.Text()
		if idx, ok := strings.CutPrefix(line, "applied "); ok {
			reported, _ = strconv.ParseUint(idx, 10, 64)
			if lines++; lines == 40 {
				cmd.Process.Kill() // in the middle of a batch, most likely
			}
		} else if strings.HasPrefix(line, "error") {
			t.Fatal(line)
		}
	}
	cmd.Wait()
	if lines < 40 {
		t.Fatalf("child stopped after %d batches", lines)
	}

	s := mustOpen(t, dir)
	defer s.Close()
	applied := s.AppliedIndex()
	if applied < reported || applied > reported+crashBatch {
		t.Fatalf("reopened at applied index %d; the child reported %d", applied, reported)
	}
	// The store holds whole batches, and the in-memory store's state at
	// that point.
	mem := kv.New()
	batches := crashBatches(applied + 200)
	i := 0
	for ; mem.AppliedIndex() < applied; i++ {
		for _, e := range batches[i] {
			mem.Apply(e)
		}
	}
	if mem.AppliedIndex() != applied {
		t.Fatalf("applied index %d is inside a batch: a batch was torn", applied)
	}
	if h := mustHash(t, s); h != mem.Hash() {
		t.Fatalf("state at %d differs from the in-memory store's", applied)
	}
	// Replay the whole log: applied entries are skipped, the rest applied.
	for j, b := range batches {
		res, err := s.ApplyBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		for k, e := range b {
			if j < i {
				if !errors.Is(res[k].Err, ErrAlreadyApplied) {
					t.Fatalf("replayed entry %d (applied %d) gave %+v", e.Index, applied, res[k])
				}
				continue
			}
			if want := mem.Apply(e); !sameResult(res[k], want) {
				t.Fatalf("entry %d after restart:\ngot  %+v\nwant %+v", e.Index, res[k], want)
			}
		}
	}
	if mustHash(t, s) != mem.Hash() {
		t.Fatal("hashes differ after the replay")
	}
}

// TestReplaySkipsApplied: a batch that straddles the applied index applies
// only its unapplied suffix.
func TestReplaySkipsApplied(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	w := newWorkload(9)
	all := w.entries(300)
	mem := kv.New()
	if _, err := s.ApplyBatch(all[:100]); err != nil {
		t.Fatal(err)
	}
	for _, e := range all[:100] {
		mem.Apply(e)
	}
	// Reopen, as after a restart, and replay from entry 51.
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	if s.AppliedIndex() != 100 {
		t.Fatalf("applied %d after reopen", s.AppliedIndex())
	}
	res, err := s.ApplyBatch(all[50:200])
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range all[50:200] {
		if e.Index <= 100 {
			if !errors.Is(res[i].Err, ErrAlreadyApplied) {
				t.Fatalf("entry %d: %+v", e.Index, res[i])
			}
			continue
		}
		if want := mem.Apply(e); !sameResult(res[i], want) {
			t.Fatalf("entry %d: got %+v want %+v", e.Index, res[i], want)
		}
	}
	if res, err := s.ApplyBatch(all[10:20]); err != nil || !errors.Is(res[9].Err, ErrAlreadyApplied) {
		t.Fatalf("fully applied batch: %v %+v", err, res)
	}
	if s.AppliedIndex() != 200 || mustHash(t, s) != mem.Hash() {
		t.Fatal("state differs after the replay")
	}
	// A gap is a bug in the host.
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("a gap did not panic")
			}
		}()
		s.ApplyBatch(all[250:260])
	}()
	if s.AppliedIndex() != 200 || mustHash(t, s) != mem.Hash() {
		t.Fatal("a rejected batch changed the state")
	}
}

// TestSnapshotAcrossBackends streams snapshots memory -> disk -> disk ->
// memory; every copy has the same bytes and hash and continues the log
// identically.
func TestSnapshotAcrossBackends(t *testing.T) {
	w := newWorkload(21)
	mem := kv.New()
	for _, e := range w.entries(2000) {
		mem.Apply(e)
	}
	snap := mem.Snapshot()

	a := mustOpen(t, t.TempDir())
	defer a.Close()
	if _, err := a.ApplyBatch(newWorkload(99).entries(50)); err != nil { // state to replace
		t.Fatal(err)
	}
	if err := a.RestoreSnapshot(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotOf(t, a), snap) || mustHash(t, a) != mem.Hash() || a.AppliedIndex() != mem.AppliedIndex() {
		t.Fatal("memory -> disk: state differs")
	}

	b := mustOpen(t, t.TempDir())
	defer b.Close()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(a.WriteSnapshot(pw)) }()
	if err := b.RestoreSnapshot(pr); err != nil {
		t.Fatal(err)
	}
	back, err := kv.Restore(snapshotOf(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if back.Hash() != mem.Hash() || mustHash(t, b) != mem.Hash() {
		t.Fatal("disk -> disk -> memory: state differs")
	}
	more := w.entries(300)
	ra, err := a.ApplyBatch(more)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.ApplyBatch(more)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range more {
		want := mem.Apply(e)
		if got := back.Apply(e); !sameResult(got, want) || !sameResult(ra[i], want) || !sameResult(rb[i], want) {
			t.Fatalf("entry %d differs after the restores", e.Index)
		}
	}
	if mustHash(t, a) != mem.Hash() || mustHash(t, b) != mem.Hash() || back.Hash() != mem.Hash() {
		t.Fatal("hashes differ after the restores")
	}
}

// failingReader yields data, then fails.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data[:min(len(r.data), 1000)])
	r.data = r.data[n:]
	return n, nil
}

// TestRestoreFailureKeepsState: a corrupt, truncated or failing snapshot
// stream leaves the store as it was, even after the restore committed
// some of its batches, and across a reopen.
func TestRestoreFailureKeepsState(t *testing.T) {
	defer func(old int) { restoreBatchBytesMax = old }(restoreBatchBytesMax)
	restoreBatchBytesMax = 2 << 10 // many intermediate commits

	w := newWorkload(31)
	mem := kv.New()
	for _, e := range w.entries(3000) {
		mem.Apply(e)
	}
	good := mem.Snapshot()
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if _, err := s.ApplyBatch(newWorkload(77).entries(500)); err != nil {
		t.Fatal(err)
	}
	before, applied := mustHash(t, s), s.AppliedIndex()

	flipped := bytes.Clone(good)
	flipped[len(flipped)*3/4] ^= 0x10
	boom := errors.New("connection reset")
	for name, tc := range map[string]struct {
		r    io.Reader
		want error
	}{
		"flipped":   {bytes.NewReader(flipped), kv.ErrCorruptSnapshot},
		"truncated": {bytes.NewReader(good[:len(good)-3]), kv.ErrCorruptSnapshot},
		"checksum":  {bytes.NewReader(append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1)), kv.ErrCorruptSnapshot},
		"reader":    {&failingReader{data: good[:len(good)/2], err: boom}, boom},
	} {
		if err := s.RestoreSnapshot(tc.r); !errors.Is(err, tc.want) {
			t.Fatalf("%s: err %v, want %v", name, err, tc.want)
		}
		if h := mustHash(t, s); h != before || s.AppliedIndex() != applied {
			t.Fatalf("%s: a failed restore changed the state", name)
		}
	}
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	if h := mustHash(t, s); h != before || s.AppliedIndex() != applied {
		t.Fatal("after reopen: a failed restore changed the state")
	}
	if err := s.RestoreSnapshot(bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if mustHash(t, s) != mem.Hash() {
		t.Fatal("restore after failures: state differs")
	}
}

// TestOpenDropsUnfinishedRestore: a generation that a restore was writing
// when the process died is dropped on open.
func TestOpenDropsUnfinishedRestore(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if _, err := s.ApplyBatch(newWorkload(3).entries(200)); err != nil {
		t.Fatal(err)
	}
	want := mustHash(t, s)
	gen := s.gen.Load()
	// What a killed restore leaves: committed batches of generation gen+1.
	tx, err := s.eng.begin(modeLoad)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := tx.put(gen+1, []byte(fmt.Sprintf("kjunk%d", i)), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.commit(true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	if mustHash(t, s) != want {
		t.Fatal("state changed")
	}
	tx, err = s.eng.begin(modeRead)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.rollback()
	n := 0
	if err := tx.ascend(gen+1, nil, []byte{0xff}, func(k, v []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d keys of the unfinished generation survive", n)
	}
}

// TestReadsDuringRestore: reads running beside applies and restores always
// see a whole state (never a dropped generation).
func TestReadsDuringRestore(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	mem := kv.New()
	for _, e := range newWorkload(41).entries(500) {
		mem.Apply(e)
	}
	snap := mem.Snapshot()
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if res := s.Read(kv.RangePrefix("")); res.Err != nil {
				errc <- res.Err
				return
			}
			if _, err := s.Hash(); err != nil {
				errc <- err
				return
			}
		}
	}()
	w := newWorkload(41)
	w.entries(500) // the snapshot's entries
	for range 20 {
		if err := s.RestoreSnapshot(bytes.NewReader(snap)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ApplyBatch(w.entries(10)); err != nil {
			t.Fatal(err)
		}
		w = newWorkload(41)
		w.entries(500)
	}
	close(stop)
	if err := <-errc; err != nil {
		t.Fatalf("a concurrent read failed: %v", err)
	}
}
