package main

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/ovsgate/ovsgate/internal/kubetest"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/nodecondition"
)

// serve gives the node condition only what the gate has settled on. An
// ovsgate restart that needs longer than the writer's one-second merge
// window to reach ovs-vswitchd (here: stopped for 3 s, under the 5 s call
// timeout) leaves a True condition True, its transition time included,
// rather than writing "starting" as False in between.
func TestServeNodeConditionWaitsForTheGate(t *testing.T) {
	c := kubetest.Start(t)
	admin := c.AdminClient()
	s := ovstest.Start(t, "br-int")
	const node, typ = "restarted-ovsgate", "ovsgate.io/OVSReady"

	n, err := admin.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{})
	require.NoError(t, err)
	since := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	n.Status.Conditions = []corev1.NodeCondition{{Type: typ, Status: corev1.ConditionTrue, Reason: "OVSReady",
		Message: nodecondition.MessageReady, LastTransitionTime: since, LastHeartbeatTime: since}}
	_, err = admin.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{})
	require.NoError(t, err)
	// unchanged reads the condition and fails the test unless it is still
	// the True one written above.
	unchanged := func(what string) {
		t.Helper()
		n, err := admin.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
		require.NoError(t, err)
		for _, cond := range n.Status.Conditions {
			if string(cond.Type) == typ {
				require.Equal(t, corev1.ConditionTrue, cond.Status, "%s: %+v", what, cond)
				require.True(t, cond.LastTransitionTime.Equal(&since), "%s: %+v", what, cond)
				return
			}
		}
		t.Fatalf("%s: no %s condition: %+v", what, typ, n.Status.Conditions)
	}

	s.SignalVSwitchd(syscall.SIGSTOP)
	t.Cleanup(func() { s.SignalVSwitchd(syscall.SIGCONT) })
	probe, metrics := testutil.FreeAddr(t), testutil.FreeAddr(t)
	testutil.StartOvsgate(t, binary, nil, "serve", "--ovsdb", s.Endpoint(), "--ovs-rundir", s.RunDir(),
		"--status-file", filepath.Join(t.TempDir(), "status.json"),
		"--health-probe-bind-address", probe, "--metrics-bind-address", metrics,
		"--node-condition", typ, "--node-name", node,
		"--kubeconfig", c.Kubeconfig(t, kubetest.AdminUser), "--node-condition-heartbeat", "1h")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); <-tick.C {
		unchanged("while ovs-vswitchd does not answer yet")
	}
	s.SignalVSwitchd(syscall.SIGCONT)
	require.True(t, testutil.Poll(10*time.Second, func() bool {
		code, _ := testutil.Get("http://" + probe + "/readyz")
		return code == 200
	}), "serve never became ready")
	// Ready: the writer has the gate's verdict now, which is what the
	// Node already says.
	require.True(t, testutil.Poll(10*time.Second, func() bool {
		n, _ := testutil.Metric(t, metrics, "ovsgate_node_condition_last_write_success", nil)
		return n == 1
	}), "the writer never wrote")
	unchanged("once ready")
}

// serve refuses a heartbeat the writer would refuse, in the same words: the
// flag's checks and the package's are one rule, not two that can drift.
func TestNodeConditionHeartbeatRefusedAlike(t *testing.T) {
	for _, heartbeat := range []time.Duration{0, -time.Second} {
		t.Run(heartbeat.String(), func(t *testing.T) {
			r := ovsgate(t, cleanEnv(), "serve", "--node-condition", "ovsgate.io/OVSReady", "--node-name", "n1",
				"--kubeconfig", "/dev/null", "--node-condition-heartbeat", heartbeat.String())
			assert.Equal(t, 2, r.Code, "stderr: %s", r.Stderr)
			why := nodecondition.CheckHeartbeat(heartbeat)
			require.Error(t, why)
			assert.Equal(t, fmt.Sprintf("ovsgate: invalid --node-condition-heartbeat %q: %v\n", heartbeat.String(), why), r.Stderr)

			_, err := nodecondition.New(&rest.Config{Host: "https://127.0.0.1:1"},
				nodecondition.Config{Node: "n1", Type: "ovsgate.io/OVSReady", Heartbeat: heartbeat})
			assert.EqualError(t, err, fmt.Sprintf("invalid node condition heartbeat %v: %v", heartbeat, why))
		})
	}
}
