package consensus

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestEntryRoundTrip(t *testing.T) {
	entries := []Entry{
		{},
		{Index: 1, Term: 1, Type: EntryNoOp},
		{Index: 1 << 40, Term: 7, Command: Command{Session: Session{ClientID: 3, Seq: 9}, Keys: []string{"a", ""}, Data: []byte("payload")}},
	}
	for _, e := range entries {
		buf := AppendEntry([]byte("prefix"), &e)
		d := NewDecoder(buf[len("prefix"):])
		got := d.Entry()
		d.End()
		if d.Err() != nil {
			t.Fatalf("%+v: %v", e, d.Err())
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip: got %+v, want %+v", got, e)
		}
	}
}

func TestEntryDecodeErrors(t *testing.T) {
	e := Entry{Index: 5, Term: 2, Command: Command{Keys: []string{"k"}, Data: []byte("abc")}}
	good := AppendEntry(nil, &e)
	for cut := 0; cut < len(good); cut++ {
		d := NewDecoder(good[:cut])
		d.Entry()
		d.End()
		if !errors.Is(d.Err(), ErrMalformed) {
			t.Fatalf("truncated at %d: want ErrMalformed, got %v", cut, d.Err())
		}
	}
	d := NewDecoder(append(bytes.Clone(good), 0))
	d.Entry()
	d.End()
	if !errors.Is(d.Err(), ErrMalformed) {
		t.Fatalf("trailing byte: want ErrMalformed, got %v", d.Err())
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(AppendEntry(nil, &Entry{Index: 1, Term: 1, Command: Command{Keys: []string{"x"}, Data: []byte("y")}}))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(data)
		e := d.Entry()
		d.End()
		if d.Err() != nil {
			return
		}
		// What decodes must re-encode to the same bytes.
		if again := AppendEntry(nil, &e); !bytes.Equal(again, data) {
			// Varints may have non-minimal encodings; re-decoding must
			// still give the same entry.
			d2 := NewDecoder(again)
			if e2 := d2.Entry(); !reflect.DeepEqual(e, e2) {
				t.Fatalf("re-encoding changed the entry: %+v vs %+v", e, e2)
			}
		}
	})
}
