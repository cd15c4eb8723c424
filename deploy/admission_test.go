package deploy

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ovsgate/ovsgate/internal/kubetest"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

// The test cluster's two Nodes: ovsgate's pod runs on nodeA.
const (
	nodeA = "node-a"
	nodeB = "node-b"
	// nodeNameExtra is where the API server puts the node of a pod-bound
	// token in the user's extra.
	nodeNameExtra = "authentication.kubernetes.io/node-name"
)

// --- the rendered policy -----------------------------------------------------

// The policy's matchCondition and its conditionType variable, in the form
// kustomization.yaml's replacements fill in.
var (
	policyUserExpr      = regexp.MustCompile(`^request\.userInfo\.username == 'system:serviceaccount:' \+ '([^']*)' \+ ':' \+ '([^']*)'$`)
	policyConditionExpr = regexp.MustCompile(`^'([^']*)'$`)
)

// policyUser is the user name the policy holds, or "" if its matchCondition
// is not of the expected form.
func policyUser(p *admissionv1.ValidatingAdmissionPolicy) string {
	if len(p.Spec.MatchConditions) != 1 {
		return ""
	}
	m := policyUserExpr.FindStringSubmatch(p.Spec.MatchConditions[0].Expression)
	if m == nil {
		return ""
	}
	return "system:serviceaccount:" + m[1] + ":" + m[2]
}

// policyCondition is the condition type the policy lets ovsgate write, or "".
func policyCondition(p *admissionv1.ValidatingAdmissionPolicy) string {
	for _, v := range p.Spec.Variables {
		if v.Name == "conditionType" {
			if m := policyConditionExpr.FindStringSubmatch(v.Expression); m != nil {
				return m[1]
			}
		}
	}
	return ""
}

// checkAdmissionPolicy asserts that the rendered policy holds the rendered
// DaemonSet's ServiceAccount to the condition type the DaemonSet writes.
func checkAdmissionPolicy(t *testing.T, r standaloneRendering) {
	t.Helper()
	p, b := r.policy, r.policyBinding
	pod := r.ds.Spec.Template.Spec
	gc := serveContainer(t, r.ds)

	assert.Empty(t, p.Namespace, "cluster-scoped")
	assert.Empty(t, b.Namespace, "cluster-scoped")
	assert.Equal(t, "system:serviceaccount:"+r.ds.Namespace+":"+pod.ServiceAccountName, policyUser(p),
		"the policy holds the DaemonSet's ServiceAccount: %q", p.Spec.MatchConditions)
	assert.Equal(t, gc.value("node-condition"), policyCondition(p), "the policy allows the condition the DaemonSet writes")

	if assert.NotNil(t, p.Spec.FailurePolicy) {
		assert.Equal(t, admissionv1.Fail, *p.Spec.FailurePolicy, "a request the policy cannot evaluate is refused")
	}
	assert.Nil(t, p.Spec.ParamKind)
	require.NotNil(t, p.Spec.MatchConstraints)
	assert.Equal(t, []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
		Operations: []admissionv1.OperationType{admissionv1.Update},
		Rule: admissionv1.Rule{
			APIGroups: []string{""}, APIVersions: []string{"*"}, Resources: []string{"nodes", "nodes/status"},
		},
	}}}, p.Spec.MatchConstraints.ResourceRules)
	require.NotEmpty(t, p.Spec.Validations)
	for _, v := range p.Spec.Validations {
		if assert.NotNil(t, v.Reason, v.Expression) {
			assert.Equal(t, metav1.StatusReasonForbidden, *v.Reason, "%s: 403, not 422 Invalid", v.Expression)
		}
		assert.True(t, v.Message != "" || v.MessageExpression != "", "%s says why", v.Expression)
	}

	assert.Equal(t, p.Name, b.Spec.PolicyName)
	assert.Equal(t, []admissionv1.ValidationAction{admissionv1.Deny}, b.Spec.ValidationActions)
	assert.Nil(t, b.Spec.ParamRef)
	assert.Nil(t, b.Spec.MatchResources, "every Node")
}

// TestAdmissionPolicyFollowsManifests renders a copy of the standalone
// manifests with another namespace, ServiceAccount and condition type: the
// policy follows each.
func TestAdmissionPolicyFollowsManifests(t *testing.T) {
	dir := t.TempDir()
	entries, err := os.ReadDir(standaloneDir)
	require.NoError(t, err)
	edits := map[string][][2]string{
		"kustomization.yaml":  {{"namespace: kube-system", "namespace: ovs-system"}},
		"serviceaccount.yaml": {{"name: ovsgate", "name: ovs-node"}},
		"rbac.yaml":           {{"kind: ServiceAccount\n    name: ovsgate", "kind: ServiceAccount\n    name: ovs-node"}},
		"daemonset.yaml": {
			{"serviceAccountName: ovsgate", "serviceAccountName: ovs-node"},
			{"value: ovsgate.io/OVSReady", "value: example.com/OVSReady"},
		},
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(standaloneDir, e.Name()))
		require.NoError(t, err)
		s := string(b)
		for _, ed := range edits[e.Name()] {
			require.Equal(t, 1, strings.Count(s, ed[0]), "%s: %q", e.Name(), ed[0])
			s = strings.Replace(s, ed[0], ed[1], 1)
		}
		delete(edits, e.Name())
		require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), []byte(s), 0o600))
	}
	require.Empty(t, edits, "files not found")

	r := renderStandalone(t, dir)
	require.Equal(t, "ovs-system", r.ds.Namespace)
	require.Equal(t, "ovs-node", r.sa.Name)
	assert.Equal(t, "system:serviceaccount:ovs-system:ovs-node", policyUser(r.policy))
	assert.Equal(t, "example.com/OVSReady", policyCondition(r.policy))
	checkAdmissionPolicy(t, r)
}

// cniKustomizationHeader opens the README's example of the policy for ovsgate
// inside a CNI's DaemonSet.
const cniKustomizationHeader = "```yaml\n# kustomization.yaml beside a copy of deploy/kubernetes/standalone/admission-policy.yaml\n"

// TestAdmissionPolicyCNIKustomization renders the README's kustomization for
// ovsgate inside a CNI's DaemonSet: its patches name the agent's
// ServiceAccount and the sidecar's condition type.
func TestAdmissionPolicyCNIKustomization(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, block, ok := strings.Cut(string(readme), cniKustomizationHeader)
	require.True(t, ok, "README.md has no example starting %q", cniKustomizationHeader)
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(block), 0o600))
	policy, err := os.ReadFile(filepath.Join(standaloneDir, "admission-policy.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "admission-policy.yaml"), policy, 0o600))

	objs, err := decodeStrict(kustomize(t, dir))
	require.NoError(t, err)
	require.Len(t, objs, 2, "the policy and its binding")
	p, ok := objs[0].(*admissionv1.ValidatingAdmissionPolicy)
	require.True(t, ok, "%T", objs[0])
	assert.Equal(t, "system:serviceaccount:kube-system:cni-agent", policyUser(p))
	assert.Equal(t, "example.com/OVSReady", policyCondition(p))
	assert.Empty(t, p.Namespace)
}

// --- a cluster with ovsgate's ServiceAccount, two Nodes and pod tokens -------

// admissionCluster is a kube-apiserver with the standalone manifests'
// ServiceAccount and RBAC, nodeA and nodeB, and a Pod of the ServiceAccount
// on nodeA. The policy is applied by enablePolicy.
type admissionCluster struct {
	*kubetest.Cluster
	r        standaloneRendering
	condType string
	saUser   string
	admin    kubernetes.Interface
	podA     kubernetes.Interface // with the token of the Pod on nodeA
	unbound  kubernetes.Interface // a token of the ServiceAccount bound to nothing
	// kubelet is nodeA's kubelet as admission sees it: the user
	// system:node:node-a in the group system:nodes, with the built-in role
	// of kubelets. The test cluster authenticates it by impersonation.
	kubelet kubernetes.Interface
}

func startAdmissionCluster(tb testing.TB, r standaloneRendering) *admissionCluster {
	tb.Helper()
	c := &admissionCluster{
		Cluster:  kubetest.Start(tb),
		r:        r,
		condType: policyCondition(r.policy),
		saUser:   policyUser(r.policy),
	}
	require.NotEmpty(tb, c.condType)
	require.NotEmpty(tb, c.saUser)
	c.admin = c.AdminClient()
	ctx := tb.Context()
	ns := r.sa.Namespace

	// A fresh cluster may not have it yet.
	_, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(tb, err)
	}
	_, err = c.admin.CoreV1().ServiceAccounts(ns).Create(ctx, r.sa, metav1.CreateOptions{})
	require.NoError(tb, err)
	_, err = c.admin.RbacV1().ClusterRoles().Create(ctx, r.role, metav1.CreateOptions{})
	require.NoError(tb, err)
	_, err = c.admin.RbacV1().ClusterRoleBindings().Create(ctx, r.binding, metav1.CreateOptions{})
	require.NoError(tb, err)

	for i, name := range []string{nodeA, nodeB} {
		createNode(tb, c.admin, name, i+1)
	}
	// A Pod object is all a pod-bound token needs: no kubelet runs it.
	pod, err := c.admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ovsgate-" + nodeA, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:           nodeA,
			ServiceAccountName: r.sa.Name,
			Containers:         []corev1.Container{{Name: "ovsgate", Image: gateImage}},
		},
	}, metav1.CreateOptions{})
	require.NoError(tb, err)

	c.UseToken(tb, "pod-"+nodeA, c.ServiceAccountToken(tb, ns, r.sa.Name, pod))
	c.podA = c.Client(tb, "pod-"+nodeA)
	c.UseToken(tb, "unbound", c.ServiceAccountToken(tb, ns, r.sa.Name, nil))
	c.unbound = c.Client(tb, "unbound")

	kubelet := "system:node:" + nodeA
	_, err = c.admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-kubelet-" + nodeA},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: kubelet}},
	}, metav1.CreateOptions{})
	require.NoError(tb, err)
	c.kubelet = c.impersonating(tb, kubelet, "system:nodes", "system:authenticated")

	// The authorizer learns new bindings from a watch.
	waitAllowed(tb, c.podA, "patch", "nodes", "status", nodeA)
	waitAllowed(tb, c.kubelet, "patch", "nodes", "status", nodeA)
	return c
}

// createNode registers a Node with what a kubelet reports, so that there is
// something to forge: labels, annotations, capacity, addresses, Ready.
func createNode(tb testing.TB, admin kubernetes.Interface, name string, i int) {
	tb.Helper()
	ctx := tb.Context()
	n, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux"},
		Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
	}}, metav1.CreateOptions{})
	require.NoError(tb, err)
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	now := metav1.Now()
	n.Status = corev1.NodeStatus{
		Capacity:    resources,
		Allocatable: resources,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.0.0.%d", i)},
			{Type: corev1.NodeHostName, Address: name},
		},
		Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now},
		},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", OperatingSystem: "linux", Architecture: "amd64"},
	}
	_, err = admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	require.NoError(tb, err)
}

// waitAllowed polls a SelfSubjectAccessReview until cs may do verb on the
// Node name.
func waitAllowed(tb testing.TB, cs kubernetes.Interface, verb, res, sub, name string) {
	tb.Helper()
	var last string
	require.True(tb, testutil.Poll(30*time.Second, func() bool {
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(tb.Context(), &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Verb: verb, Resource: res, Subresource: sub, Name: name,
			}},
		}, metav1.CreateOptions{})
		last = fmt.Sprintf("%+v %v", r, err)
		return err == nil && r.Status.Allowed
	}), "may not %s %s/%s %s: %s", verb, res, sub, name, last)
}

// impersonating is an admin client acting as user in groups: what admission
// sees is that user, as if it had signed in itself.
func (c *admissionCluster) impersonating(tb testing.TB, user string, groups ...string) kubernetes.Interface {
	tb.Helper()
	cfg := c.RESTConfig(tb, kubetest.AdminUser)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	hc, err := rest.HTTPClientFor(cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { utilnet.CloseIdleConnectionsFor(hc.Transport) })
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	require.NoError(tb, err)
	return cs
}

// conditionPatch is the strategic-merge patch ovsgate's writer sends: the
// one condition, with its times in whole seconds.
func conditionPatch(typ string, ready bool, now time.Time) []byte {
	status, reason, message := "True", "OVSReady", "OVS is ready"
	if !ready {
		status, reason, message = "False", "VSwitchdNotRunning", "ovs-vswitchd is not running"
	}
	ts := now.UTC().Truncate(time.Second).Format(time.RFC3339)
	return fmt.Appendf(nil, `{"status":{"conditions":[{"type":%q,"status":%q,"reason":%q,"message":%q,"lastHeartbeatTime":%q,"lastTransitionTime":%q}]}}`,
		typ, status, reason, message, ts, ts)
}

// patchNode sends one PATCH, as ovsgate's writer does (client-go's Patch
// sends no GET first), of the Node or, with sub, its subresource.
func patchNode(tb testing.TB, cs kubernetes.Interface, node, sub string, body []byte, dryRun bool) error {
	tb.Helper()
	opts := metav1.PatchOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var subs []string
	if sub != "" {
		subs = []string{sub}
	}
	_, err := cs.CoreV1().Nodes().Patch(tb.Context(), node, types.StrategicMergePatchType, body, opts, subs...)
	return err
}

// enablePolicy applies the rendered policy and its binding, and waits until
// the API server enforces them: admission plugins learn of a new policy from
// a watch, a moment after it is created. The probe is a dry run of a write
// the policy refuses (nodeA's token writing nodeB), which changes nothing
// while the policy is not in force yet.
func (c *admissionCluster) enablePolicy(tb testing.TB) {
	tb.Helper()
	ctx := tb.Context()
	_, err := c.admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, c.r.policy, metav1.CreateOptions{})
	require.NoError(tb, err)
	_, err = c.admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, c.r.policyBinding, metav1.CreateOptions{})
	require.NoError(tb, err)
	start := time.Now()
	probe := conditionPatch(c.condType, true, time.Now())
	var last error
	require.True(tb, testutil.Poll(60*time.Second, func() bool {
		last = patchNode(tb, c.podA, nodeB, "status", probe, true)
		return apierrors.IsForbidden(last) && strings.Contains(last.Error(), c.r.policy.Name)
	}), "the policy is not enforced: a dry run of node-a's token writing node-b answers %v", last)
	tb.Logf("policy enforced %v after its creation", time.Since(start).Round(time.Millisecond))
}

// --- the policy against real requests ----------------------------------------

// nodeRequest is one request in TestAdmissionPolicyAPIServer: who, what,
// and the answer it must get.
type nodeRequest struct {
	name string
	as   string // a key of the test's clients
	node string
	sub  string // "status", or "" for the Node itself
	body string // a strategic-merge patch; "" for a GET
	// denied is a part of the message of the policy's refusal, a 403
	// Forbidden; "" if the policy lets the request pass.
	denied string
	// code is the answer when the policy lets the request pass; reason and
	// message (a part of it) those of another refusal, e.g. RBAC's.
	code    int
	reason  metav1.StatusReason
	message string
	// after, if set, checks the Node once an allowed write is done.
	after func(t *testing.T, n *corev1.Node)
}

// TestAdmissionPolicyAPIServer applies the standalone manifests' policy to a
// real kube-apiserver and sends it the writes a compromised ovsgate pod
// could make, with real pod-bound tokens, then runs ovsgate itself.
func TestAdmissionPolicyAPIServer(t *testing.T) {
	r := renderStandalone(t, standaloneDir)
	gc := serveContainer(t, r.ds)
	ovstest.Require(t)
	c := startAdmissionCluster(t, r)
	ctx := t.Context()
	condType := c.condType
	require.Equal(t, gc.value("node-condition"), condType)

	// The premise: the API server puts the pod's node into its token, and
	// the authenticator into the user's extra. Without it every write of
	// ovsgate would be refused.
	if !t.Run("pod-bound token names the node", func(t *testing.T) {
		u, err := kubetest.WhoAmI(ctx, c.podA)
		require.NoError(t, err)
		require.Equal(t, c.saUser, u.Username)
		require.Equal(t, authnv1.ExtraValue{nodeA}, u.Extra[nodeNameExtra],
			"a token bound to a Pod on %s must carry the node name (ServiceAccountTokenPodNodeInfo); extra: %v", nodeA, u.Extra)
		u, err = kubetest.WhoAmI(ctx, c.unbound)
		require.NoError(t, err)
		require.Equal(t, c.saUser, u.Username)
		require.NotContains(t, u.Extra, nodeNameExtra, "a token bound to nothing names no node")
	}) {
		return
	}

	c.enablePolicy(t)

	clients := map[string]kubernetes.Interface{
		"pod on node-a":  c.podA,
		"unbound token":  c.unbound,
		"admin":          c.admin,
		"kubelet node-a": c.kubelet,
	}

	now := time.Now()
	cond := string(conditionPatch(condType, true, now))
	policyName := r.policy.Name
	conditionIs := func(want corev1.ConditionStatus) func(t *testing.T, n *corev1.Node) {
		return func(t *testing.T, n *corev1.Node) {
			t.Helper()
			i := slices.IndexFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool { return string(c.Type) == condType })
			if assert.GreaterOrEqual(t, i, 0, "%s has no condition %s: %v", n.Name, condType, n.Status.Conditions) {
				assert.Equal(t, want, n.Status.Conditions[i].Status)
			}
		}
	}
	notOwnNode := "may write only its own Node, not node " + nodeB
	notOnly := "may change only the condition " + condType + " of its Node, not "
	noNode := "this token names no Node"
	requests := []nodeRequest{
		{name: "ovsgate's write of its own condition", as: "pod on node-a", node: nodeA, sub: "status", body: cond,
			code: http.StatusOK, after: conditionIs(corev1.ConditionTrue)},
		{name: "the same write again (a heartbeat)", as: "pod on node-a", node: nodeA, sub: "status",
			body: string(conditionPatch(condType, true, now.Add(time.Minute))), code: http.StatusOK, after: conditionIs(corev1.ConditionTrue)},
		{name: "the condition False", as: "pod on node-a", node: nodeA, sub: "status",
			body: string(conditionPatch(condType, false, now.Add(2*time.Minute))), code: http.StatusOK, after: conditionIs(corev1.ConditionFalse)},
		{name: "GET of its own Node", as: "pod on node-a", node: nodeA, code: http.StatusOK},
		{name: "GET of another Node (RBAC: get nodes; admission sees no reads)", as: "pod on node-a", node: nodeB, code: http.StatusOK},

		{name: "the condition on another Node", as: "pod on node-a", node: nodeB, sub: "status", body: cond, denied: notOwnNode},
		{name: "a label through status", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"metadata":{"labels":{"example.com/forged":"true"}}}`, denied: notOnly + "metadata.labels"},
		{name: "an annotation through status", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"metadata":{"annotations":{"example.com/forged":"true"}}}`, denied: notOnly + "metadata.annotations"},
		{name: "an owner reference through status", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Namespace","name":"default","uid":"00000000-0000-0000-0000-000000000001"}]}}`, denied: notOnly + "metadata.ownerReferences"},
		{name: "a finalizer through status", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"metadata":{"finalizers":["example.com/forged"]}}`, denied: notOnly + "metadata.finalizers"},
		{name: "allocatable", as: "pod on node-a", node: nodeA, sub: "status", body: `{"status":{"allocatable":{"cpu":"1000"}}}`, denied: notOnly + "status.allocatable"},
		{name: "capacity", as: "pod on node-a", node: nodeA, sub: "status", body: `{"status":{"capacity":{"pods":"0"}}}`, denied: notOnly + "status.capacity"},
		{name: "an address", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}}`, denied: notOnly + "status.addresses"},
		{name: "nodeInfo", as: "pod on node-a", node: nodeA, sub: "status", body: `{"status":{"nodeInfo":{"kubeletVersion":"v9.9.9"}}}`, denied: notOnly + "status.nodeInfo"},
		{name: "images", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"status":{"images":[{"names":["example.com/forged:1"],"sizeBytes":1}]}}`, denied: notOnly + "status.images"},
		{name: "daemonEndpoints", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"status":{"daemonEndpoints":{"kubeletEndpoint":{"Port":1}}}}`, denied: notOnly + "status.daemonEndpoints"},
		{name: "the Ready condition", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Forged","message":"forged"}]}}`, denied: notOnly + "status.conditions[Ready]"},
		{name: "the Ready condition removed", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"status":{"conditions":[{"type":"Ready","$patch":"delete"}]}}`, denied: notOnly + "status.conditions[Ready]"},
		{name: "a condition of another type added", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"status":{"conditions":[{"type":"NetworkUnavailable","status":"True","reason":"Forged"}]}}`, denied: notOnly + "status.conditions[NetworkUnavailable]"},
		{name: "its own condition and Ready in one patch", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Forged"},{"type":"` + condType + `","status":"True","reason":"OVSReady"}]}}`, denied: notOnly + "status.conditions[Ready]"},
		{name: "the conditions reordered", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"status":{"$setElementOrder/conditions":[{"type":"Ready"},{"type":"MemoryPressure"},{"type":"` + condType + `"}]}}`, denied: notOnly + "the order of status.conditions"},
		{name: "spec through status (the API server ignores it)", as: "pod on node-a", node: nodeA, sub: "status",
			body: `{"spec":{"unschedulable":true}}`, code: http.StatusOK,
			after: func(t *testing.T, n *corev1.Node) { assert.False(t, n.Spec.Unschedulable) }},
		{name: "the Node itself (RBAC)", as: "pod on node-a", node: nodeA, body: `{"metadata":{"labels":{"example.com/forged":"true"}}}`,
			code: http.StatusForbidden, reason: metav1.StatusReasonForbidden, message: `cannot patch resource "nodes"`},
		{name: "a token bound to no Pod", as: "unbound token", node: nodeA, sub: "status", body: cond, denied: noNode},

		{name: "admin: a label through status", as: "admin", node: nodeA, sub: "status",
			body: `{"metadata":{"labels":{"example.com/admin":"true"}}}`, code: http.StatusOK,
			after: func(t *testing.T, n *corev1.Node) { assert.Equal(t, "true", n.Labels["example.com/admin"]) }},
		{name: "admin: Ready of node-b", as: "admin", node: nodeB, sub: "status",
			body: `{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Maintenance"}]}}`, code: http.StatusOK},
		{name: "kubelet: Ready and allocatable of its Node", as: "kubelet node-a", node: nodeA, sub: "status",
			body: `{"status":{"allocatable":{"cpu":"3"},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}]}}`,
			code: http.StatusOK, after: func(t *testing.T, n *corev1.Node) {
				assert.Zero(t, n.Status.Allocatable.Cpu().Cmp(resource.MustParse("3")), "allocatable cpu %s", n.Status.Allocatable.Cpu())
			}},
	}

	for _, rq := range requests {
		t.Run(rq.name, func(t *testing.T) {
			runNodeRequest(t, c, clients[rq.as], rq, policyName)
		})
	}

	// With more RBAC than ovsgate's, as a CNI's ServiceAccount may have when
	// ovsgate runs in its DaemonSet, the policy still holds it to the status.
	t.Run("the Node itself with RBAC for it", func(t *testing.T) {
		_, err := c.admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "test-nodes-patch"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"patch"}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c.admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "test-nodes-patch"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "test-nodes-patch"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: r.sa.Name, Namespace: r.sa.Namespace}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		waitAllowed(t, c.podA, "patch", "nodes", "", nodeA)
		runNodeRequest(t, c, c.podA, nodeRequest{
			name: "the Node itself", as: "pod on node-a, with RBAC for nodes", node: nodeA, body: `{"metadata":{"labels":{"example.com/forged":"true"}}}`,
			denied: "may write only the status subresource of its Node (nodes/status), not the Node itself",
		}, policyName)
		require.NoError(t, c.admin.RbacV1().ClusterRoleBindings().Delete(ctx, "test-nodes-patch", metav1.DeleteOptions{}))
	})

	s := ovstest.Start(t, "br-int")
	kubeconfig := c.Kubeconfig(t, "pod-"+nodeA)
	t.Run("ovsgate writes its own Node's condition", func(t *testing.T) {
		testAdmittedServe(t, c, s, kubeconfig)
	})
	t.Run("ovsgate with the wrong node name", func(t *testing.T) {
		testRefusedServe(t, c, s, kubeconfig)
	})
}

// runNodeRequest sends rq and checks its answer; a refused write must leave
// the Node as it was.
func runNodeRequest(t *testing.T, c *admissionCluster, cs kubernetes.Interface, rq nodeRequest, policyName string) {
	t.Helper()
	require.NotNil(t, cs, "client %q", rq.as)
	ctx := t.Context()
	before, err := c.admin.CoreV1().Nodes().Get(ctx, rq.node, metav1.GetOptions{})
	require.NoError(t, err)

	path := "nodes/" + rq.node
	if rq.sub != "" {
		path += "/" + rq.sub
	}
	verb := "PATCH"
	if rq.body == "" {
		verb = "GET"
		_, err = cs.CoreV1().Nodes().Get(ctx, rq.node, metav1.GetOptions{})
	} else {
		err = patchNode(t, cs, rq.node, rq.sub, []byte(rq.body), false)
	}
	code, reason, message := http.StatusOK, metav1.StatusReason(""), ""
	if err != nil {
		var status apierrors.APIStatus
		require.ErrorAs(t, err, &status, "not an answer of the API server")
		code, reason, message = int(status.Status().Code), status.Status().Reason, status.Status().Message
	}
	t.Logf("%s %s %s as %s: %d %s %s", verb, path, rq.body, rq.as, code, reason, message)

	wantCode, wantReason, wantMessage := rq.code, rq.reason, rq.message
	if rq.denied != "" {
		wantCode, wantReason, wantMessage = http.StatusForbidden, metav1.StatusReasonForbidden, rq.denied
	}
	require.Equal(t, wantCode, code, "%s", message)
	after, err := c.admin.CoreV1().Nodes().Get(ctx, rq.node, metav1.GetOptions{})
	require.NoError(t, err)
	if code != http.StatusOK {
		assert.Equal(t, wantReason, reason)
		assert.Contains(t, message, wantMessage)
		byPolicy := strings.Contains(message, "ValidatingAdmissionPolicy '"+policyName+"'")
		assert.Equal(t, rq.denied != "", byPolicy, "refused by the policy")
		assert.Equal(t, before.ResourceVersion, after.ResourceVersion, "a refused write changed %s", rq.node)
		return
	}
	if rq.after != nil {
		rq.after(t, after)
	}
}

// serveAs runs ovsgate serve with kubeconfig, keeping its condition on node;
// it returns the daemon and its probe and metrics addresses.
func serveAs(t *testing.T, c *admissionCluster, s *ovstest.Sandbox, kubeconfig, node string) (d *serveDaemon, probeAddr, metricsAddr string) {
	t.Helper()
	d = startServe(t, nil, "--node-condition="+c.condType, "--node-name="+node,
		"--kubeconfig="+kubeconfig, "--bridge=br-int", "--ovsdb="+s.Endpoint(), "--ovs-rundir="+s.RunDir(),
		"--health-probe-bind-address="+testutil.AnyPort, "--metrics-bind-address="+testutil.AnyPort,
		"--status-file="+filepath.Join(t.TempDir(), "status.json"))
	probeAddr, metricsAddr = d.Addrs(t)
	return d, probeAddr, metricsAddr
}

// testAdmittedServe runs ovsgate with its pod's token: the policy lets it
// read its Node and write its condition.
func testAdmittedServe(t *testing.T, c *admissionCluster, s *ovstest.Sandbox, kubeconfig string) {
	d, _, metricsAddr := serveAs(t, c, s, kubeconfig, nodeA)
	var got *corev1.NodeCondition
	var err error
	require.True(t, testutil.Poll(30*time.Second, func() bool {
		got, err = nodeCondition(t.Context(), c.admin, nodeA, c.condType)
		return err == nil && got != nil && isTrue(*got)
	}), "condition %s of %s not True: %+v %v", c.condType, nodeA, got, err)
	// The writer read the Node (to keep lastTransitionTime) before it
	// wrote: a failed GET would be a failed write. It counts the write once
	// the answer is in, a moment after the API server shows it.
	var success float64
	require.True(t, testutil.Poll(10*time.Second, func() bool {
		success = scrape(t, metricsAddr, writesMetric, map[string]string{"result": "success"})
		return success >= 1
	}), "successful writes: %v", success)
	assert.Zero(t, scrape(t, metricsAddr, writesMetric, map[string]string{"result": "forbidden"}))
	assert.Equal(t, 1.0, scrape(t, metricsAddr, lastSuccessMetric, nil))
	assert.NoError(t, d.Stop(), "serve exits 0 after SIGTERM: %s", d.Stderr.String())
}

// testRefusedServe runs ovsgate with its pod's token and another node's
// name, as a misconfigured --node-name would: the policy refuses each write,
// the daemon says so once and its probes answer as before.
func testRefusedServe(t *testing.T, c *admissionCluster, s *ovstest.Sandbox, kubeconfig string) {
	before, err := c.admin.CoreV1().Nodes().Get(t.Context(), nodeB, metav1.GetOptions{})
	require.NoError(t, err)
	d, probeAddr, metricsAddr := serveAs(t, c, s, kubeconfig, nodeB)

	about := refusedWrites(t, d, probeAddr, metricsAddr)
	assert.Zero(t, scrape(t, metricsAddr, writesMetric, map[string]string{"result": "error"}), "a 403, not a 422 read as a bad request")
	code, body := testutil.Get("http://" + probeAddr + "/livez")
	assert.Equal(t, http.StatusOK, code, "/livez: %s", body)
	if assert.Len(t, about, 1, "refused writes, one line:\n%s", strings.Join(about, "\n")) {
		l := about[0]
		t.Logf("ovsgate's log: %s", l)
		for _, want := range []string{
			"Cannot write node condition", `result="forbidden"`, `node="` + nodeB + `"`,
			"ValidatingAdmissionPolicy '" + c.r.policy.Name + "'", "may write only its own Node, not node " + nodeB,
		} {
			assert.Contains(t, l, want)
		}
	}
	after, err := c.admin.CoreV1().Nodes().Get(t.Context(), nodeB, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, before.ResourceVersion, after.ResourceVersion, "%s unchanged", nodeB)
	assert.NoError(t, d.Stop())
}

// --- what the policy costs ---------------------------------------------------

// BenchmarkAdmissionPolicy measures the API server's latency of ovsgate's
// condition write, without the policy and with it: each iteration is the
// PATCH of nodes/status the writer sends, with its pod's token, flipping the
// condition so that each is a real write to etcd. The kubelet's writes of
// its Ready condition show what the policy costs those it lets pass on its
// matchConditions. Run it with -benchtime=200x for 200 writes each:
//
//	go test -run '^$' -bench BenchmarkAdmissionPolicy -benchtime=200x ./deploy/
//
// p50-ms and p99-ms are the client's view; server-ms the API server's mean
// (apiserver_request_duration_seconds), plugin-us the mean time of its
// ValidatingAdmissionPolicy plugin per UPDATE
// (apiserver_admission_controller_admission_duration_seconds; it counts the
// API server's own few UPDATEs, of its lease, too).
func BenchmarkAdmissionPolicy(b *testing.B) {
	r := renderStandalone(b, standaloneDir)
	c := startAdmissionCluster(b, r)
	writers := []struct {
		name  string
		cs    kubernetes.Interface
		patch func(flip bool, now time.Time) []byte
	}{
		{"ovsgate", c.podA, func(flip bool, now time.Time) []byte { return conditionPatch(c.condType, flip, now) }},
		{"kubelet", c.kubelet, kubeletPatch},
	}
	// Connections, caches and the first etcd writes before any figure.
	for i := range 50 {
		for _, w := range writers {
			require.NoError(b, patchNode(b, w.cs, nodeA, "status", w.patch(i%2 == 0, time.Now()), false))
		}
	}
	for _, policy := range []string{"absent", "enforced"} {
		if policy == "enforced" {
			c.enablePolicy(b)
		}
		for _, w := range writers {
			b.Run("policy="+policy+"/"+w.name, func(b *testing.B) {
				benchmarkStatusWrite(b, c, w.cs, w.patch)
			})
		}
	}
}

// kubeletPatch is a kubelet's update of its Ready condition.
func kubeletPatch(flip bool, now time.Time) []byte {
	message := "kubelet is posting ready status"
	if flip {
		message += "."
	}
	ts := now.UTC().Truncate(time.Second).Format(time.RFC3339)
	return fmt.Appendf(nil, `{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":%q,"lastHeartbeatTime":%q}]}}`,
		message, ts)
}

func benchmarkStatusWrite(b *testing.B, c *admissionCluster, cs kubernetes.Interface, patch func(bool, time.Time) []byte) {
	before := apiServerMetrics(b, c)
	var lat []time.Duration
	flip := false
	for b.Loop() {
		flip = !flip
		body := patch(flip, time.Now())
		start := time.Now()
		err := patchNode(b, cs, nodeA, "status", body, false)
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatalf("write %d: %v", len(lat), err)
		}
	}
	b.StopTimer()
	after := apiServerMetrics(b, c)
	writes := after.patchCount - before.patchCount
	checks := after.pluginCount - before.pluginCount
	if writes < float64(len(lat)) || checks < float64(len(lat)) {
		b.Fatalf("the API server counted %v PATCHes and %v UPDATEs through ValidatingAdmissionPolicy for %d writes", writes, checks, len(lat))
	}
	b.ReportMetric(ms(quantile(lat, 0.5)), "p50-ms")
	b.ReportMetric(ms(quantile(lat, 0.99)), "p99-ms")
	b.ReportMetric((after.patchSum-before.patchSum)/writes*1e3, "server-ms")
	b.ReportMetric((after.pluginSum-before.pluginSum)/checks*1e6, "plugin-us")
}

// quantile is the q-quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// apiServerLatency is what the API server's own histograms hold about the
// PATCHes of nodes/status and its admission policy plugin.
type apiServerLatency struct {
	patchSum, patchCount   float64
	pluginSum, pluginCount float64
}

func apiServerMetrics(tb testing.TB, c *admissionCluster) apiServerLatency {
	tb.Helper()
	raw, err := c.admin.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(tb.Context())
	require.NoError(tb, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	require.NoError(tb, err)
	var l apiServerLatency
	sum := func(family string, match map[string]string) (s, n float64) {
		for _, m := range families[family].GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			ok := true
			for k, v := range match {
				ok = ok && labels[k] == v
			}
			if ok && m.GetHistogram() != nil {
				s += m.GetHistogram().GetSampleSum()
				n += float64(m.GetHistogram().GetSampleCount())
			}
		}
		return s, n
	}
	l.patchSum, l.patchCount = sum("apiserver_request_duration_seconds",
		map[string]string{"verb": "PATCH", "resource": "nodes", "subresource": "status"})
	l.pluginSum, l.pluginCount = sum("apiserver_admission_controller_admission_duration_seconds",
		map[string]string{"name": "ValidatingAdmissionPolicy", "type": "validate", "operation": "UPDATE", "rejected": "false"})
	return l
}
