package snap

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/synod-io/synod/storage/vfs"
)

const (
	snapSuffix = ".snap"
	tmpSuffix  = ".tmp"
	// nameBytes is the length of a final name: 16 hex, '-', 16 hex, ".snap".
	nameBytes = 16 + 1 + 16 + len(snapSuffix)
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// Keep is the number of newest snapshots GC keeps; zero means
	// DefaultKeep. It must be at least 1.
	Keep int
	// SizeBytesMax bounds a snapshot file written or received; zero means
	// DefaultSizeBytesMax.
	SizeBytesMax int64
}

// Info names a complete snapshot file. Index and Term come from the name;
// they equal the file's metadata when the file is valid.
type Info struct {
	Name  string // file name within the store's directory
	Index uint64
	Term  uint64
}

// FileError reports a problem with one snapshot file.
type FileError struct {
	Name string // file name within the store's directory
	Err  error
}

func (e *FileError) Error() string { return "snap: " + e.Name + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *FileError) Unwrap() error { return e.Err }

// A Store manages the snapshot files in one directory.
//
// It is safe for concurrent use. Only one Store may use a directory at a
// time: Open removes every "*.tmp" file, which would destroy another
// Store's work in progress.
type Store struct {
	fs   vfs.FS
	dir  string
	opts Options

	mu sync.Mutex
	// tmpSeq numbers temporary files so that their names are unique
	// within this Store's lifetime; Open removed all older ones.
	tmpSeq uint64
	// active holds the names of temporary files a Writer or Receiver is
	// still writing. Invariant: GC never removes them.
	active map[string]bool
	// lastGood is the name of the newest snapshot this Store wrote,
	// received or verified, or "". Invariant: GC never removes it, so a
	// corrupt newer file can never cause the last good one to be deleted.
	lastGood string
}

// Open opens the snapshot directory dir on fsys, creating it if needed, and
// removes stale temporary files left by a crash (syncing the directory
// afterwards).
func Open(fsys vfs.FS, dir string, opts Options) (*Store, error) {
	if opts.Keep == 0 {
		opts.Keep = DefaultKeep
	}
	if opts.Keep < 1 {
		return nil, fmt.Errorf("snap: Options.Keep is %d; it must be at least 1", opts.Keep)
	}
	if opts.SizeBytesMax == 0 {
		opts.SizeBytesMax = DefaultSizeBytesMax
	}
	if opts.SizeBytesMax < minFileBytes {
		return nil, fmt.Errorf("snap: Options.SizeBytesMax is %d; it must be at least %d", opts.SizeBytesMax, minFileBytes)
	}
	if err := mkdirDurable(fsys, dir); err != nil {
		return nil, err
	}
	s := &Store{fs: fsys, dir: dir, opts: opts, active: make(map[string]bool)}
	if err := s.removeStale(nil); err != nil {
		return nil, err
	}
	return s, nil
}

// mkdirDurable creates dir and any missing parents, and syncs the parent of
// each directory it created, so that the directory itself survives a crash.
func mkdirDurable(fsys vfs.FS, dir string) error {
	var created []string
	for d := dir; ; d = path.Dir(d) {
		_, err := fsys.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("snap: stat %s: %w", d, err)
		}
		created = append(created, d)
		if path.Dir(d) == d {
			break
		}
	}
	if len(created) == 0 {
		return nil
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("snap: create snapshot directory %s: %w", dir, err)
	}
	// Each new directory's entry becomes durable when its parent is synced.
	for _, d := range created {
		if p := path.Dir(d); p != d {
			if err := fsys.SyncDir(p); err != nil {
				return fmt.Errorf("snap: sync directory %s after creating %s: %w", p, d, err)
			}
		}
	}
	return nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(name string) string { return path.Join(s.dir, name) }

// fileName returns the final name of the snapshot at index and term.
func fileName(index, term uint64) string {
	return fmt.Sprintf("%016x-%016x%s", index, term, snapSuffix)
}

// parseName parses a final snapshot name; ok is false for any other name.
func parseName(name string) (Info, bool) {
	if len(name) != nameBytes || !strings.HasSuffix(name, snapSuffix) || name[16] != '-' {
		return Info{}, false
	}
	index, err1 := strconv.ParseUint(name[:16], 16, 64)
	term, err2 := strconv.ParseUint(name[17:33], 16, 64)
	if err1 != nil || err2 != nil || name != fileName(index, term) {
		return Info{}, false
	}
	return Info{Name: name, Index: index, Term: term}, true
}

// List returns the complete snapshot files, oldest first (by index, then
// term). It does not read them: a listed file may still be corrupt.
func (s *Store) List() ([]Info, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, fmt.Errorf("snap: list %s: %w", s.dir, err)
	}
	var infos []Info
	for _, n := range names {
		if info, ok := parseName(n); ok {
			infos = append(infos, info)
		}
	}
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return infos, nil
}

// newTemp reserves a unique temporary file name, marked active.
func (s *Store) newTemp(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tmpSeq++
	name := fmt.Sprintf("%s.%d%s", prefix, s.tmpSeq, tmpSuffix)
	s.active[name] = true
	return name
}

func (s *Store) releaseTemp(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.active, name)
}

// noteGood records that name is a complete, valid snapshot.
func (s *Store) noteGood(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastGood == "" || name > s.lastGood {
		s.lastGood = name
	}
}

// Save writes a snapshot with metadata m and the data read from data until
// io.EOF, and installs it atomically (see the package documentation). The
// data is streamed: Save holds only a small buffer in memory.
//
// On error nothing is installed, except when the final directory sync
// fails: the complete file is then in place but may not survive a crash.
func (s *Store) Save(m Meta, data io.Reader) (Info, error) {
	w, err := s.Create(m)
	if err != nil {
		return Info{}, err
	}
	defer w.Abort()
	if _, err := io.Copy(w, data); err != nil {
		return Info{}, err
	}
	return w.Commit()
}

// LoadNewest opens the newest valid snapshot. It tries the files newest
// first; each is verified in full (every checksum) before it is returned,
// so a file is read twice: once here and once by the caller through the
// Reader, which checks the data checksum again.
//
// A corrupt file (an error wrapping ErrCorrupt or ErrUnsupportedVersion) is
// skipped and reported in skipped as a *FileError, and the next older one
// is tried. Any other error (an I/O failure) stops the search and is
// returned, since an older snapshot must not silently replace a newer one
// that is only unreadable for now. If no file is valid, the error wraps
// ErrNoSnapshot.
//
// The caller must Close the Reader.
func (s *Store) LoadNewest() (r *Reader, skipped []error, err error) {
	infos, err := s.List()
	if err != nil {
		return nil, nil, err
	}
	for i := len(infos) - 1; i >= 0; i-- {
		name := infos[i].Name
		_, err := s.Verify(name)
		if err == nil {
			r, err = s.Open(name)
		}
		if err == nil {
			return r, skipped, nil
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
			return nil, skipped, err
		}
		skipped = append(skipped, err)
	}
	if len(skipped) > 0 {
		return nil, skipped, fmt.Errorf("%w in %s: all %d snapshot files are corrupt, newest: %w; restore from a peer or a backup",
			ErrNoSnapshot, s.dir, len(skipped), skipped[0])
	}
	return nil, nil, fmt.Errorf("%w in %s: the directory holds no snapshot files", ErrNoSnapshot, s.dir)
}

// Open opens the named snapshot for reading. It checks the header,
// metadata and trailer; the data checksum is checked as the data is read.
// The caller must Close the Reader.
func (s *Store) Open(name string) (*Reader, error) {
	r, err := openReader(s.fs, s.path(name))
	if err != nil {
		return nil, &FileError{Name: name, Err: err}
	}
	r.name = name
	return r, nil
}

// Verify reads the named snapshot in full and checks every checksum. It
// returns the snapshot's metadata. An error wrapping ErrCorrupt means the
// file is damaged.
func (s *Store) Verify(name string) (Meta, error) {
	m, err := verifyFile(s.fs, s.path(name))
	if err != nil {
		return Meta{}, &FileError{Name: name, Err: err}
	}
	if info, ok := parseName(name); ok && (info.Index != m.Index || info.Term != m.Term) {
		return Meta{}, &FileError{Name: name, Err: fmt.Errorf("%w: file name says index %d term %d, metadata says index %d term %d",
			ErrCorrupt, info.Index, info.Term, m.Index, m.Term)}
	}
	s.noteGood(name)
	return m, nil
}

// verifyFile reads the file at p in full and checks every checksum.
func verifyFile(fs vfs.FS, p string) (Meta, error) {
	r, err := openReader(fs, p)
	if err != nil {
		return Meta{}, err
	}
	defer r.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		return Meta{}, err
	}
	return r.Meta(), nil
}

// GC keeps the newest Options.Keep snapshot files and removes older ones,
// and removes temporary files not in use by a Writer or Receiver of this
// Store; then it syncs the directory. It never removes the newest snapshot
// this Store wrote, received or verified, even if newer (possibly corrupt)
// files exist. It does not read the files.
func (s *Store) GC() error {
	infos, err := s.List()
	if err != nil {
		return err
	}
	s.mu.Lock()
	lastGood := s.lastGood
	s.mu.Unlock()
	var remove []string
	if n := len(infos) - s.opts.Keep; n > 0 {
		for _, info := range infos[:n] {
			if info.Name != lastGood {
				remove = append(remove, info.Name)
			}
		}
	}
	return s.removeStale(remove)
}

// removeStale removes the named files and every inactive temporary file,
// then syncs the directory if anything was removed.
func (s *Store) removeStale(names []string) error {
	all, err := s.fs.List(s.dir)
	if err != nil {
		return fmt.Errorf("snap: list %s: %w", s.dir, err)
	}
	s.mu.Lock()
	for _, n := range all {
		if strings.HasSuffix(n, tmpSuffix) && !s.active[n] {
			names = append(names, n)
		}
	}
	s.mu.Unlock()
	if len(names) == 0 {
		return nil
	}
	for _, n := range names {
		if err := s.fs.Remove(s.path(n)); err != nil {
			return fmt.Errorf("snap: remove %s: %w", s.path(n), err)
		}
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("snap: sync directory %s after removals: %w", s.dir, err)
	}
	return nil
}

// install makes the synced, closed temporary file tmp the snapshot for m:
// rename, then directory sync. The caller still owns tmp's active mark.
func (s *Store) install(tmp string, m *Meta) (Info, error) {
	name := fileName(m.Index, m.Term)
	if err := s.fs.Rename(s.path(tmp), s.path(name)); err != nil {
		return Info{}, fmt.Errorf("snap: rename %s to %s: %w", tmp, name, err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return Info{}, fmt.Errorf("snap: sync directory %s after installing %s (the snapshot may not survive a crash; save it again): %w", s.dir, name, err)
	}
	s.noteGood(name)
	return Info{Name: name, Index: m.Index, Term: m.Term}, nil
}
