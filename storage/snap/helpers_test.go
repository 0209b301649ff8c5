package snap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/storage/vfs"
)

// genReader yields n deterministic pseudo-random bytes from seed without
// holding them: a xorshift64 stream.
type genReader struct {
	state uint64
	left  int64
	buf   [8]byte
	used  int // bytes of buf already returned; 8 means empty
}

func newGen(seed uint64, n int64) *genReader {
	return &genReader{state: seed*0x9E3779B97F4A7C15 | 1, left: n, used: 8}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	for i := range p {
		if g.used == 8 {
			g.state ^= g.state << 13
			g.state ^= g.state >> 7
			g.state ^= g.state << 17
			for j := range g.buf {
				g.buf[j] = byte(g.state >> (8 * j))
			}
			g.used = 0
		}
		p[i] = g.buf[g.used]
		g.used++
	}
	g.left -= int64(len(p))
	return len(p), nil
}

// checkData reads r to io.EOF and compares it with the stream newGen(seed,
// n) yields, a buffer at a time.
func checkData(t *testing.T, r io.Reader, seed uint64, n int64) {
	t.Helper()
	want := newGen(seed, n)
	got := make([]byte, 256<<10)
	exp := make([]byte, len(got))
	var off int64
	for {
		k, err := io.ReadFull(r, got)
		if k > 0 {
			if _, err := io.ReadFull(want, exp[:k]); err != nil {
				t.Fatalf("data longer than %d bytes", n)
			}
			if !bytes.Equal(got[:k], exp[:k]) {
				t.Fatalf("data differs in the %d bytes at offset %d", k, off)
			}
			off += int64(k)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("read data at offset %d: %v", off, err)
		}
	}
	if off != n {
		t.Fatalf("read %d data bytes, want %d", off, n)
	}
	// The Reader reports the checksum at EOF; make sure it said EOF.
	if k, err := r.Read(make([]byte, 1)); k != 0 || err != io.EOF {
		t.Fatalf("after the data: Read = %d, %v; want 0, io.EOF", k, err)
	}
}

func testMeta(index, term uint64) Meta {
	return Meta{
		Index:    index,
		Term:     term,
		Voters:   []consensus.NodeID{3, 1, 2},
		Protocol: []byte(fmt.Sprintf("proto@%d", index)),
	}
}

// dataBytesFor is the data length used for a test snapshot at index.
func dataBytesFor(index uint64) int64 { return 1000 + int64(index)*10007 }

func mustSave(t *testing.T, s *Store, index, term uint64) Info {
	t.Helper()
	info, err := s.Save(testMeta(index, term), newGen(index, dataBytesFor(index)))
	if err != nil {
		t.Fatalf("Save(%d, %d): %v", index, term, err)
	}
	if want := fileName(index, term); info.Name != want || info.Index != index || info.Term != term {
		t.Fatalf("Save(%d, %d) = %+v, want name %s", index, term, info, want)
	}
	return info
}

// checkSnapshot checks that r is the snapshot mustSave wrote at index.
func checkSnapshot(t *testing.T, r *Reader, index, term uint64) {
	t.Helper()
	if m := r.Meta(); !reflect.DeepEqual(m, testMeta(index, term)) {
		t.Fatalf("meta = %+v, want %+v", m, testMeta(index, term))
	}
	checkData(t, r, index, dataBytesFor(index))
}

func mustOpen(t *testing.T, fs vfs.FS, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(fs, dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func listNames(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// readFile and writeFile use only vfs.FS, so tests can damage files on any
// implementation.
func readFile(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, fs vfs.FS, name string, b []byte) {
	t.Helper()
	f, err := fs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want one wrapping %v", what, err, target)
	}
}
