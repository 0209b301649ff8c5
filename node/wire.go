package node

import (
	"fmt"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
	"github.com/synod-io/synod/gossip/wire"
)

// Tags of peerCodec: the first byte of every encoded peer message says
// which codec encoded the rest, and whether it is sealed.
const (
	tagReplica     byte = 1 // the replication protocol's (protocol.messages)
	tagSWIM        byte = 2 // membership (gossip.MessageCodec)
	tagStore       byte = 3 // the eventually consistent store (store.MessageCodec)
	tagSWIMSealed  byte = 4 // tagSWIM's encoding sealed by the gossip keyring
	tagStoreSealed byte = 5 // tagStore's encoding sealed by the gossip keyring
)

// peerCodec is the transport's codec: a node's peers carry its replica's
// messages, SWIM's and, in gossip mode, the store's, over one stream.
// replica is nil in gossip mode (no consensus replica).
//
// With a keyring (Config.GossipKeyring), SWIM and store messages are
// sealed with AES-GCM (package gossip/wire), the tag authenticated with
// them, and only sealed ones are accepted. A gossip message that fails
// (unsealed, sealed under a key not installed, tampered with, or sealed
// while this member has no keyring) decodes as a *rejectedMessage, which
// the node drops and logs, instead of as an error, which would make the
// transport close the stream and cut the replica's traffic too. The
// replica's messages are never sealed: peer TLS protects them (and
// everything else on the stream).
type peerCodec struct {
	replica consensus.MessageCodec
	keyring *wire.Keyring
}

// rejectedMessage is a peer's gossip message that did not pass the
// keyring. It is never sent.
type rejectedMessage struct{ err error }

func (*rejectedMessage) MessageType() string { return "node.Rejected" }

func (c peerCodec) AppendMessage(buf []byte, p consensus.Payload) ([]byte, error) {
	var tag byte
	var codec consensus.MessageCodec
	switch p.(type) {
	case *gossip.Message:
		tag, codec = tagSWIM, gossip.MessageCodec
	case *store.Message:
		tag, codec = tagStore, store.MessageCodec
	default:
		if c.replica == nil {
			return nil, fmt.Errorf("node: no codec for a %s message", p.MessageType())
		}
		return c.replica.AppendMessage(append(buf, tagReplica), p)
	}
	if c.keyring == nil {
		return codec.AppendMessage(append(buf, tag), p)
	}
	plain, err := codec.AppendMessage(nil, p)
	if err != nil {
		return nil, err
	}
	tag += tagSWIMSealed - tagSWIM
	return c.keyring.Seal(append(buf, tag), plain, []byte{tag})
}

func (c peerCodec) DecodeMessage(data []byte) (consensus.Payload, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: node: empty peer message", consensus.ErrMalformed)
	}
	tag, body := data[0], data[1:]
	switch tag {
	case tagReplica:
		if c.replica != nil {
			return c.replica.DecodeMessage(body)
		}
	case tagSWIM, tagStore:
		if c.keyring != nil {
			return &rejectedMessage{fmt.Errorf("an unsealed gossip message, but this member has a gossip keyring: give every member the same keyring")}, nil
		}
		return decodeGossip(tag, body)
	case tagSWIMSealed, tagStoreSealed:
		if c.keyring == nil {
			return &rejectedMessage{fmt.Errorf("a sealed gossip message, but this member has no gossip keyring: give every member the same keyring")}, nil
		}
		plain, err := c.keyring.Open(nil, body, []byte{tag})
		if err != nil {
			return &rejectedMessage{fmt.Errorf("a gossip message that the keyring does not open: %w", err)}, nil
		}
		return decodeGossip(tag-(tagSWIMSealed-tagSWIM), plain)
	}
	return nil, fmt.Errorf("%w: node: peer message with unknown tag %d (a member running another protocol or version?)", consensus.ErrMalformed, tag)
}

// decodeGossip decodes an unsealed SWIM or store message.
func decodeGossip(tag byte, body []byte) (consensus.Payload, error) {
	if tag == tagSWIM {
		return gossip.MessageCodec.DecodeMessage(body)
	}
	return store.MessageCodec.DecodeMessage(body)
}
