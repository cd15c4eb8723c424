package ovsdb

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestNextDelay(t *testing.T) {
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
				d := nextDelay(0, tt.lo, tt.hi)
				assert.GreaterOrEqual(t, d, tt.lo)
				assert.LessOrEqual(t, d, min(tt.lo+tt.lo/5, tt.hi), "the first delay starts at the minimum")
				steps := 0
				for d < tt.hi*8/10 {
					next := nextDelay(d, tt.lo, tt.hi)
					assert.GreaterOrEqual(t, next, tt.lo)
					assert.LessOrEqual(t, next, tt.hi)
					assert.GreaterOrEqual(t, next, min(d*3/2, tt.hi*8/10), "grows on consecutive failures")
					d = next
					steps++
				}
				assert.Less(t, steps, 20, "reaches the cap")
				for i := 0; i < 5; i++ {
					d = nextDelay(d, tt.lo, tt.hi)
					assert.GreaterOrEqual(t, d, tt.hi*8/10, "stays near the cap")
					assert.LessOrEqual(t, d, tt.hi, "never above the cap")
				}
			}
		})
	}
}
