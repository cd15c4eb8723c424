package probe

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	internaltestutil "github.com/ovsgate/ovsgate/internal/testutil"
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

// twoBridges is a settled state gating br-int and br-ex; br-ex is ready
// when exReady; the gate has counted restarts.
func twoBridges(ready, exReady bool, restarts uint64, connected bool) gate.State {
	s := gate.State{Status: status(ready), Settled: true, Restarts: restarts}
	s.VSwitchd.PID = 1 // a pid namespace of its own: the same pid on every start
	s.OVSDB.Connected = connected
	s.Bridges = append(s.Bridges, gate.BridgeStatus{Name: "br-ex", Ready: exReady})
	return s
}

// unsettled is a state from before the gate settled.
func unsettled(s gate.State) gate.State {
	s.Settled = false
	return s
}

func TestMetricsObserve(t *testing.T) {
	type step struct {
		s                                                    gate.State
		ready, brInt, brEx, transitions, restarts, connected int
	}
	steps := []step{
		// Counted from here: the first settled state.
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
	m.Observe(unsettled(twoBridges(false, false, 0, false)))
	m.Observe(unsettled(twoBridges(true, true, 0, true)))
	m.Observe(unsettled(twoBridges(false, false, 0, true)))
	for i, st := range steps {
		m.Observe(st.s)
		require.NoError(t, testutil.GatherAndCompare(m.Registry(),
			strings.NewReader(expectGate(st.ready, st.brInt, st.brEx, st.transitions, st.restarts, st.connected)),
			gateMetrics...), "after step %d", i)
	}
}

// The busy and hung gauges read what ovs-vswitchd does, not the top cause:
// a hung ovs-vswitchd reads hung while OVSDB is down too.
func TestMetricsBusyAndHung(t *testing.T) {
	m := NewMetrics()
	ovsdbDown := func(s gate.State) gate.State {
		s.Ready, s.OVSDB.Connected, s.Cause = false, false, gate.CauseOVSDBUnreachable
		return s
	}
	ready := gate.State{Status: status(true), Cause: gate.CauseReady, Settled: true}
	for _, tt := range []struct {
		name       string
		s          gate.State
		busy, hung float64
	}{
		{"ready", ready, 0, 0},
		{"busy", gate.State{Status: status(false), Cause: gate.CauseVSwitchdBusy, Busy: true}, 1, 0},
		{"hung", gate.State{Status: status(false), Cause: gate.CauseVSwitchdNotAnswering, Hung: true}, 0, 1},
		{"hung, OVSDB down", ovsdbDown(gate.State{Status: status(false), Hung: true}), 0, 1},
		{"busy, OVSDB down", ovsdbDown(gate.State{Status: status(false), Busy: true}), 1, 0},
		{"OVSDB down", ovsdbDown(ready), 0, 0},
		{"not running", gate.State{Status: status(false), Cause: gate.CauseVSwitchdNotRunning}, 0, 0},
	} {
		m.Observe(tt.s)
		assert.Equal(t, tt.busy, testutil.ToFloat64(m.busy), tt.name)
		assert.Equal(t, tt.hung, testutil.ToFloat64(m.hung), tt.name)
	}
}

func TestMetricsFirstObservationNotReady(t *testing.T) {
	m := NewMetrics()
	assert.Equal(t, 0.0, testutil.ToFloat64(m.ready), "not ready before anything is known")
	m.Observe(gate.State{Status: status(false)})
	m.Observe(gate.State{Status: status(true)})
	assert.Equal(t, 0.0, testutil.ToFloat64(m.transitions), "starting -> ready is no transition")
	m.Observe(gate.State{Status: status(true), Settled: true})
	assert.Equal(t, 0.0, testutil.ToFloat64(m.transitions), "nor is settling ready")
	m.Observe(gate.State{Status: status(false), Settled: true})
	m.Observe(gate.State{Status: status(true), Settled: true})
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
	m.Observe(gate.State{Status: status(true)})
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
	m.Observe(gate.State{Status: status(true)})
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

// The wiring, end to end: a gate on a real OVS feeds the metrics. With
// ovs-vswitchd stopped (hung) and then OVSDB down as well, the top cause is
// OVSDB's, and ovsgate_vswitchd_hung still reads 1.
func TestMetricsVSwitchdHungWhileOVSDBDown(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	g, err := gate.New(gate.Config{OVSDB: s.Endpoint(), RunDir: s.RunDir(), Bridges: []string{"br-int"},
		CallTimeout: 300 * time.Millisecond, PingInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	m := NewMetrics()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	updates := g.Subscribe()
	wg.Go(func() { _ = g.Run(ctx) })
	wg.Go(func() {
		for {
			select {
			case st := <-updates:
				m.Observe(st)
			case <-ctx.Done():
				return
			}
		}
	})
	require.True(t, internaltestutil.Poll(30*time.Second, func() bool { return testutil.ToFloat64(m.ready) == 1 }), "ready")

	s.SignalVSwitchd(syscall.SIGSTOP)
	defer s.SignalVSwitchd(syscall.SIGCONT)
	s.StopOVSDB()
	require.True(t, internaltestutil.Poll(30*time.Second, func() bool {
		return testutil.ToFloat64(m.ovsdbConnected) == 0 && testutil.ToFloat64(m.hung) == 1
	}), "hung while OVSDB is down: hung=%v ovsdb=%v", testutil.ToFloat64(m.hung), testutil.ToFloat64(m.ovsdbConnected))
	st := g.State()
	assert.Equal(t, gate.CauseOVSDBUnreachable, st.Cause, "the top cause is OVSDB's")
	assert.True(t, st.Hung)
	assert.Equal(t, 0.0, testutil.ToFloat64(m.busy))
}

func TestMetricsFlowRestoreWait(t *testing.T) {
	m := NewMetrics()
	for _, on := range []bool{true, false, true} {
		s := gate.State{Status: status(true)}
		s.VSwitchd.FlowRestoreWait = &on
		m.Observe(s)
		assert.Equal(t, boolFloat(on), testutil.ToFloat64(m.flowRestoreWait))
	}
	// Unknown (OVSDB away) keeps the last value read.
	s := gate.State{Status: status(false)}
	m.Observe(s)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.flowRestoreWait))
}
