package kubetest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

// NodeReadinessRules is the resource of node-readiness-controller's rules.
var NodeReadinessRules = schema.GroupVersionResource{Group: "readiness.node.x-k8s.io", Version: "v1alpha1", Resource: "nodereadinessrules"}

var crds = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// The binaries and files the hack scripts build or extract, each found once
// per test binary.
var (
	schedulerBinary = sync.OnceValues(func() (string, error) {
		return hackPath("kube-apiserver.sh", "path", "kube-scheduler")
	})
	nrcBinary = sync.OnceValues(func() (string, error) {
		return hackPath("node-readiness-controller.sh", "path")
	})
	// nrcCRD is the NodeReadinessRule CRD of the controller's release; its
	// RBAC lies beside it, in config/rbac.
	nrcCRD = sync.OnceValues(func() (string, error) {
		return hackPath("node-readiness-controller.sh", "crd")
	})
)

// nrcServiceAccount is where the release's RBAC puts the controller's
// ServiceAccount (config/rbac, before a kustomize overlay renames it).
const nrcNamespace, nrcServiceAccount = "system", "controller-manager"

// Component is a daemon started beside a Cluster's kube-apiserver. The test's
// cleanup stops it, before the cluster's own cleanup stops kube-apiserver,
// and fails the test if it had exited on its own.
type Component struct {
	p *proc
}

// PID is the daemon's pid, or 0 once it has exited.
func (d *Component) PID() int {
	if !d.p.running() {
		return 0
	}
	return d.p.cmd.Process.Pid
}

// Lines returns the lines of the daemon's log that contain every one of
// substrs (all of them without substrs), in order.
func (d *Component) Lines(substrs ...string) []string {
	b, err := os.ReadFile(d.p.log)
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		all := true
		for _, s := range substrs {
			all = all && strings.Contains(line, s)
		}
		if all && line != "" {
			out = append(out, line)
		}
	}
	return out
}

// RequireScheduler skips t, or fails it in CI, unless kube-scheduler is
// built (hack/kube-apiserver.sh build kube-scheduler).
func RequireScheduler(t testing.TB) string {
	t.Helper()
	return found(t, schedulerBinary)
}

// RequireNodeReadinessController skips t, or fails it in CI, unless
// node-readiness-controller is built (hack/node-readiness-controller.sh build)
// and its release's CRD is at hand.
func RequireNodeReadinessController(t testing.TB) (bin, crd string) {
	t.Helper()
	return found(t, nrcBinary), found(t, nrcCRD)
}

func found(t testing.TB, lookup func() (string, error)) string {
	t.Helper()
	path, err := lookup()
	if err != nil {
		testutil.SkipUnlessCI(t, "kubetest: %v", err)
	}
	return path
}

// StartScheduler runs kube-scheduler (the release of kube-apiserver) against
// the cluster as AdminUser, with leader election off and its secure port on a
// free loopback port, and returns once its /readyz answers 200. It logs at
// -v=2, where every scheduling attempt and binding shows.
func (c *Cluster) StartScheduler(t testing.TB) *Component {
	t.Helper()
	bin := RequireScheduler(t)
	kubeconfig := c.Kubeconfig(t, AdminUser)
	// It cannot bind port 0 and report it: take a reserved port, as
	// kube-apiserver does (ports.go says why that one is safe).
	port, release := reservePort(t)
	t.Cleanup(release)
	d := c.startComponent(t, "kube-scheduler", bin,
		"--kubeconfig="+kubeconfig,
		// Without these it looks up the cluster's authentication
		// configuration in-cluster, which a test's process cannot.
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port="+port,
		"--profiling=false",
		"-v=2",
	)
	// It serves a self-signed certificate of its own making, on loopback;
	// /readyz needs no credentials.
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
	}}
	c.waitFor(t, d.p, "kube-scheduler /readyz", httpOK(hc, "https://"+net.JoinHostPort("127.0.0.1", port)+"/readyz"))
	return d
}

// StartNodeReadinessController installs the CRD and the RBAC of
// node-readiness-controller's release, runs the controller as the
// release's ServiceAccount (its own ClusterRole, nothing more) with its
// health probes on a free loopback port and metrics off, and returns once
// its /readyz answers 200. It logs at V(4), where every Node update it acts
// on shows before what it did about it.
func (c *Cluster) StartNodeReadinessController(t testing.TB) *Component {
	t.Helper()
	bin, crd := RequireNodeReadinessController(t)
	c.installCRD(t, crd)
	kubeconfig := c.installNRCIdentity(t, filepath.Join(filepath.Dir(crd), "..", "..", "rbac"))
	port, release := reservePort(t)
	t.Cleanup(release)
	addr := net.JoinHostPort("127.0.0.1", port)
	d := c.startComponent(t, "node-readiness-controller", bin,
		"--kubeconfig="+kubeconfig,
		"--health-probe-bind-address="+addr,
		"--metrics-bind-address=0",
		"--zap-log-level=4",
	)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	c.waitFor(t, d.p, "node-readiness-controller /readyz", httpOK(hc, "http://"+addr+"/readyz"))
	return d
}

// startComponent spawns a daemon whose cleanup stops it, fails the test if
// it exited before that, and shows its log's tail when the test failed.
func (c *Cluster) startComponent(t testing.TB, name, bin string, args ...string) *Component {
	t.Helper()
	d := &Component{p: c.spawn(t, name, bin, args...)}
	t.Cleanup(func() {
		if !d.p.running() {
			t.Errorf("kubetest: %s exited on its own: %v", name, d.p.err)
		} else if err := stop(d.p); err != nil {
			t.Errorf("kubetest: %v", err)
		}
		if t.Failed() {
			t.Logf("kubetest: tail of %s:\n%s", d.p.log, tail(d.p.log))
		}
	})
	return d
}

// httpOK is a readiness check for waitFor: GET url answers 200. A refused
// or failed request is "not yet".
func httpOK(hc *http.Client, url string) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		res, err := hc.Do(req)
		if err != nil {
			return false, nil
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK, nil
	}
}

// Dynamic is a dynamic client acting as AdminUser, for custom resources.
func (c *Cluster) Dynamic(t testing.TB) dynamic.Interface {
	t.Helper()
	cfg := c.RESTConfig(t, AdminUser)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatalf("kubetest: http client: %v", err)
	}
	dc, err := dynamic.NewForConfigAndClient(cfg, hc)
	if err != nil {
		t.Fatalf("kubetest: dynamic client: %v", err)
	}
	c.mu.Lock()
	c.httpClients = append(c.httpClients, hc)
	c.mu.Unlock()
	return dc
}

// installCRD creates the CRD in the file at path and waits until its
// resource is served.
func (c *Cluster) installCRD(t testing.TB, path string) {
	t.Helper()
	var crd unstructured.Unstructured
	readYAML(t, path, &crd.Object)
	dyn := c.Dynamic(t)
	ctx := t.Context()
	if _, err := dyn.Resource(crds).Create(ctx, &crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kubetest: create CRD %s: %v", crd.GetName(), err)
	}
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if len(versions) == 0 {
		t.Fatalf("kubetest: CRD %s has no versions", crd.GetName())
	}
	version, _, _ := unstructured.NestedString(versions[0].(map[string]any), "name")
	res := schema.GroupVersionResource{Group: group, Version: version, Resource: plural}
	var last error
	if !testutil.Poll(readyTimeout, func() bool {
		_, last = dyn.Resource(res).List(ctx, metav1.ListOptions{Limit: 1})
		return last == nil
	}) {
		t.Fatalf("kubetest: %s not served after %v: %v", res, readyTimeout, last)
	}
}

// installNRCIdentity creates the release's ServiceAccount, ClusterRole and
// ClusterRoleBinding from rbacDir and returns a kubeconfig for the
// ServiceAccount.
func (c *Cluster) installNRCIdentity(t testing.TB, rbacDir string) string {
	t.Helper()
	var (
		sa      corev1.ServiceAccount
		role    rbacv1.ClusterRole
		binding rbacv1.ClusterRoleBinding
	)
	readYAML(t, filepath.Join(rbacDir, "service_account.yaml"), &sa)
	readYAML(t, filepath.Join(rbacDir, "role.yaml"), &role)
	readYAML(t, filepath.Join(rbacDir, "role_binding.yaml"), &binding)
	if sa.Namespace != nrcNamespace || sa.Name != nrcServiceAccount || binding.RoleRef.Name != role.Name ||
		len(binding.Subjects) != 1 || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != sa.Namespace {
		t.Fatalf("kubetest: %s: the release's RBAC is not what this helper knows: %s/%s bound by %+v", rbacDir, sa.Namespace, sa.Name, binding)
	}

	admin := c.AdminClient()
	ctx := t.Context()
	create := func(what string, err error) {
		t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("kubetest: create %s: %v", what, err)
		}
	}
	_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sa.Namespace}}, metav1.CreateOptions{})
	create("namespace "+sa.Namespace, err)
	_, err = admin.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, &sa, metav1.CreateOptions{})
	create("ServiceAccount "+sa.Name, err)
	_, err = admin.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{})
	create("ClusterRole "+role.Name, err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &binding, metav1.CreateOptions{})
	create("ClusterRoleBinding "+binding.Name, err)
	// Without the watch on rules its first list would be refused and
	// retried with a backoff.
	return c.ServiceAccountKubeconfig(t, sa.Namespace, sa.Name, authorizationv1.ResourceAttributes{
		Verb: "watch", Group: NodeReadinessRules.Group, Resource: NodeReadinessRules.Resource,
	})
}

// ServiceAccountKubeconfig waits until the authorizer allows the existing
// ServiceAccount namespace/name every one of needs (it learns new bindings
// from a watch), then writes a kubeconfig with a token for it, as kubelet
// would mount into its pod, and returns the file's path.
func (c *Cluster) ServiceAccountKubeconfig(t testing.TB, namespace, name string, needs ...authorizationv1.ResourceAttributes) string {
	t.Helper()
	admin := c.AdminClient()
	ctx := t.Context()
	user := "system:serviceaccount:" + namespace + ":" + name
	for _, attrs := range needs {
		var last string
		if !testutil.Poll(readyTimeout, func() bool {
			r, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{
					User:               user,
					Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
					ResourceAttributes: &attrs,
				},
			}, metav1.CreateOptions{})
			last = fmt.Sprintf("%+v %v", r, err)
			return err == nil && r.Status.Allowed
		}) {
			t.Fatalf("kubetest: %s may not %+v: %s", user, attrs, last)
		}
	}
	// The test ends long before the token expires.
	expiry := int64(2 * time.Hour / time.Second)
	tr, err := admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: token for %s: %v", user, err)
	}
	return c.writeKubeconfig(t, namespace+"."+name, tr.Status.Token)
}

// readYAML decodes the one YAML document in the file at path into v, strictly.
func readYAML(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("kubetest: %s: %v", path, err)
	}
}
