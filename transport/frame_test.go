package transport

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sampleBatch() []wireMsg {
	return []wireMsg{
		{From: 1, To: 2, Payload: []byte("a")},
		{From: 1, To: 2, Payload: nil},
		{From: 1 << 40, To: 3, Payload: bytes.Repeat([]byte{0xAB}, 300)},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	h := hello{ClusterID: 1<<63 + 5, From: 3, To: 1}
	hf := appendHelloFrame([]byte("x"), h)[1:]
	f, err := decodeFrame(hf, 1<<20)
	if err != nil || f.Kind != frameKindHello {
		t.Fatalf("hello frame: %v, kind %d", err, f.Kind)
	}
	if got, err := decodeHello(f.Body); err != nil || got != h {
		t.Fatalf("hello: got %+v (%v), want %+v", got, err, h)
	}

	msgs := sampleBatch()
	bf := appendBatchFrame(nil, msgs)
	got, err := decodeBatchFrame(bf, len(bf))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i].From != msgs[i].From || got[i].To != msgs[i].To || !bytes.Equal(got[i].Payload, msgs[i].Payload) {
			t.Fatalf("message %d: got %+v, want %+v", i, got[i], msgs[i])
		}
	}
	size := batchOverheadMax
	for i := range msgs {
		size += msgs[i].batchBytes()
	}
	if len(bf) > size {
		t.Fatalf("batch frame of %d bytes exceeds its computed bound %d", len(bf), size)
	}
}

func TestFrameRejects(t *testing.T) {
	good := appendBatchFrame(nil, sampleBatch())
	for cut := 0; cut < len(good); cut++ {
		if _, err := decodeBatchFrame(good[:cut], 1<<20); !errors.Is(err, errFrame) {
			t.Fatalf("truncated at %d: want errFrame, got %v", cut, err)
		}
	}
	// Any single flipped bit is caught (by the checksum, if nothing else).
	for i := range good {
		for bit := range 8 {
			bad := bytes.Clone(good)
			bad[i] ^= 1 << bit
			if _, err := decodeBatchFrame(bad, 1<<20); !errors.Is(err, errFrame) {
				t.Fatalf("bit %d of byte %d flipped: want errFrame, got %v", bit, i, err)
			}
		}
	}
	if _, err := decodeBatchFrame(good, len(good)-1); !errors.Is(err, errFrame) {
		t.Fatalf("frame over the size limit: want errFrame, got %v", err)
	}
	if _, err := decodeBatchFrame(append(bytes.Clone(good), 0), 1<<20); !errors.Is(err, errFrame) {
		t.Fatalf("trailing byte: want errFrame, got %v", err)
	}
	// Well-checksummed frames with bad bodies.
	build := func(kind byte, body ...byte) []byte {
		buf, start := beginFrame(nil, kind)
		return finishFrame(append(buf, body...), start)
	}
	cases := map[string][]byte{
		"empty batch":             build(frameKindBatch, 0),
		"count past the end":      build(frameKindBatch, 5, 1, 2, 0),
		"payload past the end":    build(frameKindBatch, 1, 1, 2, 9, 'x'),
		"trailing bytes in batch": build(frameKindBatch, 1, 1, 2, 0, 0),
		"hello in place of batch": appendHelloFrame(nil, hello{ClusterID: 1, From: 1, To: 2}),
		"unknown kind":            build(9, 1, 1, 2, 0),
		"bad varint":              build(frameKindBatch, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
	}
	for name, data := range cases {
		if _, err := decodeBatchFrame(data, 1<<20); !errors.Is(err, errFrame) {
			t.Errorf("%s: want errFrame, got %v", name, err)
		}
	}
	if _, err := decodeHello([]byte{1, 2}); !errors.Is(err, errFrame) {
		t.Errorf("short hello: want errFrame, got %v", err)
	}
	if _, err := decodeHello([]byte{1, 2, 3, 4}); !errors.Is(err, errFrame) {
		t.Errorf("long hello: want errFrame, got %v", err)
	}
	v := bytes.Clone(good)
	v[0] = frameVersion + 1
	if _, err := decodeBatchFrame(v, 1<<20); !errors.Is(err, errFrame) {
		t.Errorf("unknown version: want errFrame, got %v", err)
	}
}

// TestFrameVersion: a hello of version 1 (the layout is the same, the
// payload encoding is not) is refused with an error naming both versions.
func TestFrameVersion(t *testing.T) {
	if frameVersion != 2 {
		t.Fatalf("frameVersion %d: update this test and the history in frame.go", frameVersion)
	}
	old := helloOfVersion(1, hello{ClusterID: 7, From: 1, To: 2})
	_, err := decodeFrame(old, 1<<20)
	var ve *versionError
	if !errors.As(err, &ve) || *ve != (versionError{Local: 2, Peer: 1}) || !errors.Is(err, errFrame) {
		t.Fatalf("version 1 hello: got %v, want a versionError from 1 to 2 matching errFrame", err)
	}
	const want = "transport: the peer runs transport version 1, this node version 2: every member must run the same synod version"
	if err.Error() != want {
		t.Fatalf("version 1 hello: %q, want %q", err, want)
	}
	// The same hello at this version is accepted.
	old[0] = frameVersion
	if _, err := decodeFrame(finishFrame(old[:len(old)-frameTrailerBytes], 0), 1<<20); err != nil {
		t.Fatalf("version %d hello: %v", frameVersion, err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendBatchFrame(nil, sampleBatch()))
	f.Add(appendBatchFrame(nil, []wireMsg{{From: 1, To: 2}}))
	f.Add(appendHelloFrame(nil, hello{ClusterID: 7, From: 1, To: 2}))
	f.Add([]byte{})
	f.Add(make([]byte, frameBytesMin))
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxBytes = 1 << 16
		// The checksum hides most mutations from the body decoders, so
		// also feed them the input directly, wrapped in a valid frame.
		for _, kind := range []byte{frameKindHello, frameKindBatch} {
			buf, start := beginFrame(nil, kind)
			checkFrame(t, finishFrame(append(buf, data...), start), maxBytes)
		}
		checkFrame(t, data, maxBytes)
	})
}

// checkFrame decodes data as a frame and, if it decodes, checks that
// encoding what it holds decodes to the same.
func checkFrame(t *testing.T, data []byte, maxBytes int) {
	t.Helper()
	fr, err := decodeFrame(data, maxBytes)
	if err != nil {
		if !errors.Is(err, errFrame) {
			t.Fatalf("error does not match errFrame: %v", err)
		}
		return
	}
	switch fr.Kind {
	case frameKindHello:
		h, err := decodeHello(fr.Body)
		if err != nil {
			return
		}
		again, err := decodeFrame(appendHelloFrame(nil, h), maxBytes)
		if err != nil {
			t.Fatalf("re-encoded hello does not decode: %v", err)
		}
		if h2, err := decodeHello(again.Body); err != nil || h2 != h {
			t.Fatalf("hello changed on re-encoding: %+v vs %+v (%v)", h, h2, err)
		}
	case frameKindBatch:
		msgs, err := decodeBatch(fr.Body)
		if err != nil {
			return
		}
		if len(msgs) == 0 || len(msgs) > frameMessagesMax {
			t.Fatalf("decoded a batch of %d messages", len(msgs))
		}
		re := appendBatchFrame(nil, msgs)
		msgs2, err := decodeBatchFrame(re, len(re))
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		norm := func(ms []wireMsg) []wireMsg {
			out := make([]wireMsg, len(ms))
			for i, m := range ms {
				out[i] = wireMsg{From: m.From, To: m.To, Payload: append([]byte{}, m.Payload...)}
			}
			return out
		}
		if !reflect.DeepEqual(norm(msgs), norm(msgs2)) {
			t.Fatalf("batch changed on re-encoding")
		}
	default:
		t.Fatalf("decoded a frame of unknown kind %d", fr.Kind)
	}
}
