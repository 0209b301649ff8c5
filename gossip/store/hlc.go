package store

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Timestamp is a reading of a hybrid logical clock (Kulkarni, Demirbas,
// Madappa, Avva, Leone, "Logical Physical Clocks", OPODIS 2014): WallMs is
// l, the largest physical time in milliseconds the clock has heard of, and
// Logical is c, which orders events that share l. Timestamps compare by
// (WallMs, Logical). The zero Timestamp is below every timestamp a clock
// issues.
type Timestamp struct {
	WallMs  uint64
	Logical uint32
}

// Compare returns -1, 0 or +1 as t is before, equal to or after u.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.WallMs < u.WallMs:
		return -1
	case t.WallMs > u.WallMs:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	}
	return 0
}

// Less reports whether t is before u.
func (t Timestamp) Less(u Timestamp) bool { return t.Compare(u) < 0 }

// IsZero reports whether t is the zero Timestamp.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// String formats t as "wall.logical".
func (t Timestamp) String() string {
	return strconv.FormatUint(t.WallMs, 10) + "." + strconv.FormatUint(uint64(t.Logical), 10)
}

// ErrClockDrift is matched (with errors.Is) by the *DriftError a Clock
// returns for a timestamp too far ahead of the local physical clock.
var ErrClockDrift = errors.New("store: clock drift")

// ErrLogicalOverflow is returned when a clock's logical counter would wrap:
// 2^32 events within one millisecond of physical time that does not
// advance. The clock is unchanged; it recovers when physical time moves.
var ErrLogicalOverflow = errors.New("store: hybrid logical clock counter overflow (physical time is not advancing)")

// DriftError reports a remote timestamp further ahead of the local
// physical clock than the configured bound. Either the sender's physical
// clock runs ahead, or this node's runs behind: check both with NTP.
type DriftError struct {
	Remote     Timestamp
	LocalMs    uint64
	DriftMaxMs uint64
}

func (e *DriftError) Error() string {
	return fmt.Sprintf("store: clock drift: a remote timestamp %v is %d ms ahead of the local physical clock (%d ms); "+
		"the bound is %d ms (ClockDriftMaxMs): synchronise the clocks (NTP), or the remote writes wait until this clock catches up",
		e.Remote, e.Remote.WallMs-e.LocalMs, e.LocalMs, e.DriftMaxMs)
}

// Is makes errors.Is(err, ErrClockDrift) true.
func (e *DriftError) Is(target error) bool { return target == ErrClockDrift }

// Clock is a hybrid logical clock driven by a physical clock the host
// reads: every method takes the current physical time in milliseconds,
// which may stand still or even go backwards (the clock then runs on its
// logical counter). Every timestamp it returns is greater than every
// timestamp it returned or received before, and its WallMs never exceeds
// the largest physical reading seen by any node by more than the drift
// bound. A Clock is not safe for concurrent use.
type Clock struct {
	// last is the latest timestamp issued or received. Invariant: it
	// never decreases.
	last       Timestamp
	driftMaxMs uint64
}

// NewClock returns a clock that refuses remote timestamps more than
// driftMaxMs ahead of the local physical clock.
func NewClock(driftMaxMs uint64) *Clock { return &Clock{driftMaxMs: driftMaxMs} }

// Last is the latest timestamp issued or received (zero for a new clock).
func (c *Clock) Last() Timestamp { return c.last }

// Now returns the timestamp of a local or send event at physical time
// nowMs (the send rule): l = max(l, pt); c = c+1 if l did not change, else
// 0.
func (c *Clock) Now(nowMs uint64) (Timestamp, error) {
	if nowMs > c.last.WallMs {
		c.last = Timestamp{WallMs: nowMs}
		return c.last, nil
	}
	if c.last.Logical == math.MaxUint32 {
		return Timestamp{}, ErrLogicalOverflow
	}
	c.last.Logical++
	return c.last, nil
}

// Update returns the timestamp of the event of receiving m at physical
// time nowMs (the receive rule): l = max(l, l_m, pt), and c is one more
// than the largest counter among those whose l equals the new l (or 0 if
// only pt does). It refuses, with a *DriftError and the clock unchanged,
// a timestamp more than the drift bound ahead of nowMs.
func (c *Clock) Update(m Timestamp, nowMs uint64) (Timestamp, error) {
	if err := c.Check(m, nowMs); err != nil {
		return Timestamp{}, err
	}
	l := max(c.last.WallMs, m.WallMs, nowMs)
	var logical uint64 // one more than the largest counter at l, if any
	switch {
	case l == c.last.WallMs && l == m.WallMs:
		logical = uint64(max(c.last.Logical, m.Logical)) + 1
	case l == c.last.WallMs:
		logical = uint64(c.last.Logical) + 1
	case l == m.WallMs:
		logical = uint64(m.Logical) + 1
	}
	if logical > math.MaxUint32 {
		return Timestamp{}, ErrLogicalOverflow
	}
	c.last = Timestamp{WallMs: l, Logical: uint32(logical)}
	return c.last, nil
}

// Check reports, as a *DriftError, whether m is more than the drift bound
// ahead of physical time nowMs. It does not change the clock.
func (c *Clock) Check(m Timestamp, nowMs uint64) error {
	if m.WallMs > nowMs && m.WallMs-nowMs > c.driftMaxMs {
		return &DriftError{Remote: m, LocalMs: nowMs, DriftMaxMs: c.driftMaxMs}
	}
	return nil
}

// Witness raises the clock to at least ts without a drift check or an
// event of its own: for rebuilding a clock from durable records, whose
// timestamps it issued or accepted before.
func (c *Clock) Witness(ts Timestamp) {
	if c.last.Less(ts) {
		c.last = ts
	}
}
