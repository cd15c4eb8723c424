package probe

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/gate"
)

var gateMetrics = []string{"ovsgate_ready", "ovsgate_bridge_ready", "ovsgate_transitions_total",
	"ovsgate_vswitchd_restarts_total", "ovsgate_ovsdb_connected"}

func expectGate(ready, brInt, brEx, transitions, restarts, connected int) string {
	return strings.NewReplacer(
		"READY", itoa(ready), "BRINT", itoa(brInt), "BREX", itoa(brEx),
		"TRANSITIONS", itoa(transitions), "RESTARTS", itoa(restarts), "CONNECTED", itoa(connected),
	).Replace(`
# HELP ovsgate_ready 1 when every gated bridge is ready, else 0.
# TYPE ovsgate_ready gauge
ovsgate_ready READY
# HELP ovsgate_bridge_ready 1 when the bridge is ready, else 0.
# TYPE ovsgate_bridge_ready gauge
ovsgate_bridge_ready{bridge="br-ex"} BREX
ovsgate_bridge_ready{bridge="br-int"} BRINT
# HELP ovsgate_transitions_total Flips between ready and not ready, after the first settled status.
# TYPE ovsgate_transitions_total counter
ovsgate_transitions_total TRANSITIONS
# HELP ovsgate_vswitchd_restarts_total New ovs-vswitchd instances that answered after the first one (also when the pid number repeats).
# TYPE ovsgate_vswitchd_restarts_total counter
ovsgate_vswitchd_restarts_total RESTARTS
# HELP ovsgate_ovsdb_connected 1 while the OVSDB monitor is established, else 0.
# TYPE ovsgate_ovsdb_connected gauge
ovsgate_ovsdb_connected CONNECTED
`)
}

func itoa(i int) string { return string(rune('0' + i)) }

// twoBridges is a status gating br-int and br-ex; br-ex is ready when
// exReady; the gate has counted restarts.
func twoBridges(ready, exReady bool, restarts uint64, connected bool) gate.Status {
	s := status(ready)
	s.VSwitchd.PID = 1 // a pid namespace of its own: the same pid on every start
	s.VSwitchd.Restarts = restarts
	s.OVSDB.Connected = connected
	s.Bridges = append(s.Bridges, gate.BridgeStatus{Name: "br-ex", Ready: exReady})
	return s
}

func TestMetricsObserve(t *testing.T) {
	type step struct {
		s                                                    gate.Status
		ready, brInt, brEx, transitions, restarts, connected int
	}
	steps := []step{
		// Counted from here (CountFrom below): the first settled status.
		{twoBridges(true, true, 0, true), 1, 1, 1, 0, 0, 1},
		{twoBridges(true, true, 0, true), 1, 1, 1, 0, 0, 1},
		{twoBridges(false, true, 0, false), 0, 0, 1, 1, 0, 0},
		{twoBridges(false, false, 0, false), 0, 0, 0, 1, 0, 0}, // vswitchd exited
		{twoBridges(false, false, 0, true), 0, 0, 0, 1, 0, 1},
		{twoBridges(false, false, 1, true), 0, 0, 0, 1, 1, 1}, // a new instance answered
		{twoBridges(true, true, 1, true), 1, 1, 1, 2, 1, 1},
		{twoBridges(true, true, 1, true), 1, 1, 1, 2, 1, 1},
		{twoBridges(false, false, 1, true), 0, 0, 0, 3, 1, 1},
		{twoBridges(false, false, 3, true), 0, 0, 0, 3, 3, 1}, // two restarts between two statuses
		{twoBridges(true, true, 3, true), 1, 1, 1, 4, 3, 1},
	}
	m := NewMetrics()
	// Before the gate has settled, flips are no transitions.
	m.Observe(twoBridges(false, false, 0, false))
	m.Observe(twoBridges(true, true, 0, true))
	m.CountFrom(steps[0].s)
	for i, st := range steps {
		m.Observe(st.s)
		require.NoError(t, testutil.GatherAndCompare(m.Registry(),
			strings.NewReader(expectGate(st.ready, st.brInt, st.brEx, st.transitions, st.restarts, st.connected)),
			gateMetrics...), "after step %d", i)
	}
}

func TestMetricsBusyAndHung(t *testing.T) {
	m := NewMetrics()
	for _, tt := range []struct {
		cause      string
		busy, hung float64
	}{
		{gate.CauseReady, 0, 0},
		{gate.CauseVSwitchdBusy, 1, 0},
		{gate.CauseVSwitchdNotAnswering, 0, 1},
		{gate.CauseVSwitchdStarting, 0, 0},
		{gate.CauseVSwitchdNotRunning, 0, 0},
	} {
		s := status(tt.cause == gate.CauseReady)
		s.Cause = tt.cause
		m.Observe(s)
		assert.Equal(t, tt.busy, testutil.ToFloat64(m.busy), tt.cause)
		assert.Equal(t, tt.hung, testutil.ToFloat64(m.hung), tt.cause)
	}
}

func TestMetricsFirstObservationNotReady(t *testing.T) {
	m := NewMetrics()
	assert.Equal(t, 0.0, testutil.ToFloat64(m.ready), "not ready before anything is known")
	m.Observe(status(false))
	m.Observe(status(true))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.transitions), "starting -> ready is no transition")
	m.CountFrom(status(true))
	m.Observe(status(false))
	m.Observe(status(true))
	assert.Equal(t, 2.0, testutil.ToFloat64(m.transitions))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.ready))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.bridgeReady.WithLabelValues("br-int")))
}

func TestMetricsAppctl(t *testing.T) {
	m := NewMetrics()
	m.ObserveAppctl("dpif/show-dp-features", 300*time.Microsecond, nil)
	m.ObserveAppctl("dpif/show-dp-features", 2*time.Millisecond, nil)
	m.ObserveAppctl("version", 5*time.Second, errors.New("timed out"))

	families, err := m.Registry().Gather()
	require.NoError(t, err)
	type series struct {
		count uint64
		sum   float64
	}
	got := map[string]series{}
	for _, f := range families {
		if f.GetName() != "ovsgate_appctl_request_duration_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["method"]+" "+labels["result"]] = series{mt.GetHistogram().GetSampleCount(), mt.GetHistogram().GetSampleSum()}
		}
	}
	require.Len(t, got, 2, "one series per method and result")
	assert.Equal(t, uint64(2), got["dpif/show-dp-features ok"].count)
	assert.InDelta(t, 0.0023, got["dpif/show-dp-features ok"].sum, 1e-9)
	assert.Equal(t, uint64(1), got["version error"].count)
	assert.InDelta(t, 5.0, got["version error"].sum, 1e-9)
}

func TestMetricsRegistry(t *testing.T) {
	m := NewMetrics()
	m.Observe(status(true))
	m.ObserveAppctl("version", time.Millisecond, nil)
	n, err := testutil.GatherAndCount(m.Registry(), "go_goroutines", "process_start_time_seconds")
	require.NoError(t, err)
	assert.Equal(t, 2, n, "Go and process collectors are registered")
	problems, err := testutil.GatherAndLint(m.Registry(), gateMetrics...)
	require.NoError(t, err)
	assert.Empty(t, problems)
	problems, err = testutil.GatherAndLint(m.Registry(), "ovsgate_appctl_request_duration_seconds")
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestMetricsHandler(t *testing.T) {
	m := NewMetrics()
	m.Observe(status(true))
	addr, logBuf := serveOn(t, m.Handler())
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4"), resp.Header.Get("Content-Type"))
	assert.Contains(t, string(body), "\novsgate_ready 1\n")
	assert.Contains(t, string(body), "\ngo_goroutines ")

	resp, err = client.Get("http://" + addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 404, resp.StatusCode)
	assert.Empty(t, logBuf.String())
}
