package deploy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/ovsgate/ovsgate/internal/kubetest"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/probe"
)

const (
	standaloneDir    = "kubernetes/standalone"
	nodeReadinessDir = "kubernetes/overlays/node-readiness"
	// The same rule with enforcementMode continuous, under a name of its own.
	nodeReadinessContinuousDir = "kubernetes/overlays/node-readiness-continuous"
	// The controller's CRD lives beside the repository, as test data.
	nodeReadinessCRD = "../../shared/fixtures/node-readiness-controller/readiness.node.x-k8s.io_nodereadinessrules.yaml"

	nodeReadinessRuleAPIVersion = "readiness.node.x-k8s.io/v1alpha1"
	readinessTaintPrefix        = "readiness.k8s.io/"

	standaloneNamespace = "kube-system"
	ovsReadyCondition   = "ovsgate.io/OVSReady"
	ovsRunDir           = "/var/run/openvswitch"
)

// nodeReadinessRule is a NodeReadinessRule with the fields its CRD
// (v1alpha1) declares for a manifest, so that a strict decoding rejects
// anything else.
type nodeReadinessRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              nodeReadinessRuleSpec `json:"spec"`
}

type nodeReadinessRuleSpec struct {
	Conditions      []conditionRequirement `json:"conditions"`
	EnforcementMode string                 `json:"enforcementMode"`
	Taint           readinessTaint         `json:"taint"`
	NodeSelector    *metav1.LabelSelector  `json:"nodeSelector"`
	DryRun          bool                   `json:"dryRun,omitempty"`
}

type conditionRequirement struct {
	Type           string `json:"type"`
	RequiredStatus string `json:"requiredStatus"`
	DefaultStatus  string `json:"defaultStatus,omitempty"`
}

type readinessTaint struct {
	Key       string       `json:"key"`
	Value     string       `json:"value,omitempty"`
	Effect    string       `json:"effect"`
	TimeAdded *metav1.Time `json:"timeAdded,omitempty"`
}

// --- rendering ---------------------------------------------------------------

// standaloneRendering is the standalone base, or an overlay of it, rendered
// and decoded strictly.
type standaloneRendering struct {
	raw     []byte
	ds      *appsv1.DaemonSet
	sa      *corev1.ServiceAccount
	role    *rbacv1.ClusterRole
	binding *rbacv1.ClusterRoleBinding
	rules   []*nodeReadinessRule
	// The admission policy that holds the ServiceAccount to its own Node's
	// condition, and its binding (admission_test.go).
	policy        *admissionv1.ValidatingAdmissionPolicy
	policyBinding *admissionv1.ValidatingAdmissionPolicyBinding
}

func renderStandalone(t testing.TB, dir string) standaloneRendering {
	t.Helper()
	r := standaloneRendering{raw: kustomize(t, dir)}
	objs, err := decodeStrict(r.raw)
	require.NoError(t, err, dir)
	one := func(have bool, kind string) {
		t.Helper()
		require.False(t, have, "%s renders more than one %s", dir, kind)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.DaemonSet:
			one(r.ds != nil, "DaemonSet")
			r.ds = o
		case *corev1.ServiceAccount:
			one(r.sa != nil, "ServiceAccount")
			r.sa = o
		case *rbacv1.ClusterRole:
			one(r.role != nil, "ClusterRole")
			r.role = o
		case *rbacv1.ClusterRoleBinding:
			one(r.binding != nil, "ClusterRoleBinding")
			r.binding = o
		case *nodeReadinessRule:
			r.rules = append(r.rules, o)
		case *admissionv1.ValidatingAdmissionPolicy:
			one(r.policy != nil, "ValidatingAdmissionPolicy")
			r.policy = o
		case *admissionv1.ValidatingAdmissionPolicyBinding:
			one(r.policyBinding != nil, "ValidatingAdmissionPolicyBinding")
			r.policyBinding = o
		default:
			t.Fatalf("%s renders an unexpected %T", dir, o)
		}
	}
	require.NotNil(t, r.ds, "%s: no DaemonSet", dir)
	require.NotNil(t, r.sa, "%s: no ServiceAccount", dir)
	require.NotNil(t, r.role, "%s: no ClusterRole", dir)
	require.NotNil(t, r.binding, "%s: no ClusterRoleBinding", dir)
	require.NotNil(t, r.policy, "%s: no ValidatingAdmissionPolicy", dir)
	require.NotNil(t, r.policyBinding, "%s: no ValidatingAdmissionPolicyBinding", dir)
	return r
}

// serveContainer is the one ovsgate container of the standalone DaemonSet.
func serveContainer(t *testing.T, ds *appsv1.DaemonSet) gateContainer {
	t.Helper()
	gcs := gateContainers(t, ds.Spec.Template.Spec)
	require.Len(t, gcs, 1, "one ovsgate container")
	gc := gcs[0]
	require.Equal(t, "serve", gc.command)
	require.False(t, gc.init, "serve is the pod's main container")
	return gc
}

func envVar(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func TestStandalone(t *testing.T) {
	r := renderStandalone(t, standaloneDir)
	assert.Empty(t, r.rules, "the base holds no NodeReadinessRule: the controller is optional")
	checkStandalone(t, r)
}

func TestNodeReadinessOverlay(t *testing.T) {
	r := renderStandalone(t, nodeReadinessDir)
	base := renderStandalone(t, standaloneDir)
	t.Run("standalone unchanged", func(t *testing.T) {
		assert.Equal(t, base.ds, r.ds)
		assert.Equal(t, base.sa, r.sa)
		assert.Equal(t, base.role, r.role)
		assert.Equal(t, base.binding, r.binding)
		assert.Equal(t, base.policy, r.policy)
		assert.Equal(t, base.policyBinding, r.policyBinding)
	})
	checkStandalone(t, r)

	require.Len(t, r.rules, 1, "one NodeReadinessRule")
	rule := r.rules[0]
	gc := serveContainer(t, r.ds)
	t.Run("rule", func(t *testing.T) {
		assert.Empty(t, rule.Namespace, "NodeReadinessRule is cluster-scoped")
		require.Len(t, rule.Spec.Conditions, 1)
		c := rule.Spec.Conditions[0]
		assert.Equal(t, gc.value("node-condition"), c.Type, "the rule waits for the condition the DaemonSet writes")
		assert.Equal(t, ovsReadyCondition, c.Type)
		assert.Equal(t, string(corev1.ConditionTrue), c.RequiredStatus)
		assert.Empty(t, c.DefaultStatus, "not allowed with bootstrap-only")
		assert.Equal(t, "bootstrap-only", rule.Spec.EnforcementMode,
			"a rollout of ovsgate or a restart of OVS must not taint running nodes")
		assert.False(t, rule.Spec.DryRun)

		assert.True(t, strings.HasPrefix(rule.Spec.Taint.Key, readinessTaintPrefix), "taint key %q", rule.Spec.Taint.Key)
		assert.Equal(t, readinessTaintPrefix+"NetworkReady", rule.Spec.Taint.Key)
		assert.Equal(t, "pending", rule.Spec.Taint.Value)
		assert.Equal(t, string(corev1.TaintEffectNoSchedule), rule.Spec.Taint.Effect, "NoSchedule never evicts")
		assert.Nil(t, rule.Spec.Taint.TimeAdded)

		require.NotNil(t, rule.Spec.NodeSelector, "nodeSelector is required")
		sel, err := metav1.LabelSelectorAsSelector(rule.Spec.NodeSelector)
		require.NoError(t, err)
		assert.True(t, sel.Empty(), "every node: %s", sel)
	})
	t.Run("ovsgate runs on a tainted node", func(t *testing.T) {
		taint := corev1.Taint{Key: rule.Spec.Taint.Key, Value: rule.Spec.Taint.Value, Effect: corev1.TaintEffect(rule.Spec.Taint.Effect)}
		assert.True(t, slices.ContainsFunc(r.ds.Spec.Template.Spec.Tolerations, func(tol corev1.Toleration) bool {
			return tol.ToleratesTaint(logr.Discard(), &taint, false)
		}), "the DaemonSet does not tolerate %s", taint.ToString())
	})
}

// The continuous overlay is the node-readiness overlay with one change to
// its rule: enforcementMode, and with it the name (the field is immutable,
// so switching modes is a new rule).
func TestNodeReadinessContinuousOverlay(t *testing.T) {
	r := renderStandalone(t, nodeReadinessContinuousDir)
	bootstrap := renderStandalone(t, nodeReadinessDir)
	assert.Equal(t, bootstrap.ds, r.ds)
	assert.Equal(t, bootstrap.sa, r.sa)
	assert.Equal(t, bootstrap.role, r.role)
	assert.Equal(t, bootstrap.binding, r.binding)
	require.Len(t, r.rules, 1, "one NodeReadinessRule")
	require.Len(t, bootstrap.rules, 1)
	rule, want := r.rules[0], *bootstrap.rules[0] // a copy: only strings change below
	assert.Equal(t, "continuous", rule.Spec.EnforcementMode)
	assert.NotEqual(t, want.Name, rule.Name, "a rule of its own: enforcementMode is immutable")
	want.Name, want.Spec.EnforcementMode = rule.Name, rule.Spec.EnforcementMode
	assert.Equal(t, &want, rule, "the bootstrap-only rule but for its mode and name")
}

// checkStandalone asserts what holds for the standalone base and every
// overlay of it.
func checkStandalone(t *testing.T, r standaloneRendering) {
	t.Helper()
	ds, pod := r.ds, r.ds.Spec.Template.Spec
	gc := serveContainer(t, ds)
	c := gc.Container
	statusDir := filepath.Dir(probe.DefaultStatusFile)

	base := renderDaemonSet(t, baseDir)
	var baseServe *gateContainer
	for _, b := range gateContainers(t, base.Spec.Template.Spec) {
		if b.command == "serve" {
			baseServe = &b
		}
	}
	require.NotNil(t, baseServe, "the base's serve container")

	t.Run("namespace", func(t *testing.T) {
		assert.Equal(t, standaloneNamespace, ds.Namespace)
		assert.Equal(t, ds.Namespace, r.sa.Namespace)
		assert.Empty(t, r.role.Namespace, "cluster-scoped")
		assert.Empty(t, r.binding.Namespace, "cluster-scoped")
	})

	t.Run("pod", func(t *testing.T) {
		assert.Equal(t, "ovsgate", ds.Name)
		assert.True(t, pod.HostNetwork, "hostNetwork: the pod must start while the CNI is not ready")
		assert.False(t, pod.HostPID)
		assert.Equal(t, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, pod.Tolerations)
		assert.Equal(t, "system-node-critical", pod.PriorityClassName)
		if assert.NotNil(t, pod.AutomountServiceAccountToken) {
			assert.True(t, *pod.AutomountServiceAccountToken, "ovsgate writes the node condition through the API server")
		}
		assert.Equal(t, r.sa.Name, pod.ServiceAccountName)
		assert.Empty(t, pod.InitContainers)
		assert.Len(t, pod.Containers, 1)
		require.NotNil(t, ds.Spec.Selector)
		for k, v := range ds.Spec.Selector.MatchLabels {
			assert.Equal(t, v, ds.Spec.Template.Labels[k], "selector label %s", k)
		}
	})

	t.Run("hardening as in the base", func(t *testing.T) {
		assert.Equal(t, base.Spec.Template.Spec.SecurityContext, pod.SecurityContext)
		assert.Equal(t, baseServe.SecurityContext, c.SecurityContext)
		assert.True(t, apiequality.Semantic.DeepEqual(baseServe.Resources, c.Resources),
			"resources %v, the base's %v", c.Resources, baseServe.Resources)
		sc := c.SecurityContext
		require.NotNil(t, sc)
		if assert.NotNil(t, sc.RunAsUser) {
			assert.Equal(t, int64(0), *sc.RunAsUser, "the OVS sockets are root-owned")
		}
		if assert.NotNil(t, sc.ReadOnlyRootFilesystem) {
			assert.True(t, *sc.ReadOnlyRootFilesystem)
		}
		if assert.NotNil(t, sc.AllowPrivilegeEscalation) {
			assert.False(t, *sc.AllowPrivilegeEscalation)
		}
		if assert.NotNil(t, sc.Capabilities) {
			assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
			assert.Empty(t, sc.Capabilities.Add)
		}
	})

	t.Run("image as in the base", func(t *testing.T) {
		assert.Equal(t, baseServe.Image, c.Image, "the base's images: entry pins both the same way")
		assert.Contains(t, c.Image, ":", "kustomize images: pins a tag")
	})

	t.Run("accepted by ovsgate", func(t *testing.T) {
		checkAccepted(t, gc.gateInvocation)
		checkServeEnv(t, gc)
	})

	t.Run("node condition", func(t *testing.T) {
		assert.Equal(t, ovsReadyCondition, gc.value("node-condition"))
		e, ok := envVar(c, envPrefix+"NODE_NAME")
		require.True(t, ok, "OVSGATE_NODE_NAME")
		assert.True(t, nodeNameFromPod(e), "OVSGATE_NODE_NAME from the downward API's spec.nodeName: %+v", e)
		assert.Empty(t, gc.value("kubeconfig"), "in a pod: the in-cluster config")
		assert.NotContains(t, c.Args, "--node-condition-heartbeat", "the default heartbeat")
	})

	probeAddr := gc.value("health-probe-bind-address")
	metricsAddr := gc.value("metrics-bind-address")
	t.Run("probes", func(t *testing.T) {
		host, _, err := net.SplitHostPort(probeAddr)
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1", host, "the probe listener serves /status: loopback only")
		assert.Equal(t, port(t, probeAddr), namedPort(t, c, "probe"))
		assert.Nil(t, c.StartupProbe, "nothing restarts the reporter while OVS is slow to start")
		for name, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
			require.NotNil(t, p, name)
			require.NotNil(t, p.HTTPGet, "%s is an httpGet", name)
			assert.Equal(t, host, p.HTTPGet.Host, "%s: kubelet probes a host-network pod from the host, at the bound address", name)
			assert.Equal(t, port(t, probeAddr), containerPort(t, c, p.HTTPGet.Port), name)
			assert.Equal(t, "/livez", p.HTTPGet.Path,
				"%s: the pod's readiness is the daemon's health; with /readyz a node with a broken OVS stalls every rollout", name)
		}
		checkServed(t, "/readyz", c.LivenessProbe.HTTPGet.Path, ds.Spec.Template.Annotations["prometheus.io/path"])
	})

	t.Run("metrics", func(t *testing.T) {
		host, _, err := net.SplitHostPort(metricsAddr)
		require.NoError(t, err)
		assert.Empty(t, host, "every interface, for Prometheus")
		ann := ds.Spec.Template.Annotations
		assert.Equal(t, "true", ann["prometheus.io/scrape"])
		assert.Equal(t, strconv.Itoa(int(port(t, metricsAddr))), ann["prometheus.io/port"])
		assert.Equal(t, "/metrics", ann["prometheus.io/path"])
		assert.Equal(t, port(t, metricsAddr), namedPort(t, c, "metrics"))
	})

	t.Run("mounts", func(t *testing.T) {
		assert.Equal(t, ovsRunDir, gc.value("ovs-rundir"))
		assert.Equal(t, "unix:"+ovsRunDir+"/db.sock", gc.value("ovsdb"))
		assert.Equal(t, probe.DefaultStatusFile, gc.value("status-file"))

		want := map[string]bool{ovsRunDir: true, statusDir: false} // mount path: read-only
		require.Len(t, c.VolumeMounts, len(want), "only the OVS run directory and the status directory")
		require.Len(t, pod.Volumes, len(want))
		for _, m := range c.VolumeMounts {
			ro, ok := want[m.MountPath]
			if !assert.True(t, ok, "unexpected mount %s", m.MountPath) {
				continue
			}
			assert.Equal(t, ro, m.ReadOnly, "%s read-only", m.MountPath)
			assert.Empty(t, m.SubPath, "%s: a directory mount", m.MountPath)
			v, ok := volume(pod, m.Name)
			require.True(t, ok, "volume %s", m.Name)
			if assert.NotNil(t, v.HostPath, "%s is a hostPath", m.Name) {
				assert.Equal(t, m.MountPath, v.HostPath.Path)
				if assert.NotNil(t, v.HostPath.Type) {
					assert.Equal(t, corev1.HostPathDirectoryOrCreate, *v.HostPath.Type)
				}
			}
		}
	})

	t.Run("admission policy", func(t *testing.T) { checkAdmissionPolicy(t, r) })

	t.Run("rbac", func(t *testing.T) {
		assert.ElementsMatch(t, []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
		}, r.role.Rules, "exactly nodes get and nodes/status patch")
		assert.Nil(t, r.role.AggregationRule)
		assert.Equal(t, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: r.role.Name}, r.binding.RoleRef)
		assert.Equal(t, []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: pod.ServiceAccountName, Namespace: ds.Namespace}},
			r.binding.Subjects, "bound to the DaemonSet's ServiceAccount in its namespace")
	})
}

// checkServeEnv runs `ovsgate serve` with the container's environment:
// check, which checkAccepted runs, ignores the variables of serve's own
// flags. Only the paths on this machine (and the API server, which a pod
// finds by itself) are replaced, on the command line, which wins. The
// listeners keep the manifest's hosts with port 0, so that the kernel picks
// free ports here and the manifest's own ports (those of make run, maybe
// taken) stay out of the test.
func checkServeEnv(t *testing.T, gc gateContainer) {
	t.Helper()
	env := gc.envList()
	var args []string
	for _, flag := range []string{"health-probe-bind-address", "metrics-bind-address"} {
		host, _, err := net.SplitHostPort(gc.value(flag))
		require.NoError(t, err, "--%s of the manifest", flag)
		anyPort := net.JoinHostPort(host, "0")
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
		i := slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
		if i >= 0 {
			env[i] = name + "=" + anyPort
		} else {
			args = append(args, "--"+flag+"="+anyPort)
		}
	}
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	// An API server that refuses connections: the writer only retries.
	require.NoError(t, os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600))
	d := startServe(t, env, append(args, "--kubeconfig="+kc, "--status-file="+filepath.Join(dir, "status.json"),
		"--ovsdb=unix:"+filepath.Join(dir, "db.sock"), "--ovs-rundir="+dir)...)
	probeAddr, metricsAddr := d.Addrs(t)
	for flag, addr := range map[string]string{"health-probe-bind-address": probeAddr, "metrics-bind-address": metricsAddr} {
		want, _, err := net.SplitHostPort(gc.value(flag))
		require.NoError(t, err)
		host, port, err := net.SplitHostPort(addr)
		require.NoError(t, err, "--%s: serve listens on %q", flag, addr)
		if want == "" {
			want = "::" // every interface, as Go names it
		}
		assert.Equal(t, want, host, "--%s: serve listens on %s", flag, addr)
		assert.NotEqual(t, "0", port, "--%s: serve listens on %s", flag, addr)
	}
	require.True(t, d.Running(), "serve exited: %s", d.Stderr.String())
	log := d.Stderr.String()
	for _, kv := range []string{
		`nodeCondition="` + ovsReadyCondition + `"`,
		`node="` + exampleNodeName + `"`,
	} {
		assert.Contains(t, log, kv)
	}
	assert.NoError(t, d.Stop(), "serve exits 0 after SIGTERM: %s", d.Stderr.String())
}

// --- a running serve ---------------------------------------------------------

// serveDaemon is an `ovsgate serve` the test started.
type serveDaemon struct{ *testutil.Daemon }

// startServe runs `ovsgate serve args...` with env as its whole environment
// besides PATH; the test's cleanup stops it.
func startServe(t *testing.T, env []string, args ...string) *serveDaemon {
	t.Helper()
	return &serveDaemon{testutil.StartOvsgate(t, ovsgateBin, env, append([]string{"serve"}, args...)...)}
}

// scrape sums the samples of the metric family name whose labels include
// match, as the daemon's /metrics shows them now.
func scrape(t *testing.T, addr, name string, match map[string]string) float64 {
	t.Helper()
	v, ok := testutil.Metric(t, addr, name, match)
	require.True(t, ok, "no metric %s", name)
	return v
}

const (
	writesMetric      = "ovsgate_node_condition_writes_total"
	lastSuccessMetric = "ovsgate_node_condition_last_write_success"
)

// --- against a real kube-apiserver -------------------------------------------

// cluster is the one kube-apiserver of TestStandaloneAPIServer, with the
// clients the test uses.
type cluster struct {
	*kubetest.Cluster
	admin  kubernetes.Interface
	dyn    dynamic.Interface
	disc   discovery.DiscoveryInterface
	mapper meta.RESTMapper
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{Cluster: kubetest.Start(t)}
	c.admin = c.AdminClient()
	cfg := c.RESTConfig(t, kubetest.AdminUser)
	hc, err := rest.HTTPClientFor(cfg)
	require.NoError(t, err)
	// Runs before the cluster's own cleanup: no pooled connection outlives
	// the test.
	t.Cleanup(func() { utilnet.CloseIdleConnectionsFor(hc.Transport) })
	c.dyn, err = dynamic.NewForConfigAndClient(cfg, hc)
	require.NoError(t, err)
	c.disc, err = discovery.NewDiscoveryClientForConfigAndClient(cfg, hc)
	require.NoError(t, err)
	return c
}

// mapping finds the resource of a kind through the API server's discovery,
// asking again while a new CRD's kind is not served yet.
func (c *cluster) mapping(t *testing.T, gvk schema.GroupVersionKind) *meta.RESTMapping {
	t.Helper()
	var m *meta.RESTMapping
	var err error
	ok := testutil.Poll(30*time.Second, func() bool {
		if c.mapper != nil {
			if m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
				return true
			}
		}
		groups, gerr := restmapper.GetAPIGroupResources(c.disc)
		if gerr != nil {
			err = gerr
			return false
		}
		c.mapper = restmapper.NewDiscoveryRESTMapper(groups)
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		return err == nil
	})
	require.True(t, ok, "no resource for %s: %v", gvk, err)
	return m
}

// resource is the client for obj's resource, in its namespace if it has one;
// a cluster-scoped object must come without a namespace.
func (c *cluster) resource(t *testing.T, obj *unstructured.Unstructured) dynamic.ResourceInterface {
	t.Helper()
	m := c.mapping(t, obj.GroupVersionKind())
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		require.NotEmpty(t, obj.GetNamespace(), "%s %s has no namespace", obj.GetKind(), obj.GetName())
		return c.dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
	}
	require.Empty(t, obj.GetNamespace(), "%s %s is cluster-scoped", obj.GetKind(), obj.GetName())
	return c.dyn.Resource(m.Resource)
}

// apply applies obj server-side, as `kubectl apply --server-side` does, with
// strict field validation.
func (c *cluster) apply(t *testing.T, obj *unstructured.Unstructured) error {
	t.Helper()
	body, err := obj.MarshalJSON()
	require.NoError(t, err)
	force := true
	_, err = c.resource(t, obj).Patch(t.Context(), obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		FieldManager: "ovsgate-deploy-test", Force: &force, FieldValidation: metav1.FieldValidationStrict,
	})
	return err
}

// unstructuredDocs splits a rendering into objects as an API client sends them.
func unstructuredDocs(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for i, doc := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		require.NoError(t, err, "document %d", i)
		if string(j) == "null" {
			continue // comments only, as Helm leaves for a template that renders nothing
		}
		u := &unstructured.Unstructured{}
		require.NoError(t, u.UnmarshalJSON(j), "document %d", i)
		objs = append(objs, u)
	}
	require.NotEmpty(t, objs)
	return objs
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// TestStandaloneAPIServer shows a real kube-apiserver the manifests, then
// runs the real daemon against it and a real OVS with the shipped RBAC. One
// cluster for all of it: each costs seconds and hundreds of MB.
func TestStandaloneAPIServer(t *testing.T) {
	crdYAML, err := os.ReadFile(nodeReadinessCRD)
	if err != nil {
		testutil.SkipUnlessCI(t, "the NodeReadinessRule CRD fixture: %v", err)
	}
	standalone := renderStandalone(t, standaloneDir)
	overlay := kustomize(t, nodeReadinessDir)
	continuous := kustomize(t, nodeReadinessContinuousDir)
	ovstest.Require(t)
	c := startCluster(t)
	ctx := t.Context()

	if !t.Run("apply", func(t *testing.T) { testApply(t, c, crdYAML, standalone.raw, overlay, continuous) }) {
		return
	}
	if !t.Run("service account may write the condition", func(t *testing.T) { testServiceAccountRBAC(t, c, standalone) }) {
		return
	}

	// The daemon runs as OVSGateUser, bound to the rendered ClusterRole.
	_, err = c.admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "ovsgate-test-user"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: standalone.role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: kubetest.OVSGateUser}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	user := c.Client(t, kubetest.OVSGateUser)
	var last string
	require.True(t, testutil.Poll(30*time.Second, func() bool {
		r, err := user.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Verb: "patch", Resource: "nodes", Subresource: "status", Name: exampleNodeName,
			}},
		}, metav1.CreateOptions{})
		last = fmt.Sprintf("%+v %v", r, err)
		return err == nil && r.Status.Allowed
	}), "%s may not patch nodes/status: %s", kubetest.OVSGateUser, last)

	_, err = c.admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: exampleNodeName}}, metav1.CreateOptions{})
	require.NoError(t, err)
	s := ovstest.Start(t, "br-int")
	gc := serveContainer(t, standalone.ds)
	condType := gc.value("node-condition")
	memLimit := gc.Resources.Limits.Memory().Value()

	if !t.Run("condition follows OVS", func(t *testing.T) { testConditionFollowsOVS(t, c, s, condType, memLimit) }) {
		return
	}
	t.Run("forbidden", func(t *testing.T) { testForbidden(t, c, s, condType) })
}

// testApply applies the CRD, then every object of the renderings, and
// shows that the API server validates a rule.
func testApply(t *testing.T, c *cluster, crdYAML, standalone, overlay, continuous []byte) {
	ctx := t.Context()
	crds := unstructuredDocs(t, crdYAML)
	require.Len(t, crds, 1)
	crd := crds[0]
	require.NoError(t, c.apply(t, crd), "the CRD")
	crdClient := c.resource(t, crd)
	var last *unstructured.Unstructured
	require.True(t, testutil.Poll(30*time.Second, func() bool {
		var err error
		last, err = crdClient.Get(ctx, crd.GetName(), metav1.GetOptions{})
		return err == nil && established(last)
	}), "CRD %s not Established: %v", crd.GetName(), last)

	// A fresh cluster may not have it yet.
	_, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: standaloneNamespace}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}

	rules := map[string]*unstructured.Unstructured{}
	for dir, data := range map[string][]byte{standaloneDir: standalone, nodeReadinessDir: overlay, nodeReadinessContinuousDir: continuous} {
		for _, obj := range unstructuredDocs(t, data) {
			assert.NoError(t, c.apply(t, obj), "%s: %s %s", dir, obj.GetKind(), obj.GetName())
			if obj.GetKind() == "NodeReadinessRule" {
				rules[dir] = obj
			}
		}
	}
	require.Len(t, rules, 2, "a NodeReadinessRule in each overlay")
	for dir, r := range rules {
		stored, err := c.resource(t, r).Get(ctx, r.GetName(), metav1.GetOptions{})
		require.NoError(t, err, dir)
		assert.Equal(t, r.Object["spec"], stored.Object["spec"], "%s: the rule as stored", dir)
	}
	rule := rules[nodeReadinessDir]

	t.Run("enforcementMode is immutable", func(t *testing.T) {
		changed := rule.DeepCopy()
		changed.Object["spec"].(map[string]any)["enforcementMode"] = "continuous"
		err := c.apply(t, changed)
		require.Error(t, err, "the API server let a rule change its mode")
		assert.True(t, apierrors.IsInvalid(err), "%v", err)
		assert.ErrorContains(t, err, "enforcementMode is immutable")
	})

	t.Run("the API server validates rules", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			edit    func(spec map[string]any)
			wantErr string
		}{
			{"taint key outside readiness.k8s.io/", func(s map[string]any) {
				s["taint"].(map[string]any)["key"] = "ovsgate.io/NetworkReady"
			}, "taint key must start with 'readiness.k8s.io/'"},
			{"unknown effect", func(s map[string]any) {
				s["taint"].(map[string]any)["effect"] = "NoWay"
			}, "taint effect must be one of"},
			{"unknown enforcement mode", func(s map[string]any) { s["enforcementMode"] = "always" }, "enforcementMode"},
			{"no node selector", func(s map[string]any) { delete(s, "nodeSelector") }, "nodeSelector"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bad := rule.DeepCopy()
				bad.SetName("ovsgate-invalid")
				tc.edit(bad.Object["spec"].(map[string]any))
				_, err := c.resource(t, bad).Create(ctx, bad, metav1.CreateOptions{})
				require.Error(t, err, "the API server accepted an invalid rule")
				assert.True(t, apierrors.IsInvalid(err), "%v", err)
				assert.ErrorContains(t, err, tc.wantErr)
			})
		}
	})
}

// testServiceAccountRBAC asks the API server what the rendered binding grants
// the DaemonSet's ServiceAccount: the condition's two permissions, and no more.
func testServiceAccountRBAC(t *testing.T, c *cluster, r standaloneRendering) {
	ns, sa := r.ds.Namespace, r.ds.Spec.Template.Spec.ServiceAccountName
	allowed := func(verb, resource, sub string) (bool, error) {
		rv, err := c.admin.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{
				User:   "system:serviceaccount:" + ns + ":" + sa,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &authzv1.ResourceAttributes{
					Verb: verb, Resource: resource, Subresource: sub, Name: exampleNodeName,
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return rv.Status.Allowed, nil
	}
	// The authorizer learns new bindings from a watch.
	var err error
	require.True(t, testutil.Poll(30*time.Second, func() bool {
		var get, patch bool
		get, err = allowed("get", "nodes", "")
		if err == nil {
			patch, err = allowed("patch", "nodes", "status")
		}
		return get && patch
	}), "the ServiceAccount may not get nodes and patch nodes/status (%v)", err)
	for _, a := range [][3]string{
		{"list", "nodes", ""}, {"watch", "nodes", ""}, {"patch", "nodes", ""}, {"update", "nodes", "status"},
		{"get", "nodes", "status"}, {"delete", "nodes", ""}, {"get", "pods", ""}, {"get", "secrets", ""},
	} {
		ok, err := allowed(a[0], a[1], a[2])
		require.NoError(t, err)
		assert.False(t, ok, "the ServiceAccount may %s %s/%s", a[0], a[1], a[2])
	}
}

// nodeCondition is the condition typ of the node as the API server stores
// it, or nil.
func nodeCondition(ctx context.Context, cs kubernetes.Interface, node, typ string) (*corev1.NodeCondition, error) {
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for _, c := range n.Status.Conditions {
		if string(c.Type) == typ {
			return &c, nil
		}
	}
	return nil, nil
}

// waitCondition polls the node until its condition typ satisfies ok, and
// returns it.
func waitCondition(t *testing.T, cs kubernetes.Interface, typ string, d time.Duration, what string, ok func(c corev1.NodeCondition) bool) corev1.NodeCondition {
	t.Helper()
	var c *corev1.NodeCondition
	var err error
	if !testutil.Poll(d, func() bool {
		c, err = nodeCondition(t.Context(), cs, exampleNodeName, typ)
		return err == nil && c != nil && ok(*c)
	}) {
		t.Fatalf("node condition %s: %s not within %v (last: %+v, %v)", typ, what, d, c, err)
	}
	return *c
}

func isTrue(c corev1.NodeCondition) bool {
	return c.Status == corev1.ConditionTrue && c.Reason == "OVSReady"
}

func notRunning(c corev1.NodeCondition) bool {
	return c.Status == corev1.ConditionFalse && c.Reason == "VSwitchdNotRunning"
}

// testConditionFollowsOVS runs ovsgate serve as OVSGateUser and follows the
// node condition through OVS restarts, an API server outage, a re-created
// Node and the daemon's own shutdown.
func testConditionFollowsOVS(t *testing.T, c *cluster, s *ovstest.Sandbox, condType string, memLimit int64) {
	ctx := t.Context()
	statusFile := filepath.Join(t.TempDir(), "status.json")
	d := startServe(t, nil, "--node-condition="+condType, "--node-name="+exampleNodeName,
		"--kubeconfig="+c.Kubeconfig(t, kubetest.OVSGateUser), "--node-condition-heartbeat=2s",
		"--bridge=br-int", "--ovsdb="+s.Endpoint(), "--ovs-rundir="+s.RunDir(),
		"--health-probe-bind-address="+testutil.AnyPort, "--metrics-bind-address="+testutil.AnyPort,
		"--status-file="+statusFile)
	probeAddr, metricsAddr := d.Addrs(t)
	admin := c.admin
	writes := func(result string) float64 {
		match := map[string]string{}
		if result != "" {
			match["result"] = result
		}
		return scrape(t, metricsAddr, writesMetric, match)
	}

	cond := waitCondition(t, admin, condType, 30*time.Second, "True", isTrue)
	assert.Equal(t, "OVS is ready", cond.Message)

	t.Run("ovs-vswitchd killed and started", func(t *testing.T) {
		s.KillVSwitchd()
		down := waitCondition(t, admin, condType, 20*time.Second, "False/VSwitchdNotRunning", notRunning)
		assert.NotEmpty(t, down.Message)
		assert.True(t, down.LastTransitionTime.After(cond.LastTransitionTime.Time), "lastTransitionTime moves: %v, then %v", cond.LastTransitionTime, down.LastTransitionTime)
		s.StartVSwitchd()
		up := waitCondition(t, admin, condType, 20*time.Second, "True again", isTrue)
		assert.True(t, up.LastTransitionTime.After(down.LastTransitionTime.Time), "lastTransitionTime moves: %v, then %v", down.LastTransitionTime, up.LastTransitionTime)
		cond = up
	})

	t.Run("heartbeat", func(t *testing.T) {
		before := waitCondition(t, admin, condType, time.Second, "True", isTrue)
		after := waitCondition(t, admin, condType, 15*time.Second, "a newer heartbeat", func(c corev1.NodeCondition) bool {
			return c.LastHeartbeatTime.After(before.LastHeartbeatTime.Time)
		})
		assert.True(t, isTrue(after))
		assert.Equal(t, before.LastTransitionTime, after.LastTransitionTime, "a heartbeat is no transition")
	})

	t.Run("latency", func(t *testing.T) {
		const restarts = 20
		writesBefore, successBefore := writes(""), writes("success")
		var fromStart, fromReadyz, down []time.Duration
		for range restarts {
			killed := time.Now()
			s.KillVSwitchd()
			waitCondition(t, admin, condType, 20*time.Second, "False", notRunning)
			down = append(down, time.Since(killed))

			s.StartVSwitchd()
			started := time.Now()
			var readyz time.Time
			var got *corev1.NodeCondition
			ok := testutil.Poll(20*time.Second, func() bool {
				if readyz.IsZero() {
					if code, _ := testutil.Get("http://" + probeAddr + "/readyz"); code == http.StatusOK {
						readyz = time.Now()
					}
				}
				var err error
				got, err = nodeCondition(ctx, admin, exampleNodeName, condType)
				return err == nil && got != nil && isTrue(*got)
			})
			require.True(t, ok, "condition not True within 20s of ovs-vswitchd's start: %+v", got)
			now := time.Now()
			fromStart = append(fromStart, now.Sub(started))
			if !readyz.IsZero() {
				fromReadyz = append(fromReadyz, now.Sub(readyz))
			}
		}
		attempts, succeeded := writes("")-writesBefore, writes("success")-successBefore
		t.Logf("OVS ready -> condition True in the API server, over %d restarts of ovs-vswitchd:", restarts)
		t.Logf("  from StartVSwitchd returning: median %v, worst %v", median(fromStart), slices.Max(fromStart))
		if len(fromReadyz) > 0 {
			t.Logf("  from /readyz 200 (%d seen):    median %v, worst %v", len(fromReadyz), median(fromReadyz), slices.Max(fromReadyz))
		}
		t.Logf("  (kill -> False: median %v, worst %v)", median(down), slices.Max(down))
		t.Logf("  writes: %v attempts, %v successful, for %d state changes", attempts, succeeded, 2*restarts)
		assert.GreaterOrEqual(t, succeeded, float64(2*restarts), "each change written")
		assert.LessOrEqual(t, attempts, float64(3*restarts), "no more than a write per state the gate went through")
		if rss := rssBytes(d.Cmd.Process.Pid); rss > 0 {
			t.Logf("  serve's RSS: %.1f MiB (limit %d MiB)", float64(rss)/(1<<20), memLimit>>20)
			assert.Less(t, rss, memLimit*3/4, "the manifest's memory limit leaves room")
		}
	})

	t.Run("API server outage", func(t *testing.T) {
		failed := func() float64 { return writes("") - writes("success") }
		failedBefore := failed()
		c.StopAPIServer(t)
		stopped := time.Now()
		s.KillVSwitchd()
		// The probes answer at once, whatever the API server does.
		var readyzCode int
		require.True(t, testutil.Poll(10*time.Second, func() bool {
			readyzCode, _ = testutil.Get("http://" + probeAddr + "/readyz")
			return readyzCode == http.StatusServiceUnavailable
		}), "/readyz: %d", readyzCode)
		// A probe that waited for the API server would get no answer
		// within the client's timeout: code 0.
		for range 5 {
			for path, want := range map[string]int{"/readyz": http.StatusServiceUnavailable, "/livez": http.StatusOK} {
				code, body := testutil.Get("http://" + probeAddr + path)
				require.NotZero(t, code, "%s: %s", path, body)
				assert.Equal(t, want, code, "%s: %s", path, body)
			}
		}
		// The writer tried and failed: the outage was seen.
		require.True(t, testutil.Poll(20*time.Second, func() bool { return failed() > failedBefore }), "no failed write during the outage")
		assert.Zero(t, scrape(t, metricsAddr, lastSuccessMetric, nil))
		assert.Positive(t, writes("unreachable"))
		c.StartAPIServer(t)
		restarted := time.Now()
		// Backoff up to a minute between attempts.
		waitCondition(t, admin, condType, 90*time.Second, "False after the outage", notRunning)
		t.Logf("condition caught up %v after the API server was back (down %v)",
			time.Since(restarted).Round(time.Millisecond), restarted.Sub(stopped).Round(time.Millisecond))
		s.StartVSwitchd()
		cond = waitCondition(t, admin, condType, 20*time.Second, "True", isTrue)
		assert.Equal(t, 1.0, scrape(t, metricsAddr, lastSuccessMetric, nil))
	})

	t.Run("node re-created", func(t *testing.T) {
		notFound := writes("not_found")
		require.NoError(t, admin.CoreV1().Nodes().Delete(ctx, exampleNodeName, metav1.DeleteOptions{}))
		// The next heartbeat finds the Node gone.
		require.True(t, testutil.Poll(20*time.Second, func() bool { return writes("not_found") > notFound }), "the writer never saw the Node gone")
		created := time.Now().Truncate(time.Second)
		_, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: exampleNodeName}}, metav1.CreateOptions{})
		require.NoError(t, err)
		back := waitCondition(t, admin, condType, 30*time.Second, "True on the new Node", isTrue)
		assert.False(t, back.LastTransitionTime.Before(&metav1.Time{Time: created}), "a new Node's condition starts anew: %v", back.LastTransitionTime)
		cond = back
	})

	t.Run("left as it is on shutdown", func(t *testing.T) {
		require.NoError(t, d.Stop(), "serve exits 0 after SIGTERM")
		after, err := nodeCondition(ctx, admin, exampleNodeName, condType)
		require.NoError(t, err)
		require.NotNil(t, after)
		assert.True(t, isTrue(*after), "not rewritten on shutdown: %+v", after)
		status, err := os.ReadFile(statusFile)
		require.NoError(t, err)
		assert.Contains(t, string(status), `"ready": false`, "the status file, unlike the condition, says stopped")
	})
}

// testForbidden runs the daemon as NobodyUser: the node condition fails, the
// gate does not.
func testForbidden(t *testing.T, c *cluster, s *ovstest.Sandbox, condType string) {
	d := startServe(t, nil, "--node-condition="+condType, "--node-name="+exampleNodeName,
		"--kubeconfig="+c.Kubeconfig(t, kubetest.NobodyUser), "--node-condition-heartbeat=2s",
		"--bridge=br-int", "--ovsdb="+s.Endpoint(), "--ovs-rundir="+s.RunDir(),
		"--health-probe-bind-address="+testutil.AnyPort, "--metrics-bind-address="+testutil.AnyPort,
		"--status-file="+filepath.Join(t.TempDir(), "status.json"))
	probeAddr, metricsAddr := d.Addrs(t)

	about := refusedWrites(t, d, probeAddr, metricsAddr)
	assert.LessOrEqual(t, len(about), 2, "failed writes make a flood of lines:\n%s", strings.Join(about, "\n"))
	assert.NotEmpty(t, about, "the failure is logged")
	assert.NoError(t, d.Stop())
}

// refusedWrites waits until the gate of d is ready and its writer has been
// refused (403) three times, so that a log line per attempt would show. It
// checks that nothing was written and that /readyz answers 200 all the same,
// and returns d's log lines about the refusals.
func refusedWrites(t *testing.T, d *serveDaemon, probeAddr, metricsAddr string) []string {
	t.Helper()
	var code int
	require.True(t, testutil.Poll(30*time.Second, func() bool {
		code, _ = testutil.Get("http://" + probeAddr + "/readyz")
		return code == http.StatusOK
	}), "/readyz: %d: %s", code, d.Stderr.String())
	var forbidden float64
	require.True(t, testutil.Poll(60*time.Second, func() bool {
		forbidden = scrape(t, metricsAddr, writesMetric, map[string]string{"result": "forbidden"})
		return forbidden >= 3
	}), "forbidden writes: %v: %s", forbidden, d.Stderr.String())
	assert.Zero(t, scrape(t, metricsAddr, lastSuccessMetric, nil))
	assert.Zero(t, scrape(t, metricsAddr, writesMetric, map[string]string{"result": "success"}))
	code, body := testutil.Get("http://" + probeAddr + "/readyz")
	require.NotZero(t, code, body)
	assert.Equal(t, http.StatusOK, code, "the gate does not depend on the node condition")

	var about []string
	for _, l := range d.Stderr.Lines() {
		if strings.Contains(l, "forbidden") || strings.Contains(l, "Cannot write node condition") {
			about = append(about, l)
		}
	}
	return about
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// rssBytes is a process's resident set size, or 0 if unknown.
func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	return 0
}
