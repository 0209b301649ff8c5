// Package transport carries protocol messages between the nodes of a synod
// cluster over gRPC: one long-lived stream per peer, batching, bounded send
// queues with backpressure, reconnection with back-off, and peer identity
// (every stream carries the cluster ID and the sender's node ID; frames from
// unknown nodes or another cluster are rejected), and a format version: a
// peer of another synod version is refused at the handshake with an error
// saying so.
package transport

import "github.com/synod-io/synod/consensus"

// Transport moves messages between replicas. Implementations are safe for
// concurrent use.
type Transport interface {
	// Send queues messages for delivery to their To node and returns at
	// once. A message to a peer whose queue is full, or that is
	// unreachable, is dropped (consensus protocols tolerate loss); Send
	// never blocks on the network.
	Send(msgs []consensus.Message)
	// Close stops every stream and goroutine and waits for them.
	Close() error
}

// Handler receives messages addressed to this node, in the order each peer
// sent them. It is called from the transport's goroutines and must not
// block for long (hand the message to the node's loop).
type Handler func(consensus.Message)
