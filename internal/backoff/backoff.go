// Package backoff is the one retry delay of the project: doubling from a
// minimum up to a cap, with optional jitter.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff doubles a delay from Min up to Max. With Jitter, each delay is
// moved by up to ±20%, still within [Min, Max], so that many clients that
// failed together do not retry together. The zero value of the delay state
// starts at Min; Reset goes back there.
type Backoff struct {
	Min, Max time.Duration
	Jitter   bool

	cur time.Duration
}

// Next returns the delay before the next attempt and doubles the following one.
func (b *Backoff) Next() time.Duration {
	hi := max(b.Max, b.Min)
	if b.cur < b.Min {
		b.cur = b.Min
	} else {
		b.cur = min(2*b.cur, hi)
	}
	if !b.Jitter || b.cur <= 0 {
		return b.cur
	}
	jitter := time.Duration(rand.Int64N(int64(b.cur)/5 + 1))
	if rand.IntN(2) == 0 {
		return max(b.cur-jitter, b.Min)
	}
	return min(b.cur+jitter, hi)
}

// Reset starts the delays over from Min.
func (b *Backoff) Reset() { b.cur = 0 }
