package node

import (
	"fmt"

	"github.com/synod-io/synod/consensus"
	"github.com/synod-io/synod/gossip"
	"github.com/synod-io/synod/gossip/store"
)

// Tags of peerCodec: the first byte of every encoded peer message says
// which codec encoded the rest.
const (
	tagReplica byte = 1 // the replication protocol's (protocol.messages)
	tagSWIM    byte = 2 // membership (gossip.MessageCodec)
	tagStore   byte = 3 // the eventually consistent store (store.MessageCodec)
)

// peerCodec is the transport's codec: a node's peers carry its replica's
// messages, SWIM's and, in gossip mode, the store's, over one stream.
// replica is nil in gossip mode (no consensus replica).
type peerCodec struct{ replica consensus.MessageCodec }

func (c peerCodec) AppendMessage(buf []byte, p consensus.Payload) ([]byte, error) {
	switch p.(type) {
	case *gossip.Message:
		return gossip.MessageCodec.AppendMessage(append(buf, tagSWIM), p)
	case *store.Message:
		return store.MessageCodec.AppendMessage(append(buf, tagStore), p)
	}
	if c.replica == nil {
		return nil, fmt.Errorf("node: no codec for a %s message", p.MessageType())
	}
	return c.replica.AppendMessage(append(buf, tagReplica), p)
}

func (c peerCodec) DecodeMessage(data []byte) (consensus.Payload, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: node: empty peer message", consensus.ErrMalformed)
	}
	switch data[0] {
	case tagSWIM:
		return gossip.MessageCodec.DecodeMessage(data[1:])
	case tagStore:
		return store.MessageCodec.DecodeMessage(data[1:])
	case tagReplica:
		if c.replica != nil {
			return c.replica.DecodeMessage(data[1:])
		}
	}
	return nil, fmt.Errorf("%w: node: peer message with unknown tag %d (a member running another protocol or version?)", consensus.ErrMalformed, data[0])
}
