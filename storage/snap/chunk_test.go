package snap

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/synod-io/synod/storage/vfs"
)

// sendChunks reads every chunk of name from src in chunks of chunkBytes.
func sendChunks(t *testing.T, s *Store, name string, chunkBytes int) []Chunk {
	t.Helper()
	src, err := s.OpenSource(name)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if info, _ := parseName(name); src.Meta().Index != info.Index || src.Meta().Term != info.Term {
		t.Fatalf("source meta %+v for %s", src.Meta(), name)
	}
	var chunks []Chunk
	for off := int64(0); ; {
		c, err := src.ReadChunk(off, make([]byte, chunkBytes))
		if err != nil {
			t.Fatalf("ReadChunk(%d): %v", off, err)
		}
		chunks = append(chunks, c)
		off += int64(len(c.Data))
		if c.Done {
			if off != src.FileBytes() {
				t.Fatalf("Done at %d of %d bytes", off, src.FileBytes())
			}
			return chunks
		}
	}
}

func TestChunkedTransfer(t *testing.T) {
	from := mustOpen(t, vfs.NewMem(), "/leader", Options{})
	info := mustSave(t, from, 20, 3)
	for _, chunkBytes := range []int{1, 7, 4096, ChunkBytesMax} {
		mem := vfs.NewMem()
		to := mustOpen(t, mem, "/follower", Options{})
		var chunks []Chunk
		if chunkBytes == 1 {
			// One byte at a time over the first bytes, then larger.
			for _, c := range sendChunks(t, from, info.Name, 4096) {
				if c.Offset == 0 {
					for i := range 40 {
						chunks = append(chunks, Chunk{Offset: int64(i), Data: c.Data[i : i+1]})
					}
					c = Chunk{Offset: 40, Data: c.Data[40:], Done: c.Done}
				}
				chunks = append(chunks, c)
			}
		} else {
			chunks = sendChunks(t, from, info.Name, chunkBytes)
		}
		rc, err := to.NewReceiver()
		if err != nil {
			t.Fatal(err)
		}
		var got Info
		for i, c := range chunks {
			got, err = rc.Accept(c)
			if err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
			if !c.Done && got != (Info{}) {
				t.Fatalf("chunk %d: installed before the last chunk", i)
			}
		}
		if got != info {
			t.Fatalf("installed %+v, want %+v", got, info)
		}
		if _, err := rc.Accept(Chunk{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Accept after install: %v", err)
		}
		// Installed durably, and nothing else left behind.
		after := mustOpen(t, mem.CrashClone(), "/follower", Options{})
		if names := listNames(t, after.fs, "/follower"); !slices.Equal(names, []string{info.Name}) {
			t.Fatalf("after install and crash: %v", names)
		}
		r, _, err := after.LoadNewest()
		if err != nil {
			t.Fatal(err)
		}
		checkSnapshot(t, r, 20, 3)
		r.Close()
	}
}

func TestChunkRejections(t *testing.T) {
	from := mustOpen(t, vfs.NewMem(), "/leader", Options{})
	info := mustSave(t, from, 20, 3)
	chunks := sendChunks(t, from, info.Name, 64<<10)
	if len(chunks) < 3 {
		t.Fatalf("only %d chunks", len(chunks))
	}
	to := mustOpen(t, vfs.NewMem(), "/follower", Options{})
	rc, err := to.NewReceiver()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Accept(chunks[1]); !errors.Is(err, ErrChunkOutOfOrder) || !strings.Contains(err.Error(), "gap") {
		t.Fatalf("chunk 1 first: %v", err)
	}
	if _, err := rc.Accept(chunks[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Accept(chunks[0]); !errors.Is(err, ErrChunkOutOfOrder) || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("chunk 0 again: %v", err)
	}
	big := Chunk{Offset: rc.Offset(), Data: make([]byte, ChunkBytesMax+1)}
	if _, err := rc.Accept(big); !errors.Is(err, ErrChunkTooLarge) {
		t.Fatalf("oversized chunk: %v", err)
	}
	// The rejections left the Receiver usable: the rest installs.
	if rc.Offset() != chunks[1].Offset {
		t.Fatalf("Offset %d, want %d", rc.Offset(), chunks[1].Offset)
	}
	for _, c := range chunks[1:] {
		if _, err := rc.Accept(c); err != nil {
			t.Fatal(err)
		}
	}
	r, _, err := to.LoadNewest()
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, r, 20, 3)
	r.Close()

	// A source refuses bad requests.
	src, err := from.OpenSource(info.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.ReadChunk(0, make([]byte, ChunkBytesMax+1)); !errors.Is(err, ErrChunkTooLarge) {
		t.Fatalf("oversized read: %v", err)
	}
	if _, err := src.ReadChunk(src.FileBytes(), make([]byte, 10)); err == nil {
		t.Fatal("read past the end accepted")
	}
}

func TestChunkCorruptedFailsAtEnd(t *testing.T) {
	from := mustOpen(t, vfs.NewMem(), "/leader", Options{})
	info := mustSave(t, from, 20, 3)
	for _, where := range []string{"header", "data", "trailer"} {
		chunks := sendChunks(t, from, info.Name, 64<<10)
		switch where {
		case "header":
			chunks[0].Data[headerBytes+3] ^= 4 // inside the index: the header still parses
		case "data":
			chunks[1].Data[100] ^= 4
		case "trailer":
			last := chunks[len(chunks)-1].Data
			last[len(last)-9] ^= 4
		}
		mem := vfs.NewMem()
		to := mustOpen(t, mem, "/follower", Options{})
		rc, err := to.NewReceiver()
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range chunks {
			_, err = rc.Accept(c)
			if err != nil && i < len(chunks)-1 {
				t.Fatalf("%s: chunk %d: %v", where, i, err)
			}
		}
		wantErr(t, err, ErrCorrupt, where+": last chunk")
		if names := listNames(t, mem, "/follower"); len(names) != 0 {
			t.Fatalf("%s: files left: %v", where, names)
		}
	}
}

func TestChunkNotASnapshotRejectedEarly(t *testing.T) {
	mem := vfs.NewMem()
	to := mustOpen(t, mem, "/follower", Options{})
	rc, err := to.NewReceiver()
	if err != nil {
		t.Fatal(err)
	}
	_, err = rc.Accept(Chunk{Data: []byte("this is not a snapshot file at all")})
	wantErr(t, err, ErrCorrupt, "garbage first chunk")
	if names := listNames(t, mem, "/follower"); len(names) != 0 {
		t.Fatalf("files left: %v", names)
	}
	if _, err := rc.Accept(Chunk{Offset: 34}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept after failure: %v", err)
	}
}

func TestChunkReceiveTooLarge(t *testing.T) {
	from := mustOpen(t, vfs.NewMem(), "/leader", Options{})
	info := mustSave(t, from, 20, 3)
	to := mustOpen(t, vfs.NewMem(), "/follower", Options{SizeBytesMax: 100 << 10})
	rc, err := to.NewReceiver()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range sendChunks(t, from, info.Name, 64<<10) {
		if _, err = rc.Accept(c); err != nil {
			break
		}
	}
	wantErr(t, err, ErrTooLarge, "receiving past SizeBytesMax")
}

func TestChunkAbortAndCrashMidReceive(t *testing.T) {
	from := mustOpen(t, vfs.NewMem(), "/leader", Options{})
	info := mustSave(t, from, 20, 3)
	chunks := sendChunks(t, from, info.Name, 16<<10)

	// Abort removes the temporary file.
	mem := vfs.NewMem()
	to := mustOpen(t, mem, "/follower", Options{})
	rc, err := to.NewReceiver()
	if err != nil {
		t.Fatal(err)
	}
	rc.Accept(chunks[0])
	if err := rc.Abort(); err != nil {
		t.Fatal(err)
	}
	if names := listNames(t, mem, "/follower"); len(names) != 0 {
		t.Fatalf("after Abort: %v", names)
	}

	// A crash after any operation of a receive leaves either no snapshot
	// or the complete one, and no temporary file after Open.
	for k := 0; ; k++ {
		fs := newCrashFS(vfs.NewMem())
		to := mustOpen(t, fs, "/follower", Options{})
		fs.crashAfter = fs.ops + k
		rc, err := to.NewReceiver()
		var installErr error = errCrashed
		if err == nil {
			for _, c := range chunks {
				if _, installErr = rc.Accept(c); installErr != nil {
					break
				}
			}
		}
		finished := fs.crashed == nil
		after := fs.afterCrash()
		s2 := mustOpen(t, after, "/follower", Options{})
		names := listNames(t, after, "/follower")
		switch {
		case len(names) == 0:
			if installErr == nil {
				t.Fatalf("k=%d: installed, but lost in the crash", k)
			}
		case slices.Equal(names, []string{info.Name}):
			r, skipped, err := s2.LoadNewest()
			if err != nil || len(skipped) > 0 {
				t.Fatalf("k=%d: LoadNewest: %v, skipped %v", k, err, skipped)
			}
			checkSnapshot(t, r, 20, 3)
			r.Close()
		default:
			t.Fatalf("k=%d: after the crash: %v", k, names)
		}
		if finished {
			if installErr != nil {
				t.Fatalf("k=%d: no crash, but %v", k, installErr)
			}
			t.Logf("crashed after each of %d operations", k)
			return
		}
	}
}
