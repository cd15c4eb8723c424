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

	n int // delays returned since the last Reset
}

// Next returns the delay before the next attempt and doubles the following one.
func (b *Backoff) Next() time.Duration {
	b.n++
	var jitter float64
	if b.Jitter {
		jitter = 2*rand.Float64() - 1
	}
	return Delay(b.Min, b.Max, b.n, jitter)
}

// Reset starts the delays over from Min.
func (b *Backoff) Reset() { b.n = 0 }

// Delay is the delay before retry n (1 for the first) as a pure function, for
// callers that keep their own count and draw their own jitter: lo doubled n-1
// times up to hi, then moved by jitter (from -1 to 1) times 20% and kept
// within [lo, hi].
func Delay(lo, hi time.Duration, n int, jitter float64) time.Duration {
	hi = max(hi, lo)
	d := lo
	for i := 1; i < n && d > 0 && d < hi; i++ {
		d = min(2*d, hi)
	}
	if jitter == 0 || d <= 0 {
		return d
	}
	jitter = min(max(jitter, -1), 1)
	return min(max(d+time.Duration(jitter*float64(d)/5), lo), hi)
}
