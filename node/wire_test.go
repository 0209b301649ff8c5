package node

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/gossip/wire"
	"github.com/synod-io/synod/raft"
)

func testKeyring(t *testing.T, keys ...byte) *wire.Keyring {
	t.Helper()
	var raw [][]byte
	for _, k := range keys {
		raw = append(raw, bytes.Repeat([]byte{k}, 32))
	}
	kr, err := wire.NewKeyring(raw[0], raw[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// TestPeerCodecSealsGossip: with a keyring, SWIM and store messages travel
// sealed (their bytes do not appear on the wire) and decode back; the
// replica's messages are not sealed.
func TestPeerCodecSealsGossip(t *testing.T) {
	c := peerCodec{replica: raft.MessageCodec, keyring: testKeyring(t, 1)}
	ping := &gossip.Message{Type: gossip.MsgPing, From: 1, FromAddr: "secret-address:2380", To: 2, Seq: 7}
	push := &store.Message{Type: store.MsgPush, From: 1, To: 2, Entries: []store.Entry{{Key: "secret-key", Value: []byte("v"), Origin: 1}}}
	for _, p := range []consensus.Payload{ping, push} {
		enc, err := c.AppendMessage(nil, p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(enc, []byte("secret")) {
			t.Fatalf("%s travels in the clear: %q", p.MessageType(), enc)
		}
		got, err := c.DecodeMessage(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("round trip of %s: %+v, want %+v", p.MessageType(), got, p)
		}
	}
}

// TestPeerCodecRejectsWhatTheKeyringDoesNotOpen: a foreign key, a
// tampered message, an unsealed message to a member with a keyring and a
// sealed one to a member without all decode as rejected (never as an
// error, which would close the stream), and key rotation works.
func TestPeerCodecRejectsWhatTheKeyringDoesNotOpen(t *testing.T) {
	ping := &gossip.Message{Type: gossip.MsgPing, From: 1, FromAddr: "a:1", To: 2, Seq: 1}
	seal := func(c peerCodec) []byte {
		enc, err := c.AppendMessage(nil, ping)
		if err != nil {
			t.Fatal(err)
		}
		return enc
	}
	sealed1 := seal(peerCodec{keyring: testKeyring(t, 1)})
	plain := seal(peerCodec{})
	tampered := bytes.Clone(sealed1)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name string
		recv peerCodec
		data []byte
		want string
	}{
		{"foreign key", peerCodec{keyring: testKeyring(t, 2)}, sealed1, "not installed"},
		{"tampered", peerCodec{keyring: testKeyring(t, 1)}, tampered, "authentication"},
		{"unsealed to a keyring", peerCodec{keyring: testKeyring(t, 1)}, plain, "unsealed"},
		{"sealed to no keyring", peerCodec{}, sealed1, "no gossip keyring"},
	} {
		got, err := tc.recv.DecodeMessage(tc.data)
		if err != nil {
			t.Fatalf("%s: error %v; want a rejected message", tc.name, err)
		}
		r, ok := got.(*rejectedMessage)
		if !ok || !strings.Contains(r.err.Error(), tc.want) {
			t.Fatalf("%s: decoded %#v; want rejected with %q", tc.name, got, tc.want)
		}
	}
	// Rotation: a member holding old and new keys opens both.
	rotating := peerCodec{keyring: testKeyring(t, 2, 1)}
	for _, data := range [][]byte{sealed1, seal(peerCodec{keyring: testKeyring(t, 2)})} {
		if got, err := rotating.DecodeMessage(data); err != nil || !reflect.DeepEqual(got, ping) {
			t.Fatalf("rotation: %#v, %v", got, err)
		}
	}
	// Bytes that are no message at all are still an error.
	if _, err := (peerCodec{}).DecodeMessage([]byte{99}); !errors.Is(err, consensus.ErrMalformed) {
		t.Fatalf("unknown tag: %v", err)
	}
}
