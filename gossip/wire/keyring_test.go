package wire

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synod-io/synod/gossip"
)

func testKey(size int, b byte) []byte { return bytes.Repeat([]byte{b}, size) }

func TestSealOpenEveryKeySize(t *testing.T) {
	for _, size := range []int{16, 24, 32} {
		kr, err := NewKeyring(testKey(size, 1))
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("gossip"), 300)} {
			sealed, err := kr.Seal(nil, msg, []byte("node-1"))
			if err != nil {
				t.Fatal(err)
			}
			if len(sealed) != len(msg)+Overhead {
				t.Fatalf("sealed %d bytes into %d, want overhead %d", len(msg), len(sealed), Overhead)
			}
			got, err := kr.Open(nil, sealed, []byte("node-1"))
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("AES-%d: open gives %q, %v", size*8, got, err)
			}
		}
	}
	for _, size := range []int{0, 8, 15, 17, 31, 33, 64} {
		if _, err := NewKeyring(testKey(size, 1)); !errors.Is(err, ErrKeySize) {
			t.Errorf("key of %d bytes: %v", size, err)
		}
	}
}

func TestNoncesDiffer(t *testing.T) {
	kr, _ := NewKeyring(testKey(32, 1))
	a, _ := kr.Seal(nil, []byte("same"), nil)
	b, _ := kr.Seal(nil, []byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of one message are identical: nonce reused")
	}
}

// TestTamperedRejected: every single-bit change of a sealed message, and
// any change of the additional data, is rejected with a clear error.
func TestTamperedRejected(t *testing.T) {
	kr, _ := NewKeyring(testKey(16, 1), testKey(32, 2))
	sealed, _ := kr.Seal(nil, []byte("alive 7 inc=3"), []byte("node-7"))
	for i := range sealed {
		for bit := range 8 {
			bad := bytes.Clone(sealed)
			bad[i] ^= 1 << bit
			_, err := kr.Open(nil, bad, []byte("node-7"))
			var want error
			switch {
			case i == 0:
				want = ErrMalformed // the version
			case i < 1+keyIDBytes:
				want = ErrUnknownKey // the key ID no longer names a key
			default:
				want = ErrAuth // nonce, ciphertext or tag
			}
			if !errors.Is(err, want) {
				t.Fatalf("bit %d of byte %d flipped: %v, want %v", bit, i, err, want)
			}
		}
	}
	if _, err := kr.Open(nil, sealed, []byte("node-8")); !errors.Is(err, ErrAuth) {
		t.Fatalf("other additional data: %v", err)
	}
	for n := range Overhead {
		if _, err := kr.Open(nil, sealed[:n], []byte("node-7")); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	if _, err := kr.Open(nil, sealed[:len(sealed)-1], []byte("node-7")); !errors.Is(err, ErrAuth) {
		t.Fatalf("missing the last tag byte: %v", err)
	}
}

func TestUnknownKeyRejected(t *testing.T) {
	a, _ := NewKeyring(testKey(32, 1))
	b, _ := NewKeyring(testKey(32, 2))
	sealed, _ := a.Seal(nil, []byte("hello"), nil)
	if _, err := b.Open(nil, sealed, nil); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("message under a key not installed: %v", err)
	}
}

// TestRotation walks the three steps of a key rotation between two nodes
// and checks that they understand each other at every point, and that
// once the old key is removed, messages sealed with it are refused.
func TestRotation(t *testing.T) {
	k1, k2 := testKey(32, 1), testKey(32, 2)
	a, _ := NewKeyring(k1)
	b, _ := NewKeyring(k1)
	talk := func(step string) {
		t.Helper()
		for _, p := range [][2]*Keyring{{a, b}, {b, a}} {
			sealed, err := p[0].Seal(nil, []byte(step), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := p[1].Open(nil, sealed, nil); err != nil || string(got) != step {
				t.Fatalf("%s: %q, %v", step, got, err)
			}
		}
	}
	talk("before")
	old, _ := a.Seal(nil, []byte("sealed with k1"), nil)

	for _, kr := range []*Keyring{a, b} {
		if err := kr.Install(k2); err != nil {
			t.Fatal(err)
		}
	}
	talk("installed")
	if err := a.UsePrimary(k2); err != nil {
		t.Fatal(err)
	}
	talk("a switched") // a seals with k2, b with k1
	if err := b.UsePrimary(k2); err != nil {
		t.Fatal(err)
	}
	talk("both switched")
	if got := a.Keys(); !reflect.DeepEqual(got, [][]byte{k2, k1}) {
		t.Fatalf("keys %x, want k2 then k1", got)
	}
	for _, kr := range []*Keyring{a, b} {
		if err := kr.Remove(k1); err != nil {
			t.Fatal(err)
		}
	}
	talk("old removed")
	if _, err := b.Open(nil, old, nil); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("message under the removed key: %v", err)
	}
}

func TestKeyringRules(t *testing.T) {
	k1, k2, k3 := testKey(16, 1), testKey(16, 2), testKey(16, 3)
	kr, err := NewKeyring(k1, k2, k2)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(kr.Keys()); n != 2 {
		t.Fatalf("%d keys after installing k2 twice, want 2", n)
	}
	if err := kr.Remove(k1); err == nil {
		t.Fatal("removed the primary key")
	}
	if err := kr.UsePrimary(k3); err == nil {
		t.Fatal("made a key primary that is not installed")
	}
	if err := kr.Remove(k3); err != nil {
		t.Fatalf("removing a key not held: %v", err)
	}
	if err := kr.Install(testKey(7, 1)); !errors.Is(err, ErrKeySize) {
		t.Fatalf("installed a 7-byte key: %v", err)
	}
	keys := kr.Keys()
	keys[0][0] ^= 0xff
	if !bytes.Equal(kr.Keys()[0], k1) {
		t.Fatal("Keys returned the keyring's own memory")
	}
	for i := len(kr.Keys()); i < KeysMax; i++ {
		if err := kr.Install(testKey(32, byte(10+i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := kr.Install(testKey(32, 200)); err == nil {
		t.Fatalf("installed a key beyond KeysMax %d", KeysMax)
	}
}

// TestSealedGossipMessage: a gossip message encoded with the core's codec
// travels sealed, bound to the sender's address.
func TestSealedGossipMessage(t *testing.T) {
	kr, _ := NewKeyring(testKey(32, 9))
	m := &gossip.Message{Type: gossip.MsgPing, From: 3, FromAddr: "10.0.0.3:7946", To: 4, Seq: 11,
		Updates: []gossip.Update{{ID: 3, Incarnation: 2, State: gossip.StateAlive, Addr: "10.0.0.3:7946"}}}
	plain, err := gossip.MessageCodec.AppendMessage(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := kr.Seal(nil, plain, []byte(m.FromAddr))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("10.0.0.3")) {
		t.Fatal("the address shows in the sealed message")
	}
	opened, err := kr.Open(nil, sealed, []byte(m.FromAddr))
	if err != nil {
		t.Fatal(err)
	}
	got, err := gossip.MessageCodec.DecodeMessage(opened)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("decoded %v, %v", got, err)
	}
}

// TestConcurrentRotation seals and opens from several goroutines while
// keys rotate underneath; run it with -race. Every message opens: each
// rotation installs the new key on the receiver before the sender uses
// it, and a key is removed only once every worker has finished a message
// begun after the sender stopped using it.
func TestConcurrentRotation(t *testing.T) {
	const workers = 4
	first := testKey(32, 0)
	sender, _ := NewKeyring(first)
	receiver, _ := NewKeyring(first)
	var wg sync.WaitGroup
	var done [workers]atomic.Int64 // messages each worker completed
	stop := make(chan struct{})
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Appendf(nil, "worker %d message %d", w, i)
				sealed, err := sender.Seal(nil, msg, nil)
				if err == nil {
					var got []byte
					got, err = receiver.Open(nil, sealed, nil)
					if err == nil && !bytes.Equal(got, msg) {
						err = fmt.Errorf("opened %q, sealed %q", got, msg)
					}
				}
				if err != nil {
					errs <- err
					return
				}
				done[w].Add(1)
			}
		}()
	}
	// quiesce waits until every worker completed two more messages: the
	// second began after this call.
	quiesce := func() {
		var start [workers]int64
		for w := range workers {
			start[w] = done[w].Load()
		}
		for w := range workers {
			for done[w].Load() < start[w]+2 {
				select {
				case err := <-errs:
					t.Fatal(err)
				default:
					time.Sleep(50 * time.Microsecond)
				}
			}
		}
	}
	for r := 1; r <= 12; r++ {
		old, k := testKey(32, byte(r-1)), testKey(32, byte(r))
		if err := receiver.Install(k); err != nil {
			t.Fatal(err)
		}
		if err := sender.Install(k); err != nil {
			t.Fatal(err)
		}
		if err := sender.UsePrimary(k); err != nil {
			t.Fatal(err)
		}
		if err := receiver.UsePrimary(k); err != nil {
			t.Fatal(err)
		}
		quiesce()
		if err := sender.Remove(old); err != nil {
			t.Fatal(err)
		}
		if err := receiver.Remove(old); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(receiver.Keys()); n != 1 {
		t.Fatalf("%d keys left after the rotations, want 1", n)
	}
}

func TestReplaceAndParseKeys(t *testing.T) {
	a, b := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16)
	text := "# keys, primary first\n" + base64.StdEncoding.EncodeToString(b) + "\n\n" + base64.StdEncoding.EncodeToString(a) + "\n"
	keys, err := ParseKeys([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !bytes.Equal(keys[0], b) || !bytes.Equal(keys[1], a) {
		t.Fatalf("parsed %x", keys)
	}
	kr, err := NewKeyring(a)
	if err != nil {
		t.Fatal(err)
	}
	sealedA, _ := kr.Seal(nil, []byte("m"), nil)
	if err := kr.Replace(keys); err != nil {
		t.Fatal(err)
	}
	if got := kr.Keys(); !bytes.Equal(got[0], b) || len(got) != 2 {
		t.Fatalf("keys after Replace: %x", got)
	}
	if _, err := kr.Open(nil, sealedA, nil); err != nil {
		t.Fatalf("the old key no longer opens: %v", err)
	}
	for _, bad := range [][][]byte{nil, {a, a}, {a, []byte("short")}} {
		if err := kr.Replace(bad); err == nil {
			t.Errorf("Replace(%d keys) accepted", len(bad))
		}
	}
	if got := kr.Keys(); !bytes.Equal(got[0], b) || len(got) != 2 {
		t.Fatalf("a refused Replace changed the keys: %x", got)
	}
	for _, bad := range []string{"", "# only a comment\n", "!!!\n", base64.StdEncoding.EncodeToString([]byte("short")) + "\n"} {
		if _, err := ParseKeys([]byte(bad)); err == nil {
			t.Errorf("ParseKeys(%q) accepted", bad)
		}
	}
	if _, err := ParseKeys([]byte("x\n!!!")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("error does not name the line: %v", err)
	}
}
