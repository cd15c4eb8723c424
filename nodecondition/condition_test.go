package nodecondition

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ovsgate/ovsgate/gate"
)

func TestDesiredFor(t *testing.T) {
	long := strings.Repeat("bridge br-int: waiting for datapath ID; ", 20)
	tests := []struct {
		name string
		in   gate.Status
		want desired
	}{
		{"ready", gate.Status{Ready: true, Cause: gate.CauseReady},
			desired{statusTrue, "OVSReady", MessageReady}},
		{"ready without a cause", gate.Status{Ready: true},
			desired{statusTrue, "OVSReady", MessageReady}},
		{"ready with a stray reason", gate.Status{Ready: true, Cause: gate.CauseBridgeNotReady, Reason: "stale"},
			desired{statusTrue, "OVSReady", MessageReady}},
		{"not ready", gate.Status{Cause: gate.CauseVSwitchdNotRunning, Reason: "ovs-vswitchd is not running"},
			desired{statusFalse, "VSwitchdNotRunning", "ovs-vswitchd is not running"}},
		{"a cause added later", gate.Status{Cause: "FlowRestoreWait", Reason: "flow-restore-wait is true"},
			desired{statusFalse, "FlowRestoreWait", "flow-restore-wait is true"}},
		{"no cause", gate.Status{Reason: "something"},
			desired{statusFalse, ReasonNotReady, "something"}},
		{"ready cause while not ready", gate.Status{Cause: gate.CauseReady, Reason: "x"},
			desired{statusFalse, ReasonNotReady, "x"}},
		{"cause not a word", gate.Status{Cause: "Bridge not ready", Reason: "x"},
			desired{statusFalse, ReasonNotReady, "x"}},
		{"cause starts with a digit", gate.Status{Cause: "1Bridge", Reason: "x"},
			desired{statusFalse, ReasonNotReady, "x"}},
		{"cause too long", gate.Status{Cause: strings.Repeat("A", maxReasonBytes+1), Reason: "x"},
			desired{statusFalse, ReasonNotReady, "x"}},
		{"no reason", gate.Status{Cause: gate.CauseStarting, Reason: "  "},
			desired{statusFalse, "Starting", "OVS is not ready"}},
		{"long reason", gate.Status{Cause: gate.CauseBridgeNotReady, Reason: long},
			desired{statusFalse, "BridgeNotReady", long[:MaxMessageBytes-3] + "..."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, desiredFor(tt.in))
		})
	}
}

func TestBoundMessage(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"short", "abc", "abc"},
		{"exactly the bound", "abcdefghij", "abcdefghij"},
		{"one over", "abcdefghijk", "abcdefg..."},
		// "é" is 2 bytes at 6-7: a cut at 7 would split it.
		{"multibyte at the cut", "abcdefé-more", "abcdef..."},
		// "€" is 3 bytes at 5-7.
		{"three-byte rune at the cut", "abcde€fghij", "abcde..."},
		{"invalid UTF-8", "ab\xffcd", "ab\uFFFDcd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := boundMessage(tt.in, 10)
			assert.Equal(t, tt.want, got)
			assert.LessOrEqual(t, len(got), 10)
			assert.True(t, utf8.ValidString(got))
		})
	}
}

func TestConditionTransition(t *testing.T) {
	earlier := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	notReady := desired{statusFalse, "BridgeNotReady", "waiting"}
	ready := desired{statusTrue, "OVSReady", MessageReady}
	tests := []struct {
		name string
		st   nodeState
		d    desired
		want time.Time
	}{
		{"no condition yet", nodeState{known: true}, ready, now},
		{"same status, other reason", nodeState{known: true, present: true, desired: desired{statusFalse, "Starting", "x"}, transition: earlier}, notReady, earlier},
		{"same everything", nodeState{known: true, present: true, desired: ready, transition: earlier}, ready, earlier},
		{"status changes", nodeState{known: true, present: true, desired: notReady, transition: earlier}, ready, now},
		{"unknown status on the node", nodeState{known: true, present: true, desired: desired{status: "Unknown"}, transition: earlier}, notReady, now},
		{"no transition time on the node", nodeState{known: true, present: true, desired: notReady}, notReady, now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.st.condition("ovsgate.io/OVSReady", tt.d, now)
			assert.Equal(t, nodeCondition{
				Type: "ovsgate.io/OVSReady", Status: tt.d.status, Reason: tt.d.reason, Message: tt.d.message,
				LastHeartbeatTime: now, LastTransitionTime: tt.want,
			}, c)
		})
	}
}

func TestStateOfAndDiffers(t *testing.T) {
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	conds := []nodeCondition{
		{Type: "Ready", Status: statusTrue},
		{Type: "ovsgate.io/OVSReady", Status: statusFalse, Reason: "Starting", Message: "m", LastTransitionTime: ts},
	}
	st := stateOf(conds, "ovsgate.io/OVSReady")
	assert.Equal(t, nodeState{known: true, present: true, desired: desired{statusFalse, "Starting", "m"}, transition: ts}, st)
	assert.False(t, st.differs(desired{statusFalse, "Starting", "m"}))
	assert.True(t, st.differs(desired{statusFalse, "Starting", "other message"}))
	assert.True(t, st.differs(desired{statusFalse, "BridgeNotReady", "m"}))

	absent := stateOf(conds, "example.com/Other")
	assert.Equal(t, nodeState{known: true}, absent)
	assert.True(t, absent.differs(desired{statusFalse, "Starting", "m"}))
	assert.Equal(t, nodeState{known: true}, stateOf(nil, "ovsgate.io/OVSReady"), "a Node without conditions")
	assert.True(t, nodeState{}.differs(desired{}), "an unread Node always differs")
}

func TestPatchBody(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// The API server keeps whole seconds in UTC: a time with a fraction, in
	// another zone, is sent as the server would store it.
	hb := ts.Add(time.Hour + 600*time.Millisecond).In(time.FixedZone("CET", 3600))
	b, err := patchBody(nodeCondition{
		Type: "ovsgate.io/OVSReady", Status: statusFalse, Reason: "Starting", Message: `say "hi"`,
		LastHeartbeatTime: hb, LastTransitionTime: ts,
	})
	require.NoError(t, err)
	assert.JSONEq(t, `{"status":{"conditions":[{
		"type":"ovsgate.io/OVSReady","status":"False","reason":"Starting","message":"say \"hi\"",
		"lastHeartbeatTime":"2026-01-02T04:04:05Z","lastTransitionTime":"2026-01-02T03:04:05Z"}]}}`, string(b))
}

func TestNewRejectsBadConfig(t *testing.T) {
	kube := testConfig()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no node", Config{Type: "ovsgate.io/OVSReady"}, "node name is required"},
		{"node with upper case", Config{Node: "Node-1", Type: "ovsgate.io/OVSReady"}, `invalid node name "Node-1": a lowercase RFC 1123 subdomain`},
		{"node with a slash", Config{Node: "a/b", Type: "ovsgate.io/OVSReady"}, `invalid node name "a/b"`},
		{"no type", Config{Node: "n"}, "node condition type is required"},
		{"type with a space", Config{Node: "n", Type: "ovsgate.io/OVS Ready"}, `invalid node condition type "ovsgate.io/OVS Ready": name part must consist of alphanumeric characters`},
		{"type with two slashes", Config{Node: "n", Type: "a/b/c"}, `invalid node condition type "a/b/c": `},
		{"type with a bad prefix", Config{Node: "n", Type: "OVSGate.io/OVSReady"}, `invalid node condition type "OVSGate.io/OVSReady": prefix part a lowercase RFC 1123 subdomain`},
		{"kubelet's type", Config{Node: "n", Type: "Ready"}, `invalid node condition type "Ready": owned by Kubernetes; use a type of your own such as ovsgate.io/OVSReady`},
		// serve's --node-condition-heartbeat refuses the same values with the same words.
		{"no heartbeat", Config{Node: "n", Type: "ovsgate.io/OVSReady"}, "invalid node condition heartbeat 0s: must be positive"},
		{"negative heartbeat", Config{Node: "n", Type: "ovsgate.io/OVSReady", Heartbeat: -time.Second}, "invalid node condition heartbeat -1s: must be positive"},
		{"negative merge window", Config{Node: "n", Type: "ovsgate.io/OVSReady", Heartbeat: time.Minute, MergeWindow: -time.Second},
			"invalid node condition merge window -1s: must not be negative"},
		{"retry bounds swapped", Config{Node: "n", Type: "ovsgate.io/OVSReady", Heartbeat: time.Minute, RetryMin: time.Minute, RetryMax: time.Second},
			"maximum 1s is below minimum 1m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := New(kube, tt.cfg)
			require.Error(t, err)
			assert.Nil(t, w)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n", "one line for a usage error")
		})
	}
	_, err := New(nil, Config{Node: "n", Type: "ovsgate.io/OVSReady"})
	assert.EqualError(t, err, "node condition: no Kubernetes client configuration")
	_, err = New(&rest.Config{Host: "https://[::1"}, Config{Node: "n", Type: "ovsgate.io/OVSReady", Heartbeat: time.Minute})
	assert.ErrorContains(t, err, "node condition: ")
}

func TestNewDefaults(t *testing.T) {
	w, err := New(testConfig(), Config{Node: "node-1.example.com", Type: "ovsgate.io/OVSReady", Heartbeat: DefaultHeartbeat})
	require.NoError(t, err)
	assert.Equal(t, Config{
		Node: "node-1.example.com", Type: "ovsgate.io/OVSReady",
		Heartbeat: 5 * time.Minute, MergeWindow: time.Second,
		RetryMin: time.Second, RetryMax: time.Minute, RequestTimeout: 10 * time.Second,
		Clock: clock.RealClock{},
	}, w.cfg)

	fake := clocktesting.NewFakeClock(time.Unix(0, 0))
	w, err = New(testConfig(), Config{Node: "n", Type: "ovsgate.io/OVSReady", Heartbeat: time.Second, Clock: fake})
	require.NoError(t, err)
	assert.Same(t, fake, w.cfg.Clock, "a clock of the caller's")

	w, err = New(testConfig(), Config{Node: "n", Type: "NetworkPluginReady", Heartbeat: time.Minute})
	require.NoError(t, err, "a type without a prefix is a qualified name too")
	assert.Equal(t, time.Minute, w.cfg.Heartbeat)
}

func TestMetricsBeforeAnyWrite(t *testing.T) {
	w, err := New(testConfig(), Config{Node: "n", Type: "ovsgate.io/OVSReady", Heartbeat: DefaultHeartbeat})
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, errors.Join(registerAll(reg, w.Collectors())...))
	var want strings.Builder
	want.WriteString(`# HELP ovsgate_node_condition_last_write_success 1 when the last attempt to write the node condition succeeded, else 0 (also before the first attempt).
# TYPE ovsgate_node_condition_last_write_success gauge
ovsgate_node_condition_last_write_success 0
# HELP ovsgate_node_condition_writes_total Attempts to write the node condition, by result (success, unauthorized, forbidden, not_found, conflict, throttled, timeout, server_error, unreachable, error).
# TYPE ovsgate_node_condition_writes_total counter
`)
	for _, r := range []string{"conflict", "error", "forbidden", "not_found", "server_error", "success", "throttled", "timeout", "unauthorized", "unreachable"} {
		fmt.Fprintf(&want, "ovsgate_node_condition_writes_total{result=%q} 0\n", r)
	}
	assert.NoError(t, promtestutil.GatherAndCompare(reg, strings.NewReader(want.String())))

	w.metrics.observe(ResultForbidden)
	assert.Equal(t, 1.0, promtestutil.ToFloat64(w.metrics.writes.WithLabelValues(ResultForbidden)))
	assert.Equal(t, 0.0, promtestutil.ToFloat64(w.metrics.lastSuccess))
	w.metrics.observe(ResultSuccess)
	assert.Equal(t, 1.0, promtestutil.ToFloat64(w.metrics.lastSuccess))
}

func registerAll(reg prometheus.Registerer, cs []prometheus.Collector) []error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, reg.Register(c))
	}
	return errs
}

// testConfig is a client configuration that these tests never let send a
// request.
func testConfig() *rest.Config {
	return &rest.Config{Host: "https://127.0.0.1:1"}
}
