package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff hands out the delays of one retry loop. It is not safe for
// concurrent use: each loop owns one.
type Backoff struct {
	initial, ceiling time.Duration
	base             time.Duration
}

// New returns a backoff whose first delay is drawn around initial and
// whose base doubles up to ceiling. Callers apply their defaults first: a
// non-positive initial gives delays of 0.
func New(initial, ceiling time.Duration) *Backoff {
	return &Backoff{initial: initial, ceiling: ceiling, base: initial}
}

// Next returns the delay before the next attempt, uniform in [b/2, 3b/2)
// for the current base b, and doubles the base (up to the ceiling) for
// the one after.
func (b *Backoff) Next() time.Duration {
	if b.base <= 0 {
		return 0
	}
	d := b.base/2 + time.Duration(rand.Int64N(int64(b.base)))
	b.base = min(b.base*2, b.ceiling)
	return d
}

// Reset makes the next delay be drawn around the initial delay again:
// for a retry that has a reason to expect success now, whose wait should
// not be one grown over a long outage.
func (b *Backoff) Reset() { b.base = b.initial }
