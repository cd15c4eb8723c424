package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/kubetest"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

var ovsgateBin string

func TestMain(m *testing.M) { os.Exit(testutil.MainWithOvsgate(m, &ovsgateBin, "", nil)) }

const (
	bootstrapOverlay  = "../deploy/kubernetes/overlays/node-readiness"
	continuousOverlay = "../deploy/kubernetes/overlays/node-readiness-continuous"
	// registerWithTaints is the kubelet setting the README gives, as
	// --register-with-taints spells it.
	registerWithTaints = "readiness.k8s.io/NetworkReady=pending:NoSchedule"
	// notReadyTaint is what the TaintNodesByCondition admission plugin puts
	// on every new Node.
	notReadyTaint = "node.kubernetes.io/not-ready"
	bridge        = "br-int"
	namespace     = "default"

	// rounds of add-br -> bound, and of kill -> taint back -> restart ->
	// bound with the continuous rule.
	rounds     = 10
	flapRounds = 5
	// deadline bounds every wait. Each step takes about a second here
	// (ovsgate's one-second merge window); this is for a loaded machine.
	deadline = 60 * time.Second
)

// cluster is the one control plane of TestOVSToSchedulableNode: every
// subtest shares it, each with Nodes, Pods and OVS sandboxes of its own.
type cluster struct {
	*kubetest.Cluster
	admin      kubernetes.Interface
	dyn        dynamic.Interface
	scheduler  *kubetest.Component
	controller *kubetest.Component
	// ovsgateKubeconfig authenticates as the ServiceAccount of the
	// rendered DaemonSet, with the RBAC the overlay ships.
	ovsgateKubeconfig string
	// namespace and serviceAccount are the rendered DaemonSet's; podKubeconfigs
	// hold, per node, the token kubelet would mount into its pod there.
	namespace, serviceAccount string
	podKubeconfigs            map[string]string
	// condition is the type the rule waits for; startup is its taint.
	condition string
	startup   corev1.Taint
}

// TestOVSToSchedulableNode runs the chain a cluster operator relies on:
// ovsgate writes its node condition, node-readiness-controller takes the
// start-up taint off (or puts it back) by the rule the repository ships, and
// kube-scheduler places pods by the taint. No kubelet runs: the test registers
// Nodes as kubelet would, and a bound Pod (spec.nodeName) is the end of the
// chain.
func TestOVSToSchedulableNode(t *testing.T) {
	ovstest.Require(t)
	kubetest.RequireScheduler(t)
	kubetest.RequireNodeReadinessController(t)
	bootstrap := render(t, bootstrapOverlay)
	continuous := render(t, continuousOverlay)

	c := &cluster{Cluster: kubetest.Start(t)}
	c.admin = c.AdminClient()
	c.dyn = c.Dynamic(t)
	c.scheduler = c.StartScheduler(t)
	c.controller = c.StartNodeReadinessController(t)
	c.useRule(t, bootstrap)
	// As kubelet would mount it into the DaemonSet's pod.
	c.ovsgateKubeconfig = c.ServiceAccountKubeconfig(t, bootstrap.ds.GetNamespace(), serviceAccount(t, bootstrap),
		authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes", Subresource: "status"})
	c.namespace, c.serviceAccount = bootstrap.ds.GetNamespace(), serviceAccount(t, bootstrap)
	c.podKubeconfigs = map[string]string{}

	t.Run("bootstrap-only", func(t *testing.T) {
		t.Run("pending until OVS is ready", func(t *testing.T) { testUntilReady(t, c) })
		t.Run("OVS fails later", func(t *testing.T) { testBootstrapOnlyFailure(t, c) })
	})

	// enforcementMode is immutable: the continuous overlay is a rule of its
	// own, and the bootstrap-only one goes, as the README says to switch.
	c.useRule(t, continuous)
	c.deleteRule(t, bootstrap.rule.GetName())
	t.Run("continuous", func(t *testing.T) {
		n := c.readyNode(t, "flap", ovstest.Start(t, bridge))
		t.Run("OVS fails and recovers", func(t *testing.T) { testContinuous(t, c, n) })
		t.Run("ovsgate stopped or killed", func(t *testing.T) { testOvsgateGone(t, c, n) })
	})
	t.Run("two nodes, OVS ready on one", func(t *testing.T) { testTwoNodes(t, c) })
}

// testUntilReady: a Pod stays Pending on a node whose OVS has no bridge yet,
// held back by the start-up taint; `ovs-vsctl add-br` leads to the condition,
// the taint's removal and the Pod's binding, timed over several rounds with a
// new node each.
func testUntilReady(t *testing.T, c *cluster) {
	s := ovstest.Start(t) // no bridge yet
	var toCondition, toUntainted, toBound []time.Duration
	for i := 1; i <= rounds; i++ {
		ok := t.Run(fmt.Sprintf("round %02d", i), func(t *testing.T) {
			// Each round's bridge goes with its node, after its ovsgate.
			t.Cleanup(func() { s.DelBridge(bridge) })
			name := fmt.Sprintf("boot-%02d", i)
			c.registerNode(t, name)
			c.startOvsgate(t, name, s)
			c.waitNode(t, name, "the condition False: no bridge", hasCondition(c.condition, corev1.ConditionFalse, gate.CauseBridgeNotReady))
			pod := c.createPod(t, name)
			c.waitPending(t, pod, name)

			w := c.watch(t, name, pod)
			s.AddBridge(bridge)
			added := time.Now()
			d := w.until(t, added,
				step{what: "condition True", node: hasCondition(c.condition, corev1.ConditionTrue, gate.CauseReady)},
				step{what: "taint removed", node: c.untainted},
				step{what: "Pod bound", pod: boundTo(name)},
			)
			toCondition, toUntainted, toBound = append(toCondition, d[0]), append(toUntainted, d[1]), append(toBound, d[2])
			t.Logf("add-br -> condition True %v, -> taint removed %v, -> Pod bound %v", d[0], d[1], d[2])
			if i == 1 {
				c.showLogs(t, name, pod)
			}
		})
		if !ok {
			return
		}
	}
	t.Logf("add-br returning -> condition True stored: %s", stats(toCondition))
	t.Logf("add-br returning -> start-up taint removed: %s", stats(toUntainted))
	t.Logf("add-br returning -> Pod bound: %s", stats(toBound))
}

// testBootstrapOnlyFailure: once the taint is off, the bootstrap-only rule
// leaves the node alone: ovs-vswitchd dies, the condition says so, and the
// taint stays off.
func testBootstrapOnlyFailure(t *testing.T, c *cluster) {
	s := ovstest.Start(t, bridge)
	n := c.readyNode(t, "boot-failure", s)
	updatesBefore, _ := c.controllerSaw(n.name)
	s.KillVSwitchd()

	// Read the Node every 100 ms from the kill until the controller has
	// acted on the update that made the condition False, and five reads
	// more: the taint never comes back.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(deadline)
	processed, after := false, 0
	for after < 5 {
		require.True(t, time.Now().Before(end), "the controller did not act on the False condition within %v", deadline)
		node, err := c.admin.CoreV1().Nodes().Get(t.Context(), n.name, metav1.GetOptions{})
		require.NoError(t, err)
		require.True(t, c.untainted(node), "the bootstrap-only rule put the taint back: %v", node.Spec.Taints)
		if !processed && hasCondition(c.condition, corev1.ConditionFalse, gate.CauseVSwitchdNotRunning)(node) {
			updates, skips := c.controllerSaw(n.name)
			if len(updates) > len(updatesBefore) {
				if i := slices.IndexFunc(skips, func(l logLine) bool { return l.n > updates[len(updatesBefore)].n }); i >= 0 {
					processed = true
					t.Logf("node-readiness-controller: %s", updates[len(updatesBefore)].text)
					t.Logf("node-readiness-controller: %s", skips[i].text)
				}
			}
		}
		if processed {
			after++
		}
		<-tick.C
	}
	pod := c.createPod(t, "after-failure")
	c.watch(t, n.name, pod).wait(t, step{what: "Pod bound to the node whose OVS is down", pod: boundTo(n.name)})
	t.Logf("bootstrap-only: ovs-vswitchd dead, condition False (%s), taint off, a new Pod bound there", gate.CauseVSwitchdNotRunning)
}

// testContinuous: with the continuous rule the taint follows the condition
// both ways: ovs-vswitchd killed -> False -> taint back -> a new Pod waits;
// restarted -> True -> taint off -> that Pod bound.
func testContinuous(t *testing.T, c *cluster, n *ovsNode) {
	var toFalse, toTainted, toTrue, toUntainted, toBound []time.Duration
	for i := 1; i <= flapRounds; i++ {
		w := c.watch(t, n.name, "")
		n.s.KillVSwitchd()
		killed := time.Now()
		d := w.until(t, killed,
			step{what: "condition False", node: hasCondition(c.condition, corev1.ConditionFalse, gate.CauseVSwitchdNotRunning)},
			step{what: "taint back", node: c.tainted},
		)
		toFalse, toTainted = append(toFalse, d[0]), append(toTainted, d[1])

		pod := c.createPod(t, fmt.Sprintf("flap-%02d", i))
		c.waitPending(t, pod, n.name)

		w = c.watch(t, n.name, pod)
		n.s.StartVSwitchdNoWait()
		started := time.Now()
		u := w.until(t, started,
			step{what: "condition True", node: hasCondition(c.condition, corev1.ConditionTrue, gate.CauseReady)},
			step{what: "taint removed", node: c.untainted},
			step{what: "Pod bound", pod: boundTo(n.name)},
		)
		toTrue, toUntainted, toBound = append(toTrue, u[0]), append(toUntainted, u[1]), append(toBound, u[2])
		t.Logf("round %d: kill -> False %v, -> tainted %v; start -> True %v, -> untainted %v, -> bound %v", i, d[0], d[1], u[0], u[1], u[2])
		if i == 1 {
			c.showLogs(t, n.name, pod)
		}
	}
	t.Logf("ovs-vswitchd killed -> condition False stored: %s", stats(toFalse))
	t.Logf("ovs-vswitchd killed -> start-up taint back: %s", stats(toTainted))
	t.Logf("ovs-vswitchd started -> condition True stored: %s", stats(toTrue))
	t.Logf("ovs-vswitchd started -> start-up taint removed: %s", stats(toUntainted))
	t.Logf("ovs-vswitchd started -> Pod bound: %s", stats(toBound))
}

// testOvsgateGone: stopping or killing ovsgate leaves its last condition,
// True, on the Node, so the node stays schedulable, also with the
// continuous rule. The controller never reads lastHeartbeatTime: once
// ovsgate is gone, a later failure of OVS goes unseen (hence the alert on a
// missing ovsgate).
func testOvsgateGone(t *testing.T, c *cluster, n *ovsNode) {
	for i, stop := range []struct {
		how  string
		stop func(d *testutil.Daemon)
	}{
		{"SIGTERM", func(d *testutil.Daemon) { assert.NoError(t, d.Stop(), "serve exits 0 on SIGTERM") }},
		{"SIGKILL", func(d *testutil.Daemon) { d.Kill() }},
	} {
		c.waitNode(t, n.name, "True and untainted", func(node *corev1.Node) bool {
			return hasCondition(c.condition, corev1.ConditionTrue, gate.CauseReady)(node) && c.untainted(node)
		})
		// The condition is this ovsgate's own verdict, not a predecessor's.
		require.True(t, testutil.Poll(deadline, func() bool {
			code, _ := testutil.Get("http://" + n.probe + "/readyz")
			return code == http.StatusOK
		}), "ovsgate never became ready")
		stop.stop(n.d)
		// Only this subtest's reads follow: nothing writes the Node now.
		node, err := c.admin.CoreV1().Nodes().Get(t.Context(), n.name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.True(t, hasCondition(c.condition, corev1.ConditionTrue, gate.CauseReady)(node), "%s left %+v", stop.how, node.Status.Conditions)
		pod := c.createPod(t, fmt.Sprintf("gone-%d", i))
		c.watch(t, n.name, pod).wait(t, step{what: "Pod bound after ovsgate's " + stop.how, pod: boundTo(n.name)})
		if stop.how == "SIGKILL" {
			// Nobody watches OVS on the node now.
			n.s.KillVSwitchd()
			pod := c.createPod(t, "unwatched")
			c.watch(t, n.name, pod).wait(t, step{what: "Pod bound to a node whose OVS is down, ovsgate gone", pod: boundTo(n.name)})
			node, err := c.admin.CoreV1().Nodes().Get(t.Context(), n.name, metav1.GetOptions{})
			require.NoError(t, err)
			assert.True(t, hasCondition(c.condition, corev1.ConditionTrue, gate.CauseReady)(node), "the stale condition: %+v", node.Status.Conditions)
			break
		}
		n.ovsgate = c.startOvsgate(t, n.name, n.s)
	}
}

// testTwoNodes: of two new nodes, only the one whose OVS is ready takes pods.
func testTwoNodes(t *testing.T, c *cluster) {
	ready := c.readyNode(t, "ovs-ready", ovstest.Start(t, bridge))
	c.registerNode(t, "ovs-no-bridge")
	c.startOvsgate(t, "ovs-no-bridge", ovstest.Start(t))
	c.waitNode(t, "ovs-no-bridge", "False and tainted", func(node *corev1.Node) bool {
		return hasCondition(c.condition, corev1.ConditionFalse, gate.CauseBridgeNotReady)(node) && c.tainted(node)
	})
	for i := range 3 {
		pod := c.createPod(t, fmt.Sprintf("two-nodes-%d", i))
		c.watch(t, ready.name, pod).wait(t, step{what: "Pod bound", pod: func(p *corev1.Pod) bool { return p.Spec.NodeName != "" }})
		p, err := c.admin.CoreV1().Pods(namespace).Get(t.Context(), pod, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, ready.name, p.Spec.NodeName, "pod %s", pod)
	}
	node, err := c.admin.CoreV1().Nodes().Get(t.Context(), "ovs-no-bridge", metav1.GetOptions{})
	require.NoError(t, err)
	assert.True(t, c.tainted(node), "%v", node.Spec.Taints)
}

// --- the rule ------------------------------------------------------------------

// rendering is an overlay as kubectl kustomize renders it.
type rendering struct {
	objs []*unstructured.Unstructured
	rule *unstructured.Unstructured
	ds   *unstructured.Unstructured
}

func render(t *testing.T, dir string) rendering {
	t.Helper()
	var r rendering
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(testutil.Kustomize(t, dir)), 4096)
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, dir)
		if obj == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		r.objs = append(r.objs, u)
		switch u.GetKind() {
		case "NodeReadinessRule":
			require.Nil(t, r.rule, "%s: one NodeReadinessRule", dir)
			r.rule = u
		case "DaemonSet":
			require.Nil(t, r.ds, "%s: one DaemonSet", dir)
			r.ds = u
		}
	}
	require.NotNil(t, r.rule, "%s: no NodeReadinessRule", dir)
	require.NotNil(t, r.ds, "%s: no DaemonSet", dir)
	return r
}

func serviceAccount(t *testing.T, r rendering) string {
	t.Helper()
	sa, _, err := unstructured.NestedString(r.ds.Object, "spec", "template", "spec", "serviceAccountName")
	require.NoError(t, err)
	require.NotEmpty(t, sa)
	return sa
}

// resources maps each kind of the renderings to its API resource.
var resources = map[string]schema.GroupVersionResource{
	"ServiceAccount":     {Version: "v1", Resource: "serviceaccounts"},
	"DaemonSet":          {Group: "apps", Version: "v1", Resource: "daemonsets"},
	"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"NodeReadinessRule":  kubetest.NodeReadinessRules,
	// The admission policy holds each ovsgate to its own Node: every
	// ovsgate here writes with a token bound to a pod on its node.
	"ValidatingAdmissionPolicy":        {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"},
	"ValidatingAdmissionPolicyBinding": {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"},
}

// useRule applies the whole rendering as `kubectl apply -k` does (the
// DaemonSet has no controller here and stays inert), takes its rule's
// condition and taint for the test's, and waits until the controller has
// taken the rule in.
func (c *cluster) useRule(t *testing.T, r rendering) {
	t.Helper()
	for _, obj := range r.objs {
		gvr, ok := resources[obj.GetKind()]
		require.True(t, ok, "the rendering has a %s, unknown to this test", obj.GetKind())
		var ri dynamic.ResourceInterface = c.dyn.Resource(gvr)
		if ns := obj.GetNamespace(); ns != "" {
			ri = c.dyn.Resource(gvr).Namespace(ns)
		}
		body, err := obj.MarshalJSON()
		require.NoError(t, err)
		force := true
		_, err = ri.Patch(t.Context(), obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
			FieldManager: "ovsgate-e2e", Force: &force, FieldValidation: metav1.FieldValidationStrict,
		})
		require.NoError(t, err, "apply %s %s", obj.GetKind(), obj.GetName())
	}

	spec := r.rule.Object["spec"].(map[string]any)
	conds := spec["conditions"].([]any)
	require.Len(t, conds, 1)
	c.condition = conds[0].(map[string]any)["type"].(string)
	taint := spec["taint"].(map[string]any)
	c.startup = corev1.Taint{Key: taint["key"].(string), Value: taint["value"].(string), Effect: corev1.TaintEffect(taint["effect"].(string))}
	require.Equal(t, registerWithTaints, c.startup.ToString(), "the rule's taint is the one kubelet registers nodes with")

	// The controller adds its finalizer, then reads the rule and records
	// the generation it acted on.
	c.untilRule(t, r.rule.GetName(), "taken in by the controller", func(u *unstructured.Unstructured) bool {
		if u == nil {
			return false
		}
		seen, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		return seen == u.GetGeneration()
	})
}

// deleteRule deletes a rule and waits until the controller has let it go.
func (c *cluster) deleteRule(t *testing.T, name string) {
	t.Helper()
	require.NoError(t, c.dyn.Resource(kubetest.NodeReadinessRules).Delete(t.Context(), name, metav1.DeleteOptions{}))
	c.untilRule(t, name, "gone", func(u *unstructured.Unstructured) bool { return u == nil })
}

// untilRule waits until cond holds for the rule name (nil: no such rule).
func (c *cluster) untilRule(t *testing.T, name, what string, cond func(*unstructured.Unstructured) bool) {
	t.Helper()
	ri := c.dyn.Resource(kubetest.NodeReadinessRules)
	byName := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return ri.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			return ri.Watch(ctx, o)
		},
	}
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	_, err := watchtools.UntilWithSync(ctx, lw, &unstructured.Unstructured{},
		func(store cache.Store) (bool, error) {
			obj, ok, err := store.GetByKey(name)
			if err != nil || !ok {
				return cond(nil), err
			}
			return cond(obj.(*unstructured.Unstructured)), nil
		},
		func(ev watch.Event) (bool, error) {
			if ev.Type == watch.Deleted {
				return cond(nil), nil
			}
			u, ok := ev.Object.(*unstructured.Unstructured)
			return ok && cond(u), nil
		})
	require.NoError(t, err, "rule %s %s", name, what)
}

// --- nodes, ovsgate, pods ------------------------------------------------------

// registerNode creates a Node as kubelet does with --register-with-taints
// set to the start-up taint: its labels, its capacity, Ready. The API
// server's TaintNodesByCondition admission adds node.kubernetes.io/not-ready;
// no kube-controller-manager runs here, so the test then takes that taint off
// itself, as its node lifecycle controller does for a Ready node. The Node
// is deleted when the test ends.
func (c *cluster) registerNode(t *testing.T, name string) {
	t.Helper()
	ctx := t.Context()
	nodes := c.admin.CoreV1().Nodes()
	node, err := nodes.Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": goruntime.GOARCH,
			"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": goruntime.GOARCH,
		}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{c.startup}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		err := c.admin.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete node %s: %v", name, err)
		}
	})
	require.True(t, slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == notReadyTaint }),
		"the API server adds %s to a new Node: %v", notReadyTaint, node.Spec.Taints)

	room := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110"),
	}
	now := metav1.Now()
	ready := corev1.NodeStatus{Capacity: room, Allocatable: room, Conditions: []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status",
		LastHeartbeatTime: now, LastTransitionTime: now,
	}}}
	// Updates retry on a conflict: the controller writes Nodes too.
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Status = ready
		_, err = nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	}))
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == notReadyTaint })
		_, err = nodes.Update(ctx, node, metav1.UpdateOptions{})
		return err
	}))
}

// ovsNode is a registered Node with its own OVS sandbox and ovsgate.
type ovsNode struct {
	name string
	s    *ovstest.Sandbox
	*ovsgate
}

// ovsgate is a running `ovsgate serve` and its probe listener's address.
type ovsgate struct {
	d     *testutil.Daemon
	probe string
}

// readyNode registers a node whose OVS has the bridge, starts its ovsgate
// and waits until the controller has taken the start-up taint off.
func (c *cluster) readyNode(t *testing.T, name string, s *ovstest.Sandbox) *ovsNode {
	t.Helper()
	c.registerNode(t, name)
	n := &ovsNode{name: name, s: s, ovsgate: c.startOvsgate(t, name, s)}
	c.waitNode(t, name, "True and untainted", func(node *corev1.Node) bool {
		return hasCondition(c.condition, corev1.ConditionTrue, gate.CauseReady)(node) && c.untainted(node)
	})
	return n
}

// startOvsgate runs `ovsgate serve --node-condition` for node against the
// sandbox, as the ServiceAccount of the shipped DaemonSet.
func (c *cluster) startOvsgate(t *testing.T, node string, s *ovstest.Sandbox) *ovsgate {
	t.Helper()
	d := testutil.StartOvsgate(t, ovsgateBin, nil, "serve",
		"--ovsdb", s.Endpoint(), "--ovs-rundir", s.RunDir(), "--bridge", bridge,
		"--status-file", filepath.Join(t.TempDir(), "status.json"),
		"--health-probe-bind-address", testutil.AnyPort, "--metrics-bind-address", "0",
		"--node-condition", c.condition, "--node-name", node, "--kubeconfig", c.podKubeconfig(t, node))
	probe, _ := d.Addrs(t)
	return &ovsgate{probe: probe, d: d}
}

// podKubeconfig returns a kubeconfig with the token kubelet would mount
// into ovsgate's pod on node: the ServiceAccount's, bound to a Pod object
// on that node, so that it names the node as the admission policy requires.
func (c *cluster) podKubeconfig(t *testing.T, node string) string {
	t.Helper()
	if kc, ok := c.podKubeconfigs[node]; ok {
		return kc
	}
	pod, err := c.admin.CoreV1().Pods(c.namespace).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ovsgate-" + node, Namespace: c.namespace},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: c.serviceAccount,
			Containers:  []corev1.Container{{Name: "ovsgate", Image: "ovsgate"}},
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	user := "ovsgate-pod-" + node
	c.UseToken(t, user, c.ServiceAccountToken(t, c.namespace, c.serviceAccount, pod))
	c.podKubeconfigs[node] = c.Kubeconfig(t, user)
	return c.podKubeconfigs[node]
}

// createPod creates a Pod without tolerations, deleted when the test ends.
func (c *cluster) createPod(t *testing.T, name string) string {
	t.Helper()
	_, err := c.admin.CoreV1().Pods(namespace).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
			}},
		}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		// No kubelet confirms a graceful deletion here.
		zero := int64(0)
		err := c.admin.CoreV1().Pods(namespace).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete pod %s: %v", name, err)
		}
	})
	return name
}

// waitPending waits until the scheduler has tried the Pod and found no node
// for it, then checks why: the node carries the start-up taint. (The
// scheduler's message counts untolerated taints; it does not name them.)
func (c *cluster) waitPending(t *testing.T, pod, node string) {
	t.Helper()
	c.watch(t, node, pod).wait(t, step{what: "PodScheduled False", pod: func(p *corev1.Pod) bool {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				return true
			}
		}
		return false
	}})
	p, err := c.admin.CoreV1().Pods(namespace).Get(t.Context(), pod, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, corev1.PodPending, p.Status.Phase)
	assert.Empty(t, p.Spec.NodeName)
	n, err := c.admin.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	require.NoError(t, err)
	require.True(t, c.tainted(n), "the Pod is Pending, and node %s lacks %s: %v", node, c.startup.ToString(), n.Spec.Taints)
	require.False(t, slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == notReadyTaint }))
}

// tainted: the Node carries the start-up taint (the controller matches
// its taints by key and effect).
func (c *cluster) tainted(n *corev1.Node) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
		return t.Key == c.startup.Key && t.Effect == c.startup.Effect
	})
}

func (c *cluster) untainted(n *corev1.Node) bool { return !c.tainted(n) }

// waitNode waits until pred holds for the node (it may hold already).
func (c *cluster) waitNode(t *testing.T, node, what string, pred func(*corev1.Node) bool) {
	t.Helper()
	c.watch(t, node, "").wait(t, step{what: what, node: pred})
}

func hasCondition(typ string, status corev1.ConditionStatus, reason string) func(*corev1.Node) bool {
	return func(n *corev1.Node) bool {
		for _, cond := range n.Status.Conditions {
			if string(cond.Type) == typ {
				return cond.Status == status && cond.Reason == reason
			}
		}
		return false
	}
}

func boundTo(node string) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool { return p.Spec.NodeName == node }
}

// --- watching the chain ----------------------------------------------------------

// watcher follows one Node and, optionally, one Pod through watches opened
// before the change it times, so it sees every state in between.
type watcher struct {
	node  *corev1.Node
	pod   *corev1.Pod
	nodeW watch.Interface
	podW  watch.Interface // nil without a Pod
}

// step is one link of the chain: a state of the Node or of the Pod.
type step struct {
	what string
	node func(*corev1.Node) bool
	pod  func(*corev1.Pod) bool
}

func (s step) holds(w *watcher) bool {
	if s.node != nil {
		return s.node(w.node)
	}
	return w.pod != nil && s.pod(w.pod)
}

// watch reads the Node and the Pod (if pod is not "") and watches both from
// there; the watches end with the test at the latest.
func (c *cluster) watch(t *testing.T, node, pod string) *watcher {
	t.Helper()
	ctx := t.Context()
	w := &watcher{}
	var err error
	w.node, err = c.admin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	require.NoError(t, err)
	w.nodeW, err = c.admin.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", node).String(), ResourceVersion: w.node.ResourceVersion,
	})
	require.NoError(t, err)
	t.Cleanup(w.nodeW.Stop)
	if pod != "" {
		w.pod, err = c.admin.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
		require.NoError(t, err)
		w.podW, err = c.admin.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("metadata.name", pod).String(), ResourceVersion: w.pod.ResourceVersion,
		})
		require.NoError(t, err)
		t.Cleanup(w.podW.Stop)
	}
	return w
}

// until reads changes until every step has held, and returns how long after
// since each first did, as the test saw the change arrive. A step that holds
// before the change proves nothing and fails the test.
func (w *watcher) until(t *testing.T, since time.Time, steps ...step) []time.Duration {
	t.Helper()
	for _, s := range steps {
		require.False(t, s.holds(w), "%s before the change", s.what)
	}
	return w.run(t, since, steps)
}

// wait is until for states that may hold already.
func (w *watcher) wait(t *testing.T, steps ...step) {
	t.Helper()
	w.run(t, time.Now(), steps)
}

func (w *watcher) run(t *testing.T, since time.Time, steps []step) []time.Duration {
	t.Helper()
	defer w.stop()
	took := make([]time.Duration, len(steps))
	seen := make([]bool, len(steps))
	check := func() bool {
		all := true
		for i, s := range steps {
			if !seen[i] && s.holds(w) {
				seen[i], took[i] = true, time.Since(since)
			}
			all = all && seen[i]
		}
		return all
	}
	var podEvents <-chan watch.Event
	if w.podW != nil {
		podEvents = w.podW.ResultChan()
	}
	timeout := time.NewTimer(deadline)
	defer timeout.Stop()
	for !check() {
		var ev watch.Event
		var ok bool
		select {
		case ev, ok = <-w.nodeW.ResultChan():
		case ev, ok = <-podEvents:
		case <-timeout.C:
			var missing []string
			for i, s := range steps {
				if !seen[i] {
					missing = append(missing, s.what)
				}
			}
			t.Fatalf("after %v: still waiting for %s; node %s taints %v conditions %+v; pod %s",
				deadline, strings.Join(missing, ", "), w.node.Name, w.node.Spec.Taints, w.node.Status.Conditions, describe(w.pod))
		}
		require.True(t, ok, "a watch closed early")
		switch obj := ev.Object.(type) {
		case *corev1.Node:
			require.NotEqual(t, watch.Deleted, ev.Type, "node %s deleted", obj.Name)
			w.node = obj
		case *corev1.Pod:
			require.NotEqual(t, watch.Deleted, ev.Type, "pod %s deleted", obj.Name)
			w.pod = obj
		default:
			t.Fatalf("watch: %s %v", ev.Type, ev.Object)
		}
	}
	return took
}

func (w *watcher) stop() {
	w.nodeW.Stop()
	if w.podW != nil {
		w.podW.Stop()
	}
}

func describe(p *corev1.Pod) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprintf("%s nodeName %q conditions %+v", p.Name, p.Spec.NodeName, p.Status.Conditions)
}

// logLine is a line of a component's log and its number.
type logLine struct {
	n    int
	text string
}

// controllerSaw returns, from node-readiness-controller's log, the updates
// of node's conditions it acted on and the times it skipped the node for a
// bootstrap-only rule already completed there, in order.
func (c *cluster) controllerSaw(node string) (updates, skips []logLine) {
	ofNode := `"node": "` + node + `"`
	for i, l := range c.controller.Lines() {
		switch {
		case !strings.Contains(l, ofNode):
		case strings.Contains(l, "processing node update event") && strings.Contains(l, `"conditionsChanged": true`):
			updates = append(updates, logLine{i, l})
		case strings.Contains(l, "Skipping bootstrap-only rule - already completed"):
			skips = append(skips, logLine{i, l})
		}
	}
	return updates, skips
}

// --- reporting ---------------------------------------------------------------------

// stats is the median and the worst of ds.
func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	median := s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("median %v, worst %v (%d samples)", median.Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
}

// showLogs logs what the controller and the scheduler said about node and
// pod: each step of the chain as the components saw it.
func (c *cluster) showLogs(t *testing.T, node, pod string) {
	t.Helper()
	for _, l := range [][]string{
		c.controller.Lines("Adding taint", `"node": "`+node+`"`),
		c.controller.Lines("Removing taint", `"node": "`+node+`"`),
	} {
		if len(l) > 0 {
			t.Logf("node-readiness-controller: %s", last(l))
		}
	}
	for _, l := range [][]string{
		c.scheduler.Lines("Unable to schedule pod", `pod="`+namespace+"/"+pod+`"`),
		c.scheduler.Lines("Successfully bound pod to node", `pod="`+namespace+"/"+pod+`"`),
	} {
		if len(l) > 0 {
			t.Logf("kube-scheduler: %s", last(l))
		}
	}
}

func last(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}
