package ovsdb

import (
	"math/rand/v2"
	"time"
)

// nextDelay doubles cur within [lo, hi] and adds up to ±20% jitter, still
// within [lo, hi]. A zero cur starts at lo.
func nextDelay(cur, lo, hi time.Duration) time.Duration {
	if cur < lo {
		cur = lo
	} else {
		cur = min(2*cur, hi)
	}
	jitter := time.Duration(rand.Int64N(int64(cur)/5 + 1))
	if rand.IntN(2) == 0 {
		return max(cur-jitter, lo)
	}
	return min(cur+jitter, hi)
}
