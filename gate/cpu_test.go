package gate

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	// Field 2 may hold spaces and parentheses: fields count from the last ')'.
	line := "1234 (ovs-vswitchd (x) y) R 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 5 0 98765 1000 200 18446744073709551615\n"
	used, start, err := parseStat(line)
	require.NoError(t, err)
	assert.Equal(t, 287*clockTick, used)
	assert.Equal(t, uint64(98765), start)

	for _, bad := range []string{"", "1234 no parenthesis", "1 (x) R 1 2 3", "1 (x) R 1 1 1 0 -1 0 0 0 0 0 abc 0 0 0 20 0 1 0 5 1 1"} {
		_, _, err := parseStat(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestMainThreadCPUOfThisProcess(t *testing.T) {
	used0, start0, err := mainThreadCPU(os.Getpid())
	require.NoError(t, err)
	assert.NotZero(t, start0)
	// Burn CPU on the main thread's behalf is not possible from a test
	// goroutine; the reading must at least never go backwards or change
	// the start time.
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	used1, start1, err := mainThreadCPU(os.Getpid())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, used1, used0)
	assert.Equal(t, start0, start1)

	_, _, err = mainThreadCPU(1 << 30)
	assert.Error(t, err, "no such process")
}
