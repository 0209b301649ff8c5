package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sync"
	"time"
)

// Rand is the deterministic source of randomness behind MemFS's faults.
// *math/rand/v2.Rand satisfies it. MemFS draws from it only while a fault
// that needs it is enabled, and always in the same order for the same
// sequence of calls, so a seeded source makes every fault reproducible.
type Rand interface {
	// Float64 returns a number in [0, 1).
	Float64() float64
	// IntN returns a number in [0, n); n > 0.
	IntN(n int) int
}

// Faults configures the faults a MemFS injects. The zero value injects
// none. Probabilistic faults and torn writes draw from Rand, which must be
// set when any of them is on.
type Faults struct {
	// Rand drives every random choice below.
	Rand Rand

	// TornWrites makes a crash keep a random prefix of each file's unsynced
	// operations, the last one possibly cut at a random byte, instead of
	// dropping them all: a write cut mid-way by a power failure.
	TornWrites bool

	// ReadBitFlipProb is the probability that a read returning at least
	// one byte has one random bit of its result flipped. The stored data
	// is unchanged.
	ReadBitFlipProb float64

	// SyncFailProb is the probability that a Sync or SyncDir fails with
	// an error wrapping ErrInjected. The failed sync makes nothing durable;
	// see (*MemFS).FailNextSync for what happens to the writes.
	SyncFailProb float64

	// CapacityBytes, when positive, bounds the total size of all files.
	// A write or Truncate that would grow the total beyond it fails with
	// an error wrapping ErrNoSpace and changes nothing. Overwriting
	// existing bytes (such as preallocated space) needs no capacity.
	CapacityBytes int64

	// OnSync, when set, is called after every Sync and SyncDir, successful
	// or not, with the file or directory name, so that a simulator can
	// charge virtual fsync latency. It is called without MemFS's lock held
	// and must not block.
	OnSync func(name string)
}

// MemStats counts a MemFS's operations since it was created (a CrashClone
// starts from zero).
type MemStats struct {
	Syncs        int64 // successful File.Sync calls
	DirSyncs     int64 // successful SyncDir calls
	FailedSyncs  int64 // injected Sync and SyncDir failures
	Writes       int64 // successful Write and WriteAt calls
	BytesWritten int64 // bytes written by them
	ReadBitFlips int64 // reads returned with a flipped bit
}

// MemFS is an in-memory file system whose crashes lose exactly what a
// POSIX file system may lose, with optional fault injection.
//
// Each file keeps the content made durable by its last successful Sync,
// plus the operations (writes, truncations) made since, which are visible
// to reads but lost in a crash. Each directory entry (created, renamed,
// removed) becomes durable only when its directory is synced with SyncDir;
// a directory's own entry is durable once its parent is synced. CrashClone
// returns the file system as it would be found after a power failure.
//
// MemFS is deterministic: it owns no goroutines, never sleeps and never
// reads the clock, and its faults draw only from Faults.Rand. It is safe
// for concurrent use. File names are slash-separated; relative names are
// taken from the root, so "a/b" and "/a/b" are the same file.
type MemFS struct {
	mu      sync.Mutex
	live    map[string]*memNode // cleaned absolute name -> node, as visible now
	durable map[string]*memNode // the same, as of each parent's last SyncDir
	faults  Faults
	stats   MemStats
	// failNext counts injected sync failures still to come, by name; the
	// empty name matches any file or directory.
	failNext map[string]int
}

// memNode is a file or directory (an inode). Several names may refer to
// one node (a renamed file whose old name is still durable).
type memNode struct {
	dir bool
	// data is the content visible to reads.
	data []byte
	// synced is the content as of the last successful Sync.
	// Invariant: synced never aliases data.
	synced []byte
	// pending are the operations since the last Sync, in order. Applying
	// them to synced yields what the next successful Sync makes durable;
	// after a failed Sync they are dropped, so that (as on Linux) data that
	// failed to sync stays visible but never becomes durable.
	pending []memOp
	// readFlips maps offsets to bit masks XORed into every read of them.
	readFlips map[int64]byte
}

// memOp is an unsynced write (data at off) or truncation (to size off).
type memOp struct {
	truncate bool
	off      int64
	data     []byte
}

// NewMem returns an empty in-memory file system with no faults.
func NewMem() *MemFS {
	root := &memNode{dir: true}
	return &MemFS{
		live:     map[string]*memNode{"/": root},
		durable:  map[string]*memNode{"/": root},
		failNext: map[string]int{},
	}
}

// SetFaults replaces the fault configuration. It panics if a fault that
// needs randomness is enabled without a Rand (a programmer error).
func (m *MemFS) SetFaults(f Faults) {
	if f.Rand == nil && (f.TornWrites || f.ReadBitFlipProb > 0 || f.SyncFailProb > 0) {
		panic("vfs: Faults.Rand is required for torn writes, read bit flips and sync failures")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults = f
}

// Stats returns the operation counters.
func (m *MemFS) Stats() MemStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// FailNextSync makes the next Sync of the named file, or SyncDir of the
// named directory, fail with an error wrapping ErrInjected; the empty name
// matches the next sync of anything. Calls accumulate.
//
// A failed file Sync behaves as Linux's fsync does after a writeback
// error: the writes since the last successful Sync stay visible to reads
// but are dropped from what a later Sync makes durable, so they are lost in
// a crash even if a later Sync succeeds. A failed SyncDir makes none of
// the directory's changes durable.
func (m *MemFS) FailNextSync(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if name != "" {
		name = clean(name)
	}
	m.failNext[name]++
}

// Corrupt flips one bit of a stored file, both in its visible and its
// durable content, as a failing medium would. bit is taken modulo 8.
func (m *MemFS) Corrupt(name string, off int64, bit uint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupFile("corrupt", name)
	if err != nil {
		return err
	}
	if off < 0 || off >= int64(len(n.data)) {
		return &fs.PathError{Op: "corrupt", Path: name, Err: fmt.Errorf("offset %d outside file of %d bytes", off, len(n.data))}
	}
	n.data[off] ^= 1 << (bit % 8)
	if off < int64(len(n.synced)) {
		n.synced[off] ^= 1 << (bit % 8)
	}
	return nil
}

// InjectReadFlip makes every later read of the named file that covers off
// return that byte with the given bit (modulo 8) flipped. The stored data
// is unchanged. Injected read flips do not survive CrashClone.
func (m *MemFS) InjectReadFlip(name string, off int64, bit uint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupFile("inject", name)
	if err != nil {
		return err
	}
	if n.readFlips == nil {
		n.readFlips = map[int64]byte{}
	}
	n.readFlips[off] ^= 1 << (bit % 8)
	return nil
}

// CrashClone returns the file system as a power failure at this moment
// would leave it: only durable directory entries whose ancestors are all
// durable, each file holding its synced content (plus, with TornWrites, a
// random prefix of its unsynced operations). The receiver is unchanged and
// its open files keep working on it; the clone has the same Faults and
// zeroed Stats.
func (m *MemFS) CrashClone() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewMem()
	c.faults = m.faults
	names := make([]string, 0, len(m.durable))
	for name := range m.durable {
		names = append(names, name)
	}
	// Sorted, so that torn writes draw randomness in a fixed order.
	slices.Sort(names)
	clones := map[*memNode]*memNode{}
	for _, name := range names {
		if name == "/" || !m.ancestorsDurable(name) {
			continue
		}
		n := m.durable[name]
		cn, ok := clones[n]
		if !ok {
			cn = &memNode{dir: n.dir}
			if !n.dir {
				data := slices.Clone(n.synced)
				if m.faults.TornWrites && len(n.pending) > 0 {
					data = m.tornLocked(data, n.pending)
				}
				cn.data = data
				cn.synced = slices.Clone(data)
			}
			clones[n] = cn
		}
		c.live[name] = cn
		c.durable[name] = cn
	}
	return c
}

// tornLocked applies a random prefix of ops to data, cutting the first
// unapplied write at a random byte.
func (m *MemFS) tornLocked(data []byte, ops []memOp) []byte {
	k := m.faults.Rand.IntN(len(ops) + 1)
	for _, op := range ops[:k] {
		data = applyOp(data, op)
	}
	if k < len(ops) && !ops[k].truncate && len(ops[k].data) > 0 {
		op := ops[k]
		op.data = op.data[:m.faults.Rand.IntN(len(op.data))]
		if len(op.data) > 0 {
			data = applyOp(data, op)
		}
	}
	return data
}

func (m *MemFS) ancestorsDurable(name string) bool {
	for p := path.Dir(name); p != "/"; p = path.Dir(p) {
		if d := m.durable[p]; d == nil || !d.dir {
			return false
		}
	}
	return true
}

// applyOp applies one operation to buf and returns the result, growing it
// with zeros as needed. buf must not alias any other node's bytes.
func applyOp(buf []byte, op memOp) []byte {
	if op.truncate {
		return resize(buf, op.off)
	}
	if end := op.off + int64(len(op.data)); end > int64(len(buf)) {
		buf = resize(buf, end)
	}
	copy(buf[op.off:], op.data)
	return buf
}

func resize(buf []byte, size int64) []byte {
	if size <= int64(len(buf)) {
		return buf[:size]
	}
	return append(buf, make([]byte, size-int64(len(buf)))...)
}

// clean returns the absolute, cleaned form of a name.
func clean(name string) string { return path.Clean("/" + name) }

func (m *MemFS) lookupFile(op, name string) (*memNode, error) {
	n := m.live[clean(name)]
	if n == nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	if n.dir {
		return nil, &fs.PathError{Op: op, Path: name, Err: errIsDir}
	}
	return n, nil
}

var (
	errIsDir    = errors.New("is a directory")
	errNotDir   = errors.New("not a directory")
	errNotEmpty = errors.New("directory not empty")
	errReadOnly = errors.New("file opened read-only")
)

func (m *MemFS) parentDirLocked(op, name string) error {
	p := m.live[path.Dir(clean(name))]
	if p == nil {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	if !p.dir {
		return &fs.PathError{Op: op, Path: name, Err: errNotDir}
	}
	return nil
}

// usedLocked is the total size of the visible files.
func (m *MemFS) usedLocked() int64 {
	var used int64
	seen := map[*memNode]bool{}
	for _, n := range m.live {
		if !n.dir && !seen[n] {
			seen[n] = true
			used += int64(len(n.data))
		}
	}
	return used
}

// checkGrowLocked fails if growing a file by growth bytes exceeds capacity.
func (m *MemFS) checkGrowLocked(op, name string, growth int64) error {
	if m.faults.CapacityBytes > 0 && growth > 0 && m.usedLocked()+growth > m.faults.CapacityBytes {
		return &fs.PathError{Op: op, Path: name, Err: ErrNoSpace}
	}
	return nil
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.parentDirLocked("create", name); err != nil {
		return nil, err
	}
	c := clean(name)
	n := m.live[c]
	switch {
	case n == nil:
		n = &memNode{}
		m.live[c] = n
	case n.dir:
		return nil, &fs.PathError{Op: "create", Path: name, Err: errIsDir}
	default:
		// O_TRUNC truncates the same inode; the truncation is a data
		// change that becomes durable on Sync.
		n.data = n.data[:0]
		n.pending = append(n.pending, memOp{truncate: true})
	}
	return &memFile{fs: m, n: n, name: c, writable: true}, nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) { return m.open("open", name, false) }

// OpenReadWrite implements FS.
func (m *MemFS) OpenReadWrite(name string) (File, error) { return m.open("open", name, true) }

func (m *MemFS) open(op, name string, writable bool) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := clean(name)
	n := m.live[c]
	if n == nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	if n.dir && writable {
		return nil, &fs.PathError{Op: op, Path: name, Err: errIsDir}
	}
	return &memFile{fs: m, n: n, name: c, writable: writable}, nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := clean(name)
	n := m.live[c]
	if n == nil || c == "/" {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if n.dir {
		for k := range m.live {
			if k != c && path.Dir(k) == c {
				return &fs.PathError{Op: "remove", Path: name, Err: errNotEmpty}
			}
		}
	}
	delete(m.live, c)
	return nil
}

// Rename implements FS. MemFS renames files only.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, nn := clean(oldname), clean(newname)
	n := m.live[o]
	if n == nil {
		return &fs.PathError{Op: "rename", Path: oldname + " -> " + newname, Err: fs.ErrNotExist}
	}
	if n.dir {
		return &fs.PathError{Op: "rename", Path: oldname + " -> " + newname, Err: fmt.Errorf("MemFS renames files only: %w", errIsDir)}
	}
	if err := m.parentDirLocked("rename", newname); err != nil {
		return err
	}
	if t := m.live[nn]; t != nil && t.dir {
		return &fs.PathError{Op: "rename", Path: oldname + " -> " + newname, Err: errIsDir}
	}
	if o == nn {
		return nil
	}
	m.live[nn] = n
	delete(m.live, o)
	return nil
}

// MkdirAll implements FS. perm is ignored.
func (m *MemFS) MkdirAll(dir string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := clean(dir)
	var missing []string
	for p := c; p != "/"; p = path.Dir(p) {
		n := m.live[p]
		if n != nil {
			if !n.dir {
				return &fs.PathError{Op: "mkdir", Path: p, Err: errNotDir}
			}
			break
		}
		missing = append(missing, p)
	}
	for _, p := range missing {
		m.live[p] = &memNode{dir: true}
	}
	return nil
}

// List implements FS.
func (m *MemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := clean(dir)
	n := m.live[c]
	if n == nil {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	if !n.dir {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: errNotDir}
	}
	var names []string
	for k := range m.live {
		if k != c && path.Dir(k) == c {
			names = append(names, path.Base(k))
		}
	}
	slices.Sort(names)
	return names, nil
}

// Stat implements FS.
func (m *MemFS) Stat(name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := clean(name)
	n := m.live[c]
	if n == nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return memInfo{name: path.Base(c), size: int64(len(n.data)), dir: n.dir}, nil
}

// syncFailsLocked decides whether a sync of name fails by injection.
func (m *MemFS) syncFailsLocked(name string) bool {
	for _, k := range []string{name, ""} {
		if m.failNext[k] > 0 {
			m.failNext[k]--
			if m.failNext[k] == 0 {
				delete(m.failNext, k)
			}
			return true
		}
	}
	return m.faults.SyncFailProb > 0 && m.faults.Rand.Float64() < m.faults.SyncFailProb
}

// SyncDir implements FS: the directory's current entries become durable.
func (m *MemFS) SyncDir(dir string) error {
	err := m.syncDir(dir)
	if hook := m.syncHook(); hook != nil {
		hook(clean(dir))
	}
	return err
}

func (m *MemFS) syncHook() func(string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.faults.OnSync
}

func (m *MemFS) syncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := clean(dir)
	n := m.live[c]
	if n == nil {
		return &fs.PathError{Op: "sync", Path: dir, Err: fs.ErrNotExist}
	}
	if !n.dir {
		return &fs.PathError{Op: "sync", Path: dir, Err: errNotDir}
	}
	if m.syncFailsLocked(c) {
		m.stats.FailedSyncs++
		return &fs.PathError{Op: "sync", Path: dir, Err: ErrInjected}
	}
	for k := range m.durable {
		if k != c && path.Dir(k) == c {
			delete(m.durable, k)
		}
	}
	for k, v := range m.live {
		if k != c && path.Dir(k) == c {
			m.durable[k] = v
		}
	}
	m.stats.DirSyncs++
	return nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (i memInfo) ModTime() time.Time { return time.Time{} } // no clock: always the zero time
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

// memFile is an open MemFS file. Its state is guarded by fs.mu.
type memFile struct {
	fs       *MemFS
	n        *memNode
	name     string // the name it was opened by
	pos      int64
	writable bool
	closed   bool
}

func (f *memFile) check(op string, write bool) error {
	if f.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	}
	if f.n.dir && op != "stat" && op != "close" {
		return &fs.PathError{Op: op, Path: f.name, Err: errIsDir}
	}
	if write && !f.writable {
		return &fs.PathError{Op: op, Path: f.name, Err: errReadOnly}
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	n, err := f.readAtLocked(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.readAtLocked(p, off)
}

func (f *memFile) readAtLocked(p []byte, off int64) (int, error) {
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: fs.ErrInvalid}
	}
	if off >= int64(len(f.n.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	for o, mask := range f.n.readFlips {
		if o >= off && o < off+int64(n) {
			p[o-off] ^= mask
		}
	}
	m := f.fs
	if n > 0 && m.faults.ReadBitFlipProb > 0 && m.faults.Rand.Float64() < m.faults.ReadBitFlipProb {
		p[m.faults.Rand.IntN(n)] ^= 1 << m.faults.Rand.IntN(8)
		m.stats.ReadBitFlips++
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	n, err := f.writeAtLocked("write", p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.writeAtLocked("write", p, off)
}

func (f *memFile) writeAtLocked(op string, p []byte, off int64) (int, error) {
	if err := f.check(op, true); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: op, Path: f.name, Err: fs.ErrInvalid}
	}
	end := off + int64(len(p))
	if err := f.fs.checkGrowLocked(op, f.name, end-int64(len(f.n.data))); err != nil {
		return 0, err
	}
	w := memOp{off: off, data: slices.Clone(p)}
	f.n.data = applyOp(f.n.data, w)
	f.n.pending = append(f.n.pending, w)
	f.fs.stats.Writes++
	f.fs.stats.BytesWritten += int64(len(p))
	return len(p), nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("truncate", true); err != nil {
		return err
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: fs.ErrInvalid}
	}
	if err := f.fs.checkGrowLocked("truncate", f.name, size-int64(len(f.n.data))); err != nil {
		return err
	}
	t := memOp{truncate: true, off: size}
	f.n.data = applyOp(f.n.data, t)
	f.n.pending = append(f.n.pending, t)
	return nil
}

// Sync makes the file's pending operations durable, unless a fault fails
// it (see MemFS.FailNextSync).
func (f *memFile) Sync() error {
	err := f.sync()
	if hook := f.fs.syncHook(); hook != nil {
		hook(f.name)
	}
	return err
}

func (f *memFile) sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("sync", false); err != nil {
		return err
	}
	n := f.n
	if f.fs.syncFailsLocked(f.name) {
		n.pending = nil // as on Linux: never durable, even after a later Sync
		f.fs.stats.FailedSyncs++
		return &fs.PathError{Op: "sync", Path: f.name, Err: ErrInjected}
	}
	for _, op := range n.pending {
		n.synced = applyOp(n.synced, op)
	}
	n.pending = nil
	f.fs.stats.Syncs++
	return nil
}

func (f *memFile) Stat() (fs.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("stat", false); err != nil {
		return nil, err
	}
	return memInfo{name: path.Base(f.name), size: int64(len(f.n.data)), dir: f.n.dir}, nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	return nil
}
