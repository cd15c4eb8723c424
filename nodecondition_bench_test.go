package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovsgate/ovsgate/internal/kubetest"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/nodecondition"
)

// BenchmarkNodeConditionWrites measures the load one node puts on the API
// server, with a real kube-apiserver, a real OVS and the real binary: the
// writes of a steady node (measured over 10 heartbeats of 2 s, then scaled to
// the default 5 min heartbeat), and the writes of a node with the default
// heartbeat while ovs-vswitchd restarts every 2 s for a minute; then the
// rates 5,000 such nodes would send.
func BenchmarkNodeConditionWrites(b *testing.B) {
	c := kubetest.Start(b)
	ctx := context.Background()
	admin := c.AdminClient()
	_, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-node-condition"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-node-condition"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "bench-node-condition"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: kubetest.OVSGateUser}},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s := ovstest.Start(b, "br-int")
	kubeconfig := c.Kubeconfig(b, kubetest.OVSGateUser)
	// serve starts ovsgate writing the condition of a new Node; it returns
	// a func that counts its successful writes, and one that waits for the
	// condition to be True.
	serve := func(node, heartbeat string) (writes func() float64, isTrue func() bool) {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		d := testutil.StartOvsgate(b, binary, nil, "serve", "--ovsdb", s.Endpoint(), "--ovs-rundir", s.RunDir(),
			"--status-file", filepath.Join(b.TempDir(), "status.json"),
			"--health-probe-bind-address", testutil.AnyPort, "--metrics-bind-address", testutil.AnyPort,
			"--node-condition", "ovsgate.io/OVSReady", "--node-name", node,
			"--kubeconfig", kubeconfig, "--node-condition-heartbeat", heartbeat)
		_, metrics := d.Addrs(b)
		writes = func() float64 {
			n, _ := testutil.Metric(b, metrics, "ovsgate_node_condition_writes_total", map[string]string{"result": "success"})
			return n
		}
		isTrue = func() bool {
			n, err := admin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, cond := range n.Status.Conditions {
				if cond.Type == "ovsgate.io/OVSReady" {
					return cond.Status == corev1.ConditionTrue
				}
			}
			return false
		}
		if !ovstest.Poll(60*time.Second, isTrue) {
			b.Fatal("the condition never became True")
		}
		return writes, isTrue
	}
	sleep := func(d time.Duration) { ovstest.Poll(d, func() bool { return false }) }

	for b.Loop() {
		// Steady: ten heartbeats of 2 s.
		writes, _ := serve("steady", "2s")
		w0, t0 := writes(), time.Now()
		sleep(20 * time.Second)
		perHeartbeat := (writes() - w0) / (time.Since(t0).Seconds() / 2)
		steady := perHeartbeat * float64(time.Hour/nodecondition.DefaultHeartbeat)

		// Flapping, with the default heartbeat: ovs-vswitchd restarted
		// every 2 s for a minute.
		writes, isTrue := serve("flapping", nodecondition.DefaultHeartbeat.String())
		w0, t0 = writes(), time.Now()
		restarts := 0
		for time.Since(t0) < time.Minute {
			next := time.Now().Add(2 * time.Second)
			s.KillVSwitchd()
			s.StartVSwitchd()
			restarts++
			sleep(time.Until(next))
		}
		if !ovstest.Poll(30*time.Second, isTrue) {
			b.Fatal("the condition did not return to True")
		}
		flapping := (writes() - w0) / time.Since(t0).Hours()
		b.ReportMetric(perHeartbeat, "writes/heartbeat")
		b.ReportMetric(steady, "steady-writes/node/h")
		b.ReportMetric(flapping, "flapping-writes/node/h")
		b.ReportMetric(float64(restarts), "restarts")
		b.ReportMetric(steady*5000/3600, "steady-writes/s@5000")
		b.ReportMetric(flapping*5000/3600, "flapping-writes/s@5000")
	}
}
