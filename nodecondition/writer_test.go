package nodecondition_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/kubetest"
	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/nodecondition"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	condType = "ovsgate.io/OVSReady"
	// role is what the manifests grant ovsgate, and no more.
	role = "ovsgate-node-condition"

	// Log messages the tests count.
	failureLine  = `"Cannot write node condition, retrying"`
	recoveryLine = `"Node condition written again"`
)

var (
	ready    = gate.Status{Ready: true, Cause: gate.CauseReady}
	notReady = gate.Status{Cause: gate.CauseVSwitchdNotRunning, Reason: "ovs-vswitchd is not running"}
)

// fast are timings that keep the tests short; each test overrides what it tests.
func fast(node string) nodecondition.Config {
	return nodecondition.Config{
		Node:           node,
		Type:           condType,
		Heartbeat:      time.Hour,
		MergeWindow:    20 * time.Millisecond,
		RetryMin:       20 * time.Millisecond,
		RetryMax:       200 * time.Millisecond,
		RequestTimeout: 5 * time.Second,
	}
}

// TestWriter runs the scenarios that leave kube-apiserver running against
// one of them, each on a Node of its own and in any order.
func TestWriter(t *testing.T) {
	c, admin := startCluster(t)
	t.Run("conditions", func(t *testing.T) { testConditions(t, c, admin) })
	t.Run("heartbeat", func(t *testing.T) { testHeartbeat(t, c, admin) })
	t.Run("flaps", func(t *testing.T) { testFlaps(t, c, admin) })
	t.Run("forbidden", func(t *testing.T) { testForbidden(t, c, admin) })
	t.Run("hung API server", func(t *testing.T) { testHung(t, c, admin) })
	t.Run("Update while a request hangs", func(t *testing.T) { testUpdateNeverWaits(t, c, admin) })
	t.Run("node deleted", func(t *testing.T) { testNodeDeleted(t, c, admin) })
	t.Run("shutdown", func(t *testing.T) { testShutdown(t, c, admin) })
}

// TestWriterAPIServerRestart has a kube-apiserver of its own, which it stops
// and starts again.
func TestWriterAPIServerRestart(t *testing.T) {
	c, admin := startCluster(t)
	testAPIServerRestart(t, c, admin)
}

// startCluster starts a kube-apiserver whose OVSGateUser has what the
// manifests grant ovsgate, and no more.
func startCluster(t *testing.T) (*kubetest.Cluster, kubernetes.Interface) {
	t.Helper()
	c := kubetest.Start(t)
	admin := c.AdminClient()
	_, err := admin.RbacV1().ClusterRoles().Create(t.Context(), &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: role},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	bind(t, c, admin, kubetest.OVSGateUser)
	return c, admin
}

// testConditions: status, reason, message and lastTransitionTime, written
// with nothing but GET of the Node and PATCH of its status, beside
// conditions that others own.
func testConditions(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	const node = "conditions"
	// As a previous run of ovsgate left it an hour ago, beside the
	// kubelet's condition and another component's.
	hourAgo := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	others := []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status",
			LastHeartbeatTime: hourAgo, LastTransitionTime: hourAgo},
		{Type: "example.com/Other", Status: corev1.ConditionFalse, Reason: "Other", Message: "someone else's",
			LastHeartbeatTime: hourAgo, LastTransitionTime: hourAgo},
	}
	createNode(t, admin, node, append(slices.Clone(others), corev1.NodeCondition{
		Type: condType, Status: corev1.ConditionFalse, Reason: gate.CauseStarting, Message: "starting",
		LastHeartbeatTime: hourAgo, LastTransitionTime: hourAgo,
	}))

	kube, rec := recordingConfig(t, c, kubetest.OVSGateUser)
	w, _ := start(t, kube, fast(node))

	// A long reason with a multi-byte rune across the bound.
	long := strings.Repeat("x", 250) + "ééééé" + strings.Repeat(" and more", 20)
	w.Update(gate.Status{Cause: gate.CauseVSwitchdNotRunning, Reason: long})
	got := waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Reason == gate.CauseVSwitchdNotRunning })
	assert.Equal(t, corev1.ConditionFalse, got.Status)
	assert.Equal(t, strings.Repeat("x", 250)+"é...", got.Message)
	assert.LessOrEqual(t, len(got.Message), nodecondition.MaxMessageBytes)
	assert.True(t, utf8.ValidString(got.Message))
	assert.True(t, got.LastTransitionTime.Equal(&hourAgo), "False before, False now: the transition an hour ago stays, also across a restart of ovsgate")
	assert.True(t, got.LastHeartbeatTime.After(hourAgo.Add(time.Minute)), "the heartbeat is now")

	w.Update(gate.Status{Cause: gate.CauseBridgeNotReady, Reason: "bridge br-int: waiting for datapath ID"})
	got = waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Reason == gate.CauseBridgeNotReady })
	assert.Equal(t, corev1.ConditionFalse, got.Status)
	assert.Equal(t, "bridge br-int: waiting for datapath ID", got.Message)
	assert.True(t, got.LastTransitionTime.Equal(&hourAgo), "another reason is no transition")

	before := time.Now().Truncate(time.Second)
	w.Update(ready)
	got = waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Status == corev1.ConditionTrue })
	assert.Equal(t, gate.CauseReady, got.Reason)
	assert.Equal(t, nodecondition.MessageReady, got.Message)
	becameReady := got.LastTransitionTime
	assert.False(t, becameReady.Time.Before(before), "False to True is a transition: %v", becameReady)
	assert.False(t, becameReady.After(time.Now()))

	// The API server keeps whole seconds: let one pass, so that the next
	// transition can be told from the last.
	require.True(t, testutil.Poll(2*time.Second, func() bool { return time.Now().Truncate(time.Second).After(becameReady.Time) }))
	w.Update(gate.Status{})
	got = waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Status == corev1.ConditionFalse })
	assert.Equal(t, nodecondition.ReasonNotReady, got.Reason, "no cause")
	assert.Equal(t, "OVS is not ready", got.Message, "no reason")
	assert.True(t, got.LastTransitionTime.After(becameReady.Time), "True to False is a transition")

	n, err := admin.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	require.NoError(t, err)
	var untouched []corev1.NodeCondition
	for _, c := range n.Status.Conditions {
		if string(c.Type) != condType {
			untouched = append(untouched, c)
		}
	}
	assert.Equal(t, normalize(others), normalize(untouched), "other conditions are untouched")
	assert.Len(t, n.Status.Conditions, 3)

	// One read after the start, then one patch of the status per write.
	reqs := rec.requests()
	require.NotEmpty(t, reqs)
	assert.Equal(t, "GET /api/v1/nodes/conditions", reqs[0])
	assert.Equal(t, []string{"PATCH /api/v1/nodes/conditions/status"}, slices.Compact(slices.Clone(reqs[1:])))
	assert.Len(t, reqs, 5, "%q", reqs)
}

// testHeartbeat: an unchanged condition is rewritten once per heartbeat,
// and never while the heartbeat is fresh. The writer runs on a fake clock,
// so that the heartbeat is the default five minutes and each one takes no
// time; the schedule's tests cover the same rules on made-up times.
func testHeartbeat(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	kube := c.RESTConfig(t, kubetest.OVSGateUser)

	t.Run("due", func(t *testing.T) {
		const node = "heartbeat-due"
		createNode(t, admin, node, nil)
		clk := clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
		cfg := fast(node)
		cfg.Heartbeat, cfg.MergeWindow, cfg.Clock = nodecondition.DefaultHeartbeat, time.Second, clk
		w, reg := start(t, kube, cfg)
		w.Update(ready)
		advance(t, clk, time.Second) // the merge window
		first := waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Status == corev1.ConditionTrue })
		require.True(t, testutil.Poll(10*time.Second, func() bool { return writes(t, reg, nodecondition.ResultSuccess) == 1 }))
		for i := 1; i <= 3; i++ {
			advance(t, clk, cfg.Heartbeat-time.Second) // fresh still
			advance(t, clk, time.Second)               // due
			// An early write would have put an earlier heartbeat on the Node
			// and this one would never come.
			want := first.LastHeartbeatTime.Add(time.Duration(i) * cfg.Heartbeat)
			got := waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.LastHeartbeatTime.Time.Equal(want) })
			assert.True(t, got.LastTransitionTime.Equal(&first.LastTransitionTime), "a heartbeat is no transition")
			require.True(t, testutil.Poll(10*time.Second, func() bool { return writes(t, reg, nodecondition.ResultSuccess) == float64(1+i) }),
				"one write per heartbeat")
		}
		assert.Zero(t, failures(t, reg))
	})

	t.Run("long", func(t *testing.T) {
		const node = "heartbeat-long"
		createNode(t, admin, node, nil)
		w, reg := start(t, kube, fast(node)) // heartbeat: an hour
		w.Update(ready)
		first := waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Status == corev1.ConditionTrue })
		require.True(t, testutil.Poll(5*time.Second, func() bool { return writes(t, reg, nodecondition.ResultSuccess) == 1 }))
		// The same state again, as the gate publishes after changes that do
		// not touch the condition.
		for range 10 {
			w.Update(gate.Status{Ready: true, Cause: gate.CauseReady, Reason: "ignored while ready"})
			w.Update(ready)
		}
		holds(t, 1500*time.Millisecond, 20*time.Millisecond, func() bool { return writes(t, reg, nodecondition.ResultSuccess) == 1 },
			"nothing changed, the heartbeat is fresh")
		assert.Equal(t, first, condition(t, admin, node))
	})
}

// testFlaps: changes within the merge window make one write of the latest
// state. The writer runs on a fake clock that stands still while the gate
// flaps, so that every change falls within the window.
func testFlaps(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	const node = "flaps"
	createNode(t, admin, node, nil)
	clk := clocktesting.NewFakeClock(time.Now())
	cfg := fast(node)
	cfg.MergeWindow, cfg.Clock = time.Second, clk
	w, reg := start(t, c.RESTConfig(t, kubetest.OVSGateUser), cfg)
	w.Update(ready)
	advance(t, clk, time.Second)
	waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Status == corev1.ConditionTrue })
	require.True(t, testutil.Poll(10*time.Second, func() bool { return writes(t, reg, nodecondition.ResultSuccess) == 1 }))

	causes := []string{gate.CauseVSwitchdNotRunning, gate.CauseVSwitchdStarting, gate.CauseBridgeNotReady, gate.CauseFeaturesMissing}
	for i := range 20 {
		s := ready
		if i%2 == 0 {
			s = gate.Status{Cause: causes[i/2%len(causes)], Reason: "flap"}
		}
		if i == 19 {
			s = gate.Status{Cause: gate.CauseVSwitchdBusy, Reason: "ovs-vswitchd is busy"}
		}
		w.Update(s)
	}
	// The writer may still be taking in the changes: step the clock a tenth
	// of the window at a time until it writes.
	require.True(t, testutil.Poll(20*time.Second, func() bool {
		if clk.HasWaiters() {
			clk.Step(cfg.MergeWindow / 10)
		}
		return writes(t, reg, nodecondition.ResultSuccess) >= 2
	}))
	got := waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Reason == gate.CauseVSwitchdBusy })
	assert.Equal(t, corev1.ConditionFalse, got.Status)
	assert.Equal(t, "ovs-vswitchd is busy", got.Message)
	holds(t, time.Second, 20*time.Millisecond, func() bool { return writes(t, reg, nodecondition.ResultSuccess) == 2 },
		"20 changes within the window make one write")
	assert.Equal(t, got, condition(t, admin, node), "the latest state stays")
}

// testForbidden: without RBAC the writer fails, logs it once, keeps Update
// free, and writes once the role is bound.
func testForbidden(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	const node = "forbidden"
	createNode(t, admin, node, nil)
	logs, _ := testutil.CaptureKlog(t)
	w, reg := start(t, c.RESTConfig(t, kubetest.NobodyUser), fast(node))
	w.Update(notReady)
	require.True(t, testutil.Poll(10*time.Second, func() bool { return writes(t, reg, nodecondition.ResultForbidden) >= 5 }))
	assert.Equal(t, 0.0, lastWriteSuccess(t, reg))
	updatesReturn(t, w)
	w.Update(notReady)
	require.True(t, testutil.Poll(10*time.Second, func() bool { return writes(t, reg, nodecondition.ResultForbidden) >= 8 }))

	fails := grep(logs, failureLine)
	require.Len(t, fails, 1, "one line for the failure, none per retry:\n%s", logs)
	assert.Contains(t, fails[0], `result="forbidden"`)
	assert.Contains(t, fails[0], `node="forbidden"`)
	assert.Empty(t, grep(logs, recoveryLine))
	assert.Equal(t, corev1.NodeCondition{}, condition(t, admin, node))

	// NobodyUser is bound to nothing in any other test; this binding is
	// undone when the test ends.
	bind(t, c, admin, kubetest.NobodyUser)
	got := waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Reason == gate.CauseVSwitchdNotRunning })
	assert.Equal(t, corev1.ConditionFalse, got.Status)
	require.True(t, testutil.Poll(5*time.Second, func() bool { return len(grep(logs, recoveryLine)) == 1 }), "one line when writes succeed again:\n%s", logs)
	assert.Len(t, grep(logs, failureLine), 1)
	// The counters move once the PATCH has returned, after the API server
	// shows the condition.
	require.True(t, testutil.Poll(10*time.Second, func() bool { return writes(t, reg, nodecondition.ResultSuccess) == 1 }))
	assert.Equal(t, 1.0, lastWriteSuccess(t, reg))
}

// testHung: a request the API server never answers is cut off by the
// request timeout, and the writer writes once it answers again.
func testHung(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	const node = "hung"
	createNode(t, admin, node, nil)
	logs, _ := testutil.CaptureKlog(t)
	kube, rec := recordingConfig(t, c, kubetest.OVSGateUser)
	rec.stall.Store(true)
	cfg := fast(node)
	cfg.RequestTimeout = 300 * time.Millisecond
	w, reg := start(t, kube, cfg)
	w.Update(ready)
	require.True(t, testutil.Poll(5*time.Second, func() bool { return rec.stalled.Load() > 0 }))
	w.Update(notReady)
	require.True(t, testutil.Poll(10*time.Second, func() bool { return writes(t, reg, nodecondition.ResultTimeout) >= 3 }))
	fails := grep(logs, failureLine)
	require.Len(t, fails, 1, "%s", logs)
	assert.Contains(t, fails[0], `result="timeout"`)

	rec.stall.Store(false)
	got := waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Reason == gate.CauseVSwitchdNotRunning })
	assert.Equal(t, corev1.ConditionFalse, got.Status)
	require.True(t, testutil.Poll(5*time.Second, func() bool { return len(grep(logs, recoveryLine)) == 1 }), "%s", logs)
	assert.Len(t, grep(logs, failureLine), 1)
}

// testUpdateNeverWaits: Update returns while the writer waits on a request
// that the API server holds far longer than the test waits for Update.
// BenchmarkUpdate measures how long Update takes.
func testUpdateNeverWaits(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	const node = "update-never-waits"
	createNode(t, admin, node, nil)
	kube, rec := recordingConfig(t, c, kubetest.OVSGateUser)
	rec.stall.Store(true)
	cfg := fast(node)
	cfg.RequestTimeout = time.Hour
	w, reg := start(t, kube, cfg)
	w.Update(ready)
	require.True(t, testutil.Poll(10*time.Second, func() bool { return rec.stalled.Load() > 0 }))
	updatesReturn(t, w)
	assert.Equal(t, int64(1), rec.stalled.Load(), "the writer still waits on its first request")
	assert.Zero(t, writes(t, reg, nodecondition.ResultSuccess)+failures(t, reg), "no attempt has ended")
}

// testNodeDeleted: a deleted Node makes writes fail with not_found; the
// writer keeps retrying and writes to the Node registered again.
func testNodeDeleted(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	const node = "deleted"
	createNode(t, admin, node, nil)
	logs, _ := testutil.CaptureKlog(t)
	w, reg := start(t, c.RESTConfig(t, kubetest.OVSGateUser), fast(node))
	w.Update(ready)
	waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Status == corev1.ConditionTrue })

	require.NoError(t, admin.CoreV1().Nodes().Delete(t.Context(), node, metav1.DeleteOptions{}))
	require.True(t, testutil.Poll(10*time.Second, func() bool {
		_, err := admin.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}), "the Node is gone")
	w.Update(notReady)
	require.True(t, testutil.Poll(10*time.Second, func() bool { return writes(t, reg, nodecondition.ResultNotFound) >= 3 }))
	fails := grep(logs, failureLine)
	require.Len(t, fails, 1, "%s", logs)
	assert.Contains(t, fails[0], `result="not_found"`)

	recreated := time.Now().Truncate(time.Second)
	createNode(t, admin, node, nil)
	got := waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Status == corev1.ConditionFalse })
	assert.Equal(t, gate.CauseVSwitchdNotRunning, got.Reason)
	assert.False(t, got.LastTransitionTime.Time.Before(recreated), "the new Node's first condition starts now: %v", got.LastTransitionTime)
	require.True(t, testutil.Poll(5*time.Second, func() bool { return len(grep(logs, recoveryLine)) == 1 }), "%s", logs)
	assert.Len(t, grep(logs, failureLine), 1)
}

// testShutdown: stopping the writer leaves the condition as last written.
func testShutdown(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	const node = "shutdown"
	createNode(t, admin, node, nil)
	cfg := fast(node)
	cfg.Heartbeat = 200 * time.Millisecond
	w, err := nodecondition.New(c.RESTConfig(t, kubetest.OVSGateUser), cfg)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.Collectors()...)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	w.Update(ready)
	require.True(t, testutil.Poll(10*time.Second, func() bool { return writes(t, reg, nodecondition.ResultSuccess) >= 3 }))
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	last := condition(t, admin, node)
	require.Equal(t, corev1.ConditionTrue, last.Status)
	n := writes(t, reg, nodecondition.ResultSuccess)

	w.Update(notReady) // after Run: returns, writes nothing
	holds(t, 1500*time.Millisecond, 50*time.Millisecond, func() bool { return condition(t, admin, node) == last },
		"the condition stays as last written, heartbeat included")
	assert.Equal(t, n, writes(t, reg, nodecondition.ResultSuccess))
}

// testAPIServerRestart: while kube-apiserver is down Update returns at once
// and the writer retries; once it is back the latest state is written. One
// line for the outage, one for the recovery.
func testAPIServerRestart(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	const node = "restart"
	createNode(t, admin, node, nil)
	logs, _ := testutil.CaptureKlog(t)
	cfg := fast(node)
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	w, reg := start(t, c.RESTConfig(t, kubetest.OVSGateUser), cfg)
	w.Update(ready)
	waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Status == corev1.ConditionTrue })

	c.StopAPIServer(t)
	w.Update(notReady)
	require.True(t, testutil.Poll(10*time.Second, func() bool { return writes(t, reg, nodecondition.ResultUnreachable) >= 3 }))
	updatesReturn(t, w)
	final := gate.Status{Cause: gate.CauseBridgeNotReady, Reason: "bridge br-int: waiting for datapath ID"}
	w.Update(final)
	fails := grep(logs, failureLine)
	require.Len(t, fails, 1, "one line for the outage:\n%s", logs)
	assert.Contains(t, fails[0], `result="unreachable"`)

	c.StartAPIServer(t)
	got := waitCondition(t, admin, node, func(c corev1.NodeCondition) bool { return c.Reason == gate.CauseBridgeNotReady })
	assert.Equal(t, corev1.ConditionFalse, got.Status)
	require.True(t, testutil.Poll(5*time.Second, func() bool { return len(grep(logs, recoveryLine)) == 1 }), "%s", logs)
	// A kube-apiserver that is starting may refuse a request or two in
	// other ways (403 before its RBAC cache is filled, 503 before it is
	// ready); each cause is a line of its own.
	assert.LessOrEqual(t, len(grep(logs, failureLine)), 4, "%s", logs)
	var failed float64
	for _, r := range []string{nodecondition.ResultUnreachable, nodecondition.ResultForbidden, nodecondition.ResultServerError, nodecondition.ResultTimeout} {
		failed += writes(t, reg, r)
	}
	assert.Greater(t, failed, float64(len(grep(logs, failureLine))), "more retries than log lines")
	require.True(t, testutil.Poll(10*time.Second, func() bool { return lastWriteSuccess(t, reg) == 1 }))
}

// --- helpers ---------------------------------------------------------------

// start runs a writer until the test ends.
func start(t *testing.T, kube *rest.Config, cfg nodecondition.Config) (*nodecondition.Writer, *prometheus.Registry) {
	t.Helper()
	w, err := nodecondition.New(kube, cfg)
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(w.Collectors()...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return w, reg
}

// updatesReturn calls Update many times with changing states, as a
// flapping gate would, and fails the test unless all calls return within a
// deadline far above what they take on a loaded machine.
func updatesReturn(t *testing.T, w *nodecondition.Writer) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			s := ready
			if i%2 == 0 {
				s = gate.Status{Cause: gate.CauseVSwitchdStarting, Reason: "ovs-vswitchd is starting"}
			}
			w.Update(s)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Update waited")
	}
}

// advance steps clk by d once the writer waits on it: stepping before the
// writer has set its timer would move the time under it instead.
func advance(t *testing.T, clk *clocktesting.FakeClock, d time.Duration) {
	t.Helper()
	require.True(t, testutil.Poll(10*time.Second, clk.HasWaiters), "the writer never waited on its clock")
	clk.Step(d)
}

func createNode(t *testing.T, admin kubernetes.Interface, name string, conds []corev1.NodeCondition) {
	t.Helper()
	n, err := admin.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	if len(conds) > 0 {
		n.Status.Conditions = conds
		_, err = admin.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{})
		require.NoError(t, err)
	}
}

// bind grants user the role and waits until the authorizer allows it; the
// binding goes when the test ends.
func bind(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface, user string) {
	t.Helper()
	name := role + "-" + user
	_, err := admin.RbacV1().ClusterRoleBindings().Create(t.Context(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		err := admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		assert.NoError(t, err)
	})
	cs := c.Client(t, user)
	for _, a := range []authzv1.ResourceAttributes{
		{Verb: "get", Resource: "nodes"},
		{Verb: "patch", Resource: "nodes", Subresource: "status"},
	} {
		require.True(t, testutil.Poll(10*time.Second, func() bool {
			r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authzv1.SelfSubjectAccessReview{
				Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a},
			}, metav1.CreateOptions{})
			return err == nil && r.Status.Allowed
		}), "%s may %s %s/%s", user, a.Verb, a.Resource, a.Subresource)
	}
}

// holds checks ok every interval for d and fails the test at the first
// false. It reads on the test's goroutine, unlike assert.Never, which runs
// its condition on goroutines of its own and returns without waiting for the
// last one: a request made there could fail after the test has ended.
func holds(t *testing.T, d, interval time.Duration, ok func() bool, msg string) {
	t.Helper()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		require.True(t, ok(), msg)
	}
}

// condition is the writer's condition on the Node; zero when there is none.
func condition(t *testing.T, admin kubernetes.Interface, node string) corev1.NodeCondition {
	t.Helper()
	n, err := admin.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	require.NoError(t, err)
	for _, c := range n.Status.Conditions {
		if string(c.Type) == condType {
			return c
		}
	}
	return corev1.NodeCondition{}
}

// waitCondition polls until the writer's condition on the Node satisfies ok.
func waitCondition(t *testing.T, admin kubernetes.Interface, node string, ok func(corev1.NodeCondition) bool) corev1.NodeCondition {
	t.Helper()
	var last corev1.NodeCondition
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		n, err := admin.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
		if err == nil {
			for _, c := range n.Status.Conditions {
				if string(c.Type) == condType {
					if last = c; ok(c) {
						return c
					}
				}
			}
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	t.Fatalf("condition on node %s not as expected after 20s; last: %+v", node, last)
	return last
}

// normalize makes conditions comparable after a round trip through the API
// server, which keeps whole seconds in UTC.
func normalize(cs []corev1.NodeCondition) []corev1.NodeCondition {
	out := slices.Clone(cs)
	for i := range out {
		out[i].LastHeartbeatTime = out[i].LastHeartbeatTime.Rfc3339Copy()
		out[i].LastTransitionTime = out[i].LastTransitionTime.Rfc3339Copy()
		out[i].LastHeartbeatTime.Time = out[i].LastHeartbeatTime.UTC()
		out[i].LastTransitionTime.Time = out[i].LastTransitionTime.UTC()
	}
	return out
}

func grep(logs *testutil.SyncBuffer, s string) []string {
	var out []string
	for _, l := range logs.Lines() {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

func writes(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	return metricValue(t, reg, "ovsgate_node_condition_writes_total", result)
}

func failures(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	var sum float64
	for _, r := range []string{
		nodecondition.ResultUnauthorized, nodecondition.ResultForbidden, nodecondition.ResultNotFound,
		nodecondition.ResultConflict, nodecondition.ResultThrottled, nodecondition.ResultTimeout,
		nodecondition.ResultServerError, nodecondition.ResultUnreachable, nodecondition.ResultError,
	} {
		sum += writes(t, reg, r)
	}
	return sum
}

func lastWriteSuccess(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return metricValue(t, reg, "ovsgate_node_condition_last_write_success", "")
}

// metricValue is the value of a counter or gauge, selected by its result
// label when result is not empty.
func metricValue(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if result != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == "result" && l.GetValue() == result
			}) {
				continue
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s{result=%q}", name, result)
	return 0
}

// recorder notes every request a writer sends and, while stall is set,
// holds each one until its context ends, like a hung API server.
type recorder struct {
	rt      http.RoundTripper
	stall   atomic.Bool
	stalled atomic.Int64

	mu   sync.Mutex
	reqs []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path)
	r.mu.Unlock()
	if r.stall.Load() {
		r.stalled.Add(1)
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
	return r.rt.RoundTrip(req)
}

// WrappedRoundTripper lets the writer close the idle connections below.
func (r *recorder) WrappedRoundTripper() http.RoundTripper { return r.rt }

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// recordingConfig is a client configuration for user whose requests rec
// records.
func recordingConfig(t *testing.T, c *kubetest.Cluster, user string) (*rest.Config, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg := c.RESTConfig(t, user)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		rec.rt = rt
		return rec
	})
	return cfg, rec
}
