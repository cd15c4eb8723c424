package probe

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	s := status(false)
	m.Observe(s)
	assert.Equal(t, 0.0, testutil.ToFloat64(m.transitions), "the first observation is not a flip")
	assert.Equal(t, 0.0, testutil.ToFloat64(m.ready))

	s = status(true)
	m.Observe(s)
	m.Observe(s)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.transitions))

	// pid 42 -> 0 (exited) -> 43: one restart, two more flips.
	s = status(false)
	s.VSwitchd.PID = 0
	m.Observe(s)
	s = status(true)
	s.VSwitchd.PID = 43
	m.Observe(s)

	m.ObserveAppctl("dpif/show-dp-features", 300*time.Microsecond, nil)
	m.ObserveAppctl("version", 5*time.Second, errors.New("timed out"))

	require.NoError(t, testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP ovsgate_ready 1 when every gated bridge is ready, else 0.
# TYPE ovsgate_ready gauge
ovsgate_ready 1
# HELP ovsgate_bridge_ready 1 when the bridge is ready, else 0.
# TYPE ovsgate_bridge_ready gauge
ovsgate_bridge_ready{bridge="br-int"} 1
# HELP ovsgate_transitions_total Flips between ready and not ready.
# TYPE ovsgate_transitions_total counter
ovsgate_transitions_total 3
# HELP ovsgate_vswitchd_restarts_total Times a new ovs-vswitchd pid replaced the one seen before.
# TYPE ovsgate_vswitchd_restarts_total counter
ovsgate_vswitchd_restarts_total 1
# HELP ovsgate_ovsdb_connected 1 while the OVSDB monitor is established, else 0.
# TYPE ovsgate_ovsdb_connected gauge
ovsgate_ovsdb_connected 1
`), "ovsgate_ready", "ovsgate_bridge_ready", "ovsgate_transitions_total", "ovsgate_vswitchd_restarts_total", "ovsgate_ovsdb_connected"))

	assert.Equal(t, 2, testutil.CollectAndCount(m.appctlDurations))
	n, err := testutil.GatherAndCount(m.Registry(), "go_goroutines", "process_resident_memory_bytes")
	require.NoError(t, err)
	assert.Equal(t, 2, n, "Go and process collectors are registered")
}
