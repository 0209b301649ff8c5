// Package wire authenticates and encrypts gossip messages on the network.
// It sits between the gossip core (which only produces and consumes
// plaintext, see gossip.MessageCodec) and the host's transport, and is not
// pure: it draws nonces from crypto/rand and guards its keys with a mutex,
// so it lives apart from the core.
//
// A Keyring holds AES-GCM keys (16, 24 or 32 bytes: AES-128, -192, -256).
// The primary key seals every outgoing message; Open tries every installed
// key, so a group can rotate keys without a flag day:
//
//  1. Install the new key on every node (each still seals with the old one
//     and can now open both);
//  2. UsePrimary the new key on every node (they seal with it; the others
//     can open it since step 1);
//  3. Remove the old key on every node once no message sealed with it can
//     still be in flight.
//
// A sealed message is: version (1 byte), key ID (4 bytes), nonce (12
// bytes), then the ciphertext with its 16-byte tag. The version and key ID
// are authenticated along with the caller's additional data. The key ID is
// a fingerprint of the key (the first bytes of a SHA-256 over it), used
// only to tell "sealed with a key not installed" apart from "tampered
// with" when no key opens a message; it reveals nothing useful about the
// key. Nonces are random: seal fewer than 2^32 messages under one key
// (rotate well before), as for any AES-GCM use with random nonces.
package wire

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Version is the format version of sealed messages.
const Version byte = 1

const (
	keyIDBytes = 4
	nonceBytes = 12
	tagBytes   = 16
	headerSize = 1 + keyIDBytes + nonceBytes
)

// Overhead is how many bytes Seal adds to a message.
const Overhead = headerSize + tagBytes

// KeysMax bounds the keys one keyring holds.
const KeysMax = 16

var (
	// ErrKeySize: a key is not 16, 24 or 32 bytes long.
	ErrKeySize = errors.New("wire: a key must be 16, 24 or 32 bytes (AES-128, AES-192, AES-256)")
	// ErrUnknownKey: the message was sealed with a key this keyring does
	// not hold (or its key ID was altered).
	ErrUnknownKey = errors.New("wire: message sealed with a key that is not installed")
	// ErrAuth: no installed key authenticates the message: it was altered
	// in transit, or its additional data differs from what was sealed.
	ErrAuth = errors.New("wire: message failed authentication (tampered with, or wrong additional data)")
	// ErrMalformed: the message is too short or of an unknown version.
	ErrMalformed = errors.New("wire: malformed sealed message")
)

type key struct {
	raw  []byte
	id   [keyIDBytes]byte
	aead cipher.AEAD
}

func newKey(raw []byte) (*key, error) {
	switch len(raw) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w; got %d bytes", ErrKeySize, len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &key{raw: slices.Clone(raw), aead: aead}
	sum := sha256.Sum256(append([]byte("synod gossip key id\x00"), raw...))
	copy(k.id[:], sum[:])
	return k, nil
}

// Keyring holds the keys of one node. It is safe for concurrent use:
// transports seal and open from many goroutines while an operator rotates
// keys.
type Keyring struct {
	mu sync.RWMutex
	// keys[0] is the primary. Invariant: 1 <= len(keys) <= KeysMax, no
	// two keys are equal.
	keys []*key
}

// NewKeyring returns a keyring whose primary key is primary, with others
// installed too.
func NewKeyring(primary []byte, others ...[]byte) (*Keyring, error) {
	p, err := newKey(primary)
	if err != nil {
		return nil, err
	}
	kr := &Keyring{keys: []*key{p}}
	for _, o := range others {
		if err := kr.Install(o); err != nil {
			return nil, err
		}
	}
	return kr, nil
}

func (kr *Keyring) find(raw []byte) int {
	return slices.IndexFunc(kr.keys, func(k *key) bool { return bytes.Equal(k.raw, raw) })
}

// Install adds a key that Open will try. Installing a key already held
// does nothing.
func (kr *Keyring) Install(raw []byte) error {
	k, err := newKey(raw)
	if err != nil {
		return err
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.find(raw) >= 0 {
		return nil
	}
	if len(kr.keys) >= KeysMax {
		return fmt.Errorf("wire: keyring holds %d keys (KeysMax); remove one first", len(kr.keys))
	}
	kr.keys = append(kr.keys, k)
	return nil
}

// UsePrimary makes an installed key the one Seal uses.
func (kr *Keyring) UsePrimary(raw []byte) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	i := kr.find(raw)
	if i < 0 {
		return errors.New("wire: the new primary key is not installed; Install it first")
	}
	kr.keys[0], kr.keys[i] = kr.keys[i], kr.keys[0]
	return nil
}

// Remove drops a key. The primary cannot be removed: make another key
// primary first. Removing a key not held does nothing.
func (kr *Keyring) Remove(raw []byte) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	i := kr.find(raw)
	switch {
	case i == 0:
		return errors.New("wire: cannot remove the primary key; UsePrimary another first")
	case i > 0:
		kr.keys = slices.Delete(kr.keys, i, i+1)
	}
	return nil
}

// Replace makes keys exactly the installed keys, keys[0] the primary, in
// one step (a reload of the operator's key file). Nothing changes if any
// key is invalid, or there are none, or more than KeysMax, or one repeats.
func (kr *Keyring) Replace(keys [][]byte) error {
	if len(keys) == 0 || len(keys) > KeysMax {
		return fmt.Errorf("wire: %d keys; a keyring holds 1..%d", len(keys), KeysMax)
	}
	next := make([]*key, 0, len(keys))
	for i, raw := range keys {
		k, err := newKey(raw)
		if err != nil {
			return fmt.Errorf("key %d: %w", i+1, err)
		}
		if slices.ContainsFunc(next, func(o *key) bool { return bytes.Equal(o.raw, k.raw) }) {
			return fmt.Errorf("wire: key %d repeats an earlier key", i+1)
		}
		next = append(next, k)
	}
	kr.mu.Lock()
	kr.keys = next
	kr.mu.Unlock()
	return nil
}

// ParseKeys reads keys from text: one standard base64 key per line, the
// primary first; blank lines and lines starting with # are skipped. Errors
// name the line. (Generate a key with: head -c 32 /dev/urandom | base64.)
func ParseKeys(text []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64: %w", i+1, err)
		}
		if _, err := newKey(raw); err != nil {
			return nil, fmt.Errorf("line %d: %d bytes: %w", i+1, len(raw), err)
		}
		keys = append(keys, raw)
	}
	if len(keys) == 0 || len(keys) > KeysMax {
		return nil, fmt.Errorf("%d keys; want 1..%d, one base64 key per line, the primary first", len(keys), KeysMax)
	}
	return keys, nil
}

// Keys returns copies of the installed keys, the primary first.
func (kr *Keyring) Keys() [][]byte {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	out := make([][]byte, len(kr.keys))
	for i, k := range kr.keys {
		out[i] = slices.Clone(k.raw)
	}
	return out
}

// additional is what GCM authenticates besides the ciphertext: the
// header's version and key ID, then the caller's data.
func additional(version byte, id []byte, ad []byte) []byte {
	out := make([]byte, 0, 1+len(id)+len(ad))
	out = append(out, version)
	out = append(out, id...)
	return append(out, ad...)
}

// Seal encrypts and authenticates plaintext under the primary key, binding
// ad (additional data that is authenticated but not sent, such as the
// sender's claimed address; pass nil for none), and appends the sealed
// message to dst.
func (kr *Keyring) Seal(dst, plaintext, ad []byte) ([]byte, error) {
	kr.mu.RLock()
	k := kr.keys[0]
	kr.mu.RUnlock()
	var header [headerSize]byte
	header[0] = Version
	copy(header[1:], k.id[:])
	nonce := header[1+keyIDBytes:]
	if _, err := rand.Read(nonce); err != nil {
		return dst, fmt.Errorf("wire: drawing a nonce: %w", err)
	}
	dst = append(dst, header[:]...)
	return k.aead.Seal(dst, nonce, plaintext, additional(Version, k.id[:], ad)), nil
}

// Open authenticates and decrypts a sealed message with whichever
// installed key opens it, checking ad as Seal bound it, and appends the
// plaintext to dst. It fails with ErrMalformed, ErrUnknownKey or ErrAuth.
func (kr *Keyring) Open(dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return dst, fmt.Errorf("%w: %d bytes, at least %d expected", ErrMalformed, len(sealed), Overhead)
	}
	if sealed[0] != Version {
		return dst, fmt.Errorf("%w: version %d, want %d", ErrMalformed, sealed[0], Version)
	}
	id := sealed[1 : 1+keyIDBytes]
	nonce := sealed[1+keyIDBytes : headerSize]
	body := sealed[headerSize:]
	aad := additional(Version, id, ad)
	kr.mu.RLock()
	keys := slices.Clone(kr.keys)
	kr.mu.RUnlock()
	known := false
	for _, k := range keys {
		known = known || bytes.Equal(k.id[:], id)
		if out, err := k.aead.Open(dst, nonce, body, aad); err == nil {
			return out, nil
		}
	}
	if !known {
		return dst, fmt.Errorf("%w (key ID %x)", ErrUnknownKey, id)
	}
	return dst, ErrAuth
}
