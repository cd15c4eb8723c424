package fleet

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tt := range []struct {
		name string
		h    histogram
		q    float64
		want float64
	}{
		{"empty", histogram{bounds: []float64{0.005, inf}, cum: []float64{0, 0}}, 0.5, math.NaN()},
		{"within the first bucket, from 0", histogram{bounds: []float64{0.01, 0.1, inf}, cum: []float64{10, 10, 10}, count: 10}, 0.5, 0.005},
		{"within a later bucket", histogram{bounds: []float64{0.01, 0.1, inf}, cum: []float64{50, 100, 100}, count: 100}, 0.75, 0.055},
		{"on a bucket's bound", histogram{bounds: []float64{0.01, 0.1, inf}, cum: []float64{50, 100, 100}, count: 100}, 0.5, 0.01},
		{"in +Inf: the largest finite bound", histogram{bounds: []float64{0.01, 0.1, inf}, cum: []float64{0, 0, 4}, count: 4}, 0.99, 0.1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.quantile(tt.q)
			if math.IsNaN(tt.want) {
				assert.True(t, math.IsNaN(got), "got %v", got)
				return
			}
			assert.InDelta(t, tt.want, got, 1e-9)
		})
	}
}

func TestHistogramMinus(t *testing.T) {
	before := histogram{bounds: []float64{0.01, math.Inf(1)}, cum: []float64{3, 4}, count: 4}
	after := histogram{bounds: []float64{0.01, math.Inf(1)}, cum: []float64{10, 14}, count: 14}
	d := after.minus(before)
	assert.Equal(t, []float64{7, 10}, d.cum)
	assert.InDelta(t, 10, d.count, 0)
	assert.Equal(t, []float64{3, 4}, before.cum, "the earlier reading is left as it was")
}

func TestParseStatCPU(t *testing.T) {
	for _, tt := range []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		{"utime and stime", "4242 (kube-apiserver) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0", 3250 * time.Millisecond, false},
		{"a command name with spaces and parentheses", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0", 30 * time.Millisecond, false},
		{"cut short", "7 (x) R 1 7", 0, true},
		{"no command name", "garbage", 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU(tt.stat)
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestKindOf(t *testing.T) {
	for _, tt := range []struct {
		method, path string
		kubelet      bool
		want         kind
	}{
		{http.MethodPatch, "/api/v1/nodes/fleet-00001/status", false, ovsgatePatch},
		{http.MethodGet, "/api/v1/nodes/fleet-00001", false, ovsgateGet},
		{http.MethodPatch, "/api/v1/nodes/fleet-00001/status", true, kubeletStatus},
		{http.MethodGet, "/api/v1/nodes/fleet-00001", true, kubeletGet},
		{http.MethodPut, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/fleet-00001", true, kubeletLease},
		{http.MethodGet, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/fleet-00001", true, otherRequest},
		{http.MethodPatch, "/api/v1/nodes/fleet-00001", false, otherRequest},
	} {
		assert.Equal(t, tt.want, kindOf(tt.method, tt.path, tt.kubelet), "%s %s (kubelet %v)", tt.method, tt.path, tt.kubelet)
	}
}

// A heartbeat differs from the write before it only in its times.
func TestConditionOf(t *testing.T) {
	patch := func(status, reason, message, heartbeat string) []byte {
		return []byte(`{"status":{"conditions":[{"type":"ovsgate.io/OVSReady","status":"` + status + `","reason":"` + reason +
			`","message":"` + message + `","lastHeartbeatTime":"` + heartbeat + `","lastTransitionTime":"2026-12-01T00:00:00Z"}]}}`)
	}
	first := conditionOf(patch("True", "OVSReady", "OVS is ready", "2026-12-01T00:00:00Z"))
	assert.Equal(t, first, conditionOf(patch("True", "OVSReady", "OVS is ready", "2026-12-01T00:05:00Z")))
	assert.NotEqual(t, first, conditionOf(patch("False", "VSwitchdNotRunning", "ovs-vswitchd (pid 7) exited", "2026-12-01T00:05:00Z")))
	assert.NotEqual(t, conditionOf(patch("False", "VSwitchdNotRunning", "ovs-vswitchd (pid 7) exited", "x")),
		conditionOf(patch("False", "VSwitchdNotRunning", "ovs-vswitchd (pid 8) exited", "x")), "a new message is a change")
	assert.Equal(t, "unreadable patch", conditionOf([]byte("{")))
}

func TestCompressedHeartbeat(t *testing.T) {
	for n, want := range map[int]time.Duration{100: 5 * time.Second, 350: 5 * time.Second, 351: 10 * time.Second, 1000: 15 * time.Second, 5000: 100 * time.Second} {
		assert.Equal(t, want, compressedHeartbeat(n), "%d nodes", n)
		assert.Zero(t, realHeartbeat%want, "%d nodes: %v does not divide the real heartbeat", n, want)
	}
}

func TestSharedNote(t *testing.T) {
	assert.Contains(t, sharedNote("0.21 0.76 0.93"), "nothing else ran")
	assert.Contains(t, sharedNote("12.56 9.78 7.70"), "other work shared the machine")
	assert.Contains(t, sharedNote("1.00 0.20 0.10"), "other work shared the machine")
	assert.Empty(t, sharedNote(""))
}

// The recorder tells changes from heartbeats by what the API server took
// last: a refused change stays a change when it is sent again.
func TestRecordingTransport(t *testing.T) {
	refuse := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"False"`) && refuse {
			refuse = false
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	rec := &recorder{}
	hc := &http.Client{Transport: rec.wrap(3, false)(http.DefaultTransport)}
	patch := func(status string) {
		t.Helper()
		body := `{"status":{"conditions":[{"type":"ovsgate.io/OVSReady","status":"` + status + `","reason":"R","message":"M"}]}}`
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPatch, srv.URL+"/api/v1/nodes/n/status", strings.NewReader(body))
		require.NoError(t, err)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	for _, s := range []string{"True", "True", "False", "False", "False"} {
		patch(s)
	}
	ev := rec.between(time.Time{}, time.Now().Add(time.Hour))
	require.Len(t, ev, 5)
	var changes []bool
	for _, e := range ev {
		assert.Equal(t, int32(3), e.node)
		assert.Equal(t, ovsgatePatch, e.kind)
		changes = append(changes, e.change)
	}
	assert.Equal(t, []bool{true, false, true, true, false}, changes)
	assert.Equal(t, int64(1), rec.written.Load())
	tl := count(ev)
	assert.Equal(t, 5, tl.requests)
	assert.Equal(t, 4, tl.writes)
	assert.Equal(t, 2, tl.changes)
	assert.Equal(t, 1, tl.failures)
	assert.Len(t, tl.latencies, 4)
}

// The herd is counted from the API server's first answer, whatever it was.
func TestHerdOf(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ev := []event{
		{start: at(0), end: at(1), kind: ovsgatePatch},                  // refused: no answer
		{start: at(1500), end: at(1600), kind: ovsgatePatch, code: 200}, // ended after the first answer
		{start: at(900), end: at(1000), kind: ovsgatePatch, code: 403},  // the first answer, a refusal
		{start: at(2950), end: at(3050), kind: ovsgatePatch, code: 200},
		{start: at(11000), end: at(11010), kind: ovsgatePatch, code: 200}, // after the window
	}
	h := herdOf(ev, 10*time.Second)
	assert.Equal(t, at(1000), h.returned)
	assert.Equal(t, 3, h.requests)
	assert.Equal(t, 2, h.ok)
	assert.Equal(t, []int{2, 0, 1, 0, 0, 0, 0, 0, 0, 0}, h.perSecond)

	none := herdOf(ev[:1], 10*time.Second)
	assert.True(t, none.returned.IsZero())
	assert.Zero(t, none.requests)
}
