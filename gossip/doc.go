// Package gossip is synod's group membership and failure detector: SWIM
// (Das, Gupta, Motivala, "SWIM: Scalable Weakly-consistent Infection-style
// Process Group Membership Protocol", DSN 2002) with the Lifeguard
// extensions (Dadgar, Phillips, Currey, "Lifeguard: Local Health Awareness
// for More Accurate Failure Detection", 2018). Every synod member runs it
// beside its replica (node/swim.go) for the operator's view of liveness;
// the eventually consistent store (gossip/store) replicates among the
// members it reports live.
//
// # Contract
//
// A Node is a pure, deterministic state machine like the other cores: no
// goroutines, no clock, no randomness but Config.Rand, no I/O. The host
// calls Tick once per tick, hands every received message to Step, and
// then takes Ready, sends each Outbound message to its Addr (Message.To
// names the member, or is None for a seed known only by address), reports
// the Events, and passes the Ready back to Advance before calling Ready
// again. Time is in ticks throughout; every duration in Config is a
// number of ticks. The network may lose, delay, duplicate and reorder
// messages. Step returns an error only for a malformed message or one
// meant for another node. A Node is not safe for concurrent use.
//
// A Node is not a consensus.Replica: it orders no commands and persists
// nothing (a host that wants to restart without refuting its own death
// may keep the incarnation and pass it back in Config.Incarnation). Its
// Ready carries messages and membership events; Status reports every
// member remembered with its state and incarnation, and this node's local
// health.
//
// # Members, incarnations and precedence
//
// Every member has an ID (consensus.NodeID), an opaque address, metadata
// (at most Config.MetaBytesMax bytes), an incarnation number that only
// the member itself raises, and a state: alive, suspect, dead or left.
// News about a member (an Update) replaces what a node knows when the pair
// (incarnation, rank) grows, rank ordering alive < suspect < dead = left
// (Overrides). Spelled out:
//
//   - alive at a higher incarnation overrides any state of a lower one:
//     that is how a member refutes a suspicion, comes back from the dead,
//     or publishes new metadata;
//   - suspect overrides alive of the same incarnation, and anything of a
//     lower one;
//   - dead and left override alive and suspect of the same incarnation and
//     are final for it: a second dead or left of that incarnation changes
//     nothing;
//   - news of the same incarnation and state is not news; for a suspicion
//     from a new accuser it is a confirmation (see Lifeguard).
//
// A node that hears itself accused (suspect, dead or left) at its own
// incarnation or above refutes: it takes the accused incarnation plus one
// and gossips alive. It does the same for an alive update of its own
// incarnation that differs from what it is (an earlier life of its ID).
// An accusation of an older incarnation means its sender missed the
// refutation, so the node queues its current state again. A leaving node
// refutes nothing. News of a member not remembered adds it only if it is
// alive or suspect and carries an address; dead or left news about a
// stranger is dropped, so that reaped members stay forgotten.
//
// # Failure detection
//
// Each protocol period of T = ProbeIntervalTicks ticks a node probes one
// member. It walks a shuffled list of the members round-robin, shuffling
// again after each full pass; a member that joins is put at a random
// position among those not yet probed in the current pass. So every
// member is probed once per pass, and a crashed member is probed by every
// node within two passes. A probe is a Ping, answered by an Ack. If no
// ack arrives within ProbeTimeoutTicks, the node sends PingReq to
// IndirectProbes (k) random other members; each helper pings the target
// and relays its ack. With Lifeguard a helper whose ping goes unanswered
// for 4/5 of its probe timeout sends the requester a Nack, which tells
// the requester its own links to the helpers work. If no ack, direct or
// relayed, has arrived by the end of the period, the target becomes
// suspect. Choose the timeouts so that the indirect probe fits in the
// period: T − ProbeTimeoutTicks must cover a ping-req, the helper's 4/5
// timeout and its nack (about ProbeTimeoutTicks plus two one-way delays).
//
// A suspect member is declared dead when its suspicion timer expires (see
// below), unless news of a higher incarnation arrives first. Dead members
// are no longer probed.
//
// # Lifeguard
//
// Config.Lifeguard (on in DefaultConfig) turns on three extensions, which
// every member of a group should agree on. Off, the node runs SWIM with
// suspicion: its health stays 0, helpers send no nacks, the suspicion
// timeout is fixed at Min below, and there is no buddy system.
//
// Local Health Multiplier (LHM). A saturating counter in 0..S
// (S = HealthMax, default 8), this node's view of its own timeliness:
//
//	failed probe (no ack by the end of the period)       +1
//	probe whose ping-reqs did not all draw a nack         +1 (on top)
//	having to refute an accusation of oneself             +1
//	successful probe (an ack, direct or relayed)          −1
//
// The probe interval and the probe timeout are both multiplied by
// LHM+1, so a node that is slow to process messages probes less often
// and waits longer before it accuses anyone.
//
// Dynamic suspicion timeout. For a group of N live members (this node
// included), with T the base probe interval:
//
//	Min = α · max(1, log10 N) · T
//	Max = β · Min
//	timeout(C) = max(Min, Max − (Max − Min) · log(C+1) / log(K+1))
//
// where C counts independent confirmations: distinct accusers of the same
// suspicion beyond the first, each passed on by whoever hears it so that
// everyone's timer shortens. A suspicion starts at Max and reaches Min
// after K of them; K = min(SuspicionConfirmations, N−2) (nobody else can
// confirm in a group of two: Min at once). N, Min and Max are fixed when
// the suspicion starts. Defaults: α = 5 (SuspicionAlpha), β = 6
// (SuspicionBeta), K = 3 (SuspicionConfirmations). A suspicion raised by
// one slow node alone therefore waits β times longer than one that the
// group confirms.
//
// Buddy system. A probe of a member this node believes suspect carries
// that suspicion first, outside the piggyback queue, so the member learns
// at once and refutes in its ack.
//
// # Dissemination
//
// Every change a node applies (and its own refutations, metadata updates
// and leave) is queued for dissemination, at most one update per member:
// newer news replaces older news and restarts its count. Updates are
// piggybacked on Ping, Ack, PingReq, Nack and Gossip messages, fewest-sent
// first, within PiggybackBytesMax bytes of encoded updates per message,
// and each is sent at most λ·⌈log10(N+1)⌉ times (λ = RetransmitMult,
// default 4). News so reaches all members in O(log N) periods.
//
// Push-pull is the anti-entropy: every PushPullTicks, multiplied by
// 1+⌈log2(N/32)⌉ beyond 32 members, a node sends its whole view to one
// random live member, which answers with its own, and both merge by the
// rules above, except that a death in a merged view starts a suspicion
// (of the same incarnation) rather than a death: a view from across a
// partition that just healed names dead every member on this side it
// could not reach, and taking that at face value would end, in one step,
// this node's probing of its own side. As often as a dead member is one of the members it could
// pick, the node picks a dead member instead: if it is alive after all
// (a partition healed), it refutes its death and the views merge, which
// nothing else would bring about since dead members are not probed.
// A push-pull holds every member remembered, so it can be larger than
// one datagram; a host sends it over a stream.
//
// # Join, leave, metadata, reaping
//
// A node joins by sending push-pull to each of Config.Seeds (address,
// and ID if known); it sends them again every JoinRetryTicks until a
// seed itself has answered one (a push-pull reply from the seed's ID, or
// from its address if the ID is not known), so lost messages only delay a
// join. Knowing some live member is not enough: it may be another joiner
// that heard of this node first, and when seeds chain through earlier
// joiners, two groups that know each other only through joiners would
// never merge. A seed that answered has merged this node's push-pull, so
// the node is then part of its seed's group. Retries also stop if every
// seed is known dead or left, and start again whenever the node knows no
// live member. A seed that never answers and is not known dead (gone
// before this node heard of it) costs one push-pull per JoinRetryTicks;
// list more than one seed. Leave
// announces that the node left, at its current incarnation, and sends the
// news at once to k members; the node then keeps answering and
// disseminating, but accuses and refutes nobody, until Left reports that
// the news was sent as often as any update is; then the host stops it.
// SetMeta publishes new metadata under a higher incarnation. A dead or
// left member is forgotten ReapTicks after its death or departure, so
// state stays bounded; keep ReapTicks well above the time news takes to
// die out, since a member reaped while stale alive news of it still
// circulates would be added again.
//
// # Events
//
// Ready.Events reports, in order, each change of another member: joined
// (first heard of, alive or suspect), suspect, dead, left, alive (again,
// from suspect, dead or left) and updated (new address or metadata).
// Nothing is reported about the node itself.
//
// # Bounds
//
// Config.Validate checks every field against a named bound (TicksMax,
// MembersMaxLimit, MetaBytesMaxLimit, AddrBytesMax, ...). MembersMax
// bounds the members remembered (further joins are dropped), RelaysMax
// the indirect probes run for others, and PiggybackBytesMax the updates
// per message; it must hold an alive update with the largest address and
// metadata.
//
// # Wire
//
// MessageCodec encodes messages in a versioned binary format, with every
// count and length bounded, and rejects anything Step would reject;
// FuzzDecodeMessage checks that decoding never panics and round-trips.
// Authentication and encryption are a separate layer, gossip/wire: a
// Keyring of AES-GCM keys with rotation. It draws nonces from crypto/rand
// and is safe for concurrent use, so it is not part of this pure package.
//
// # Measured
//
// On the in-test network (1-tick latency, default configuration, 1%
// loss): a crash is first suspected about 1.5–2 periods after it happens
// at N = 10, 100 and 1000, and every member holds it dead after about 8,
// 15 and 21 periods (Min is 5, 10 and 15 periods); a metadata update
// reaches every member in about 2, 4.5 and 6.5 periods. In the
// slow-member scenario of TestSlowMemberLifeguard (α = 2 in both modes),
// 30 runs of 300 periods declare no live member dead with Lifeguard, and
// about 1,800 times without it. Removing the dynamic suspicion timeout
// alone brings the false positives back (the local health multiplier
// alone does not help there, and with a fixed timeout it even hurts: a
// slow node that probes less often also hears refutations later).
//
// # Not yet implemented (next slices)
//
//   - The eventually consistent store is gossip/store (its own package:
//     it needs only the live members from here); push-pull here
//     exchanges membership only. sim/gossipsim runs both under faults.
//   - Use from node/ and server/: the transport (datagrams for probes, a
//     stream for push-pull, gossip/wire around both) and a host Ready
//     loop.
//   - Durable state: the incarnation is not persisted by the core.
//   - Protection against resurrection after reaping (tombstones), and
//     against two live nodes claiming one ID (they refute each other
//     forever; the Logger shows it).
//   - Version negotiation: a node rejects messages of another format
//     version.
package gossip
