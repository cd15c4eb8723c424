package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestJitteredBackoff(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi time.Duration
	}{
		{"defaults", 50 * time.Millisecond, 2 * time.Second},
		{"equal bounds", time.Second, time.Second},
		{"tiny", time.Millisecond, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for trial := 0; trial < 200; trial++ {
				b := Backoff{Min: tt.lo, Max: tt.hi, Jitter: true}
				d := b.Next()
				assert.GreaterOrEqual(t, d, tt.lo)
				assert.LessOrEqual(t, d, min(tt.lo+tt.lo/5, tt.hi), "the first delay starts at the minimum")
				steps := 0
				for d < tt.hi*8/10 {
					next := b.Next()
					assert.GreaterOrEqual(t, next, tt.lo)
					assert.LessOrEqual(t, next, tt.hi)
					// Doubling under ±20% jitter: at least (2·0.8)/(1.2) = 4/3 times the last.
					assert.GreaterOrEqual(t, next, min(d*5/4, tt.hi*8/10), "grows on consecutive failures")
					d = next
					steps++
				}
				assert.Less(t, steps, 20, "reaches the cap")
				for i := 0; i < 5; i++ {
					d = b.Next()
					assert.GreaterOrEqual(t, d, tt.hi*8/10, "stays near the cap")
					assert.LessOrEqual(t, d, tt.hi, "never above the cap")
				}
				b.Reset()
				assert.LessOrEqual(t, b.Next(), min(tt.lo+tt.lo/5, tt.hi), "Reset starts over")
			}
		})
	}
}

func TestPlainBackoffDoubles(t *testing.T) {
	b := Backoff{Min: 5 * time.Millisecond, Max: 40 * time.Millisecond}
	var got []time.Duration
	for i := 0; i < 6; i++ {
		got = append(got, b.Next())
	}
	ms := time.Millisecond
	assert.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 40 * ms, 40 * ms}, got)
	b.Reset()
	assert.Equal(t, 5*ms, b.Next())
}

func TestDelay(t *testing.T) {
	s := time.Second
	tests := []struct {
		name   string
		n      int
		jitter float64
		want   time.Duration
	}{
		{"first", 1, 0, s},
		{"second doubles", 2, 0, 2 * s},
		{"fourth", 4, 0, 8 * s},
		{"fourth, least jitter", 4, -1, 6400 * time.Millisecond},
		{"fourth, most jitter", 4, 1, 9600 * time.Millisecond},
		{"first, jitter never below the minimum", 1, -1, s},
		{"first, most jitter", 1, 1, 1200 * time.Millisecond},
		{"capped", 7, 0, time.Minute},
		{"capped, jitter never above the cap", 7, 1, time.Minute},
		{"capped, least jitter", 7, -1, 48 * s},
		{"far beyond the cap", 1000, 0, time.Minute},
		{"jitter out of range is clamped", 4, 5, 9600 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Delay(s, time.Minute, tt.n, tt.jitter))
		})
	}
	assert.Equal(t, time.Duration(0), Delay(0, time.Minute, 5, 1), "a zero minimum stays zero")
	assert.Equal(t, s, Delay(s, 0, 3, 0), "a cap below the minimum is the minimum")
}
