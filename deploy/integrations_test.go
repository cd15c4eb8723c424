package deploy

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

const (
	integrationsDir = "kubernetes/integrations"
	// The CNIs' releases live beside the repository, as test data.
	cniReleases = "../../shared/third_party/cni"
	// Where OVS keeps its run directory inside each CNI's OVS container: the
	// OVS default, which all three images use.
	ovsContainerRunDir = "/var/run/openvswitch"
	// The uid Kube-OVN's chart runs OVS as (ovs-ovn's runAsUser), and that
	// TestSocketOwner gives the sandbox's OVS.
	unprivilegedOVSUser = 65534
)

// cniIntegration is one CNI as it ships, and where its overlay puts ovsgate:
// the facts its rendering cannot tell by itself (which container creates
// br-int, which ports its scripts bind), checked against the rendering where
// they can be.
type cniIntegration struct {
	name    string // the overlay's directory under integrationsDir
	release string // the file the overlay reads beside its kustomization.yaml
	render  func(t *testing.T) []byte

	// The DaemonSet and container that run ovsdb-server and ovs-vswitchd.
	ovsDaemonSet, ovsContainer string
	// The DaemonSet and container that create br-int.
	bridgeDaemonSet, bridgeContainer string
	// The DaemonSet ovsgate joins, its init containers in the order the
	// overlay leaves them, and the agent container in it.
	agentDaemonSet string
	initOrder      []string
	agentContainer string
	// Where the agent container finds the sidecar's status file; "" when no
	// container of the CNI is meant to read it.
	agentStatusFile string
	// The overlay adds the standalone DaemonSet.
	standalone bool
	// Host ports the CNI's processes bind without declaring them in the
	// manifest (its image's scripts choose them).
	undeclaredPorts map[int32]string
}

var integrations = []cniIntegration{
	{
		name:            "antrea",
		release:         "antrea.yml",
		render:          func(t *testing.T) []byte { return readRelease(t, "antrea-v2.7.0.yml") },
		ovsDaemonSet:    "antrea-agent",
		ovsContainer:    "antrea-ovs",
		bridgeDaemonSet: "antrea-agent",
		bridgeContainer: "antrea-agent", // the agent's OVS bridge client creates br-int
		agentDaemonSet:  "antrea-agent",
		initOrder:       []string{"install-cni", "ovsgate"},
		agentContainer:  "antrea-agent",
		agentStatusFile: "/var/run/antrea/ovsgate/status.json",
		standalone:      true,
	},
	{
		name:    "kube-ovn",
		release: "kube-ovn.yaml",
		render: func(t *testing.T) []byte {
			return renderChart(t, "kube-ovn-v1.16.2-chart.tar.gz", "kube-ovn-v1.16.2/charts/kube-ovn", "kube-ovn",
				"--set", "MASTER_NODES=10.0.0.1")
		},
		ovsDaemonSet:    "ovs-ovn",
		ovsContainer:    "openvswitch",
		bridgeDaemonSet: "ovs-ovn",
		bridgeContainer: "openvswitch", // start-ovs.sh starts ovn-controller there
		agentDaemonSet:  "kube-ovn-cni",
		initOrder:       []string{"hostpath-init", "ovsgate-wait", "install-cni", "ovsgate"},
		agentContainer:  "cni-server",
	},
	{
		name:    "ovn-kubernetes",
		release: "ovn-kubernetes.yaml",
		render: func(t *testing.T) []byte {
			return renderChart(t, "ovn-kubernetes-v1.3.0-helm.tar.gz", "ovn-kubernetes-v1.3.0/helm/ovn-kubernetes", "ovn-kubernetes",
				"-f", "values-single-node-zone.yaml")
		},
		ovsDaemonSet:    "ovs-node",
		ovsContainer:    "ovs-daemons",
		bridgeDaemonSet: "ovnkube-node",
		bridgeContainer: "ovn-controller",
		agentDaemonSet:  "ovnkube-node",
		initOrder:       []string{"ovsgate"},
		agentContainer:  "ovnkube-controller",
		agentStatusFile: "/var/run/ovn-kubernetes/ovsgate/status.json",
		standalone:      true,
		// ovnkube.sh: --ovn-metrics-bind-address on the node's IP.
		undeclaredPorts: map[int32]string{9476: "ovnkube-node (OVN metrics)"},
	},
}

// --- the CNIs as they ship ----------------------------------------------------

func readRelease(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cniReleases, name))
	if err != nil {
		testutil.SkipUnlessCI(t, "the vendored CNI release: %v", err)
	}
	return b
}

// helmBinary is the Helm the Makefile pins (make test installs it).
func helmBinary(t *testing.T) string {
	t.Helper()
	version := makefileVar(t, "HELM_VERSION")
	bin, err := filepath.Abs(filepath.Join("..", "bin", "tools", "helm-"+version))
	require.NoError(t, err)
	if _, err := os.Stat(bin); err != nil {
		testutil.SkipUnlessCI(t, "helm %s is not installed (make test installs it): %v", version, err)
	}
	return bin
}

// renderChart renders a chart from a vendored source archive offline, as
// `helm template` does for a user.
func renderChart(t *testing.T, archive, chart, release string, args ...string) []byte {
	t.Helper()
	helm := helmBinary(t)
	src := readRelease(t, archive)
	dir := t.TempDir()
	require.NoError(t, extractTarGz(src, dir))
	chartDir := filepath.Join(dir, filepath.FromSlash(chart))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helm, append([]string{"template", release, chartDir}, args...)...)
	cmd.Dir = chartDir
	// Helm's caches and configuration in the test's own folder, none of
	// the user's repositories or plugins.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "helm template %s: %s", chart, stderr.String())
	return out
}

func extractTarGz(src []byte, dir string) error {
	zr, err := gzip.NewReader(strings.NewReader(string(src)))
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("archive entry %q leaves the folder", h.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				return err
			}
		}
	}
}

// renderIntegration renders the CNI's overlay on top of its release, as a
// user does: the release saved beside the overlay's kustomization.yaml, in
// a copy of deploy/kubernetes (the overlay reuses ../../standalone).
func renderIntegration(t *testing.T, cni cniIntegration, release []byte) []byte {
	t.Helper()
	root := t.TempDir()
	require.NoError(t, os.CopyFS(filepath.Join(root, "kubernetes"), os.DirFS("kubernetes")))
	dir := filepath.Join(root, integrationsDir, cni.name)
	require.NoError(t, os.WriteFile(filepath.Join(dir, cni.release), release, 0o644))
	return kustomize(t, dir)
}

// --- objects ------------------------------------------------------------------

type objKey struct{ group, kind, namespace, name string }

func keyOf(u *unstructured.Unstructured) objKey {
	gvk := u.GroupVersionKind()
	return objKey{gvk.Group, gvk.Kind, u.GetNamespace(), u.GetName()}
}

func (k objKey) String() string { return fmt.Sprintf("%s %s/%s", k.kind, k.namespace, k.name) }

func byKey(t *testing.T, objs []*unstructured.Unstructured) map[objKey]*unstructured.Unstructured {
	t.Helper()
	m := make(map[objKey]*unstructured.Unstructured, len(objs))
	for _, o := range objs {
		k := keyOf(o)
		require.NotContains(t, m, k, "%s twice", k)
		m[k] = o
	}
	return m
}

// normalized is an object as canonical JSON: sorted keys, and no field
// whose value is null (which kustomize drops, and the API server ignores).
func normalized(t *testing.T, obj map[string]any) string {
	t.Helper()
	b, err := json.Marshal(dropNulls(obj))
	require.NoError(t, err)
	return string(b)
}

func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			if e != nil {
				out[k] = dropNulls(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = dropNulls(e)
		}
		return out
	default:
		return v
	}
}

func daemonSet(t *testing.T, objs map[objKey]*unstructured.Unstructured, name string) *appsv1.DaemonSet {
	t.Helper()
	var found *unstructured.Unstructured
	for k, o := range objs {
		if k.group == "apps" && k.kind == "DaemonSet" && k.name == name {
			require.Nil(t, found, "two DaemonSets named %s", name)
			found = o
		}
	}
	require.NotNil(t, found, "no DaemonSet %s", name)
	var ds appsv1.DaemonSet
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(found.Object, &ds))
	return &ds
}

func container(t *testing.T, pod corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range allContainers(pod) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

func names(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

// withoutGate is a rendered object with what ovsgate's overlay adds to a
// CNI's pod taken out again: the containers running ovsgate, the volumes
// only they mount, and the Prometheus annotations naming ovsgate's metrics
// port. What is left must be the release, byte for byte.
func withoutGate(t *testing.T, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	out := u.DeepCopy()
	spec, ok, err := unstructured.NestedMap(out.Object, "spec", "template", "spec")
	require.NoError(t, err)
	if !ok {
		return out
	}
	gateMounts, otherMounts := map[string]bool{}, map[string]bool{}
	metricsPorts := map[string]bool{}
	for _, field := range []string{"initContainers", "containers"} {
		cs, _ := spec[field].([]any)
		var kept []any
		for _, c := range cs {
			cm := c.(map[string]any)
			image, _ := cm["image"].(string)
			mounts, _ := cm["volumeMounts"].([]any)
			into := otherMounts
			if imageRepo(image) == gateImage {
				into = gateMounts
				ports, _ := cm["ports"].([]any)
				for _, p := range ports {
					pm := p.(map[string]any)
					if pm["name"] == "metrics" {
						metricsPorts[fmt.Sprint(pm["containerPort"])] = true
					}
				}
			} else {
				kept = append(kept, c)
			}
			for _, m := range mounts {
				into[m.(map[string]any)["name"].(string)] = true
			}
		}
		switch {
		case len(kept) > 0:
			spec[field] = kept
		default:
			delete(spec, field)
		}
	}
	if vols, ok := spec["volumes"].([]any); ok {
		var kept []any
		for _, v := range vols {
			name := v.(map[string]any)["name"].(string)
			if gateMounts[name] && !otherMounts[name] {
				continue
			}
			kept = append(kept, v)
		}
		spec["volumes"] = kept
	}
	require.NoError(t, unstructured.SetNestedMap(out.Object, spec, "spec", "template", "spec"))
	ann, _, _ := unstructured.NestedStringMap(out.Object, "spec", "template", "metadata", "annotations")
	if metricsPorts[ann["prometheus.io/port"]] {
		for _, k := range []string{"prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"} {
			delete(ann, k)
		}
		if len(ann) == 0 {
			unstructured.RemoveNestedField(out.Object, "spec", "template", "metadata", "annotations")
		} else {
			require.NoError(t, unstructured.SetNestedStringMap(out.Object, ann, "spec", "template", "metadata", "annotations"))
		}
	}
	return out
}

// --- host paths -----------------------------------------------------------------

// hostDir is the host directory behind the path p inside container c of
// pod: the hostPath of the mount that holds p, with its subPath and the rest
// of p; "" when p is not on a hostPath volume. /var/run and /run are one
// directory on the hosts these CNIs run on.
func hostDir(pod corev1.PodSpec, c corev1.Container, p string) (dir string, m corev1.VolumeMount) {
	for _, vm := range c.VolumeMounts {
		if (p == vm.MountPath || strings.HasPrefix(p, strings.TrimSuffix(vm.MountPath, "/")+"/")) &&
			len(vm.MountPath) > len(m.MountPath) {
			m = vm
		}
	}
	if m.Name == "" {
		return "", m
	}
	v, ok := volume(pod, m.Name)
	if !ok || v.HostPath == nil {
		return "", m
	}
	rest := strings.TrimPrefix(p, strings.TrimSuffix(m.MountPath, "/"))
	return sameRun(path.Join(v.HostPath.Path, m.SubPath, rest)), m
}

func sameRun(p string) string {
	if rest, ok := strings.CutPrefix(p, "/var/run/"); ok {
		return "/run/" + rest
	}
	return p
}

// containerPath is where container c of pod sees the host path h, or "".
func containerPath(pod corev1.PodSpec, c corev1.Container, h string) string {
	h = sameRun(h)
	for _, vm := range c.VolumeMounts {
		v, ok := volume(pod, vm.Name)
		if !ok || v.HostPath == nil {
			continue
		}
		base := sameRun(path.Join(v.HostPath.Path, vm.SubPath))
		if rest, ok := strings.CutPrefix(h, base+"/"); ok {
			return path.Join(vm.MountPath, rest)
		}
	}
	return ""
}

// runAsUser is the uid a container runs as: its own securityContext, then
// the pod's, then the image's user, which is root for every CNI image here.
func runAsUser(pod corev1.PodSpec, c corev1.Container) int64 {
	if sc := c.SecurityContext; sc != nil && sc.RunAsUser != nil {
		return *sc.RunAsUser
	}
	if sc := pod.SecurityContext; sc != nil && sc.RunAsUser != nil {
		return *sc.RunAsUser
	}
	return 0
}

// --- what waits on what -----------------------------------------------------------

// holdsBack reports whether container c of a pod keeps the containers after
// it from starting until OVS is ready: a plain init container that waits
// (ovsgate wait), or a sidecar whose startupProbe asks /readyz.
func holdsBack(c corev1.Container) bool {
	if imageRepo(c.Image) != gateImage || len(c.Args) == 0 {
		return false
	}
	if c.RestartPolicy == nil {
		return c.Args[0] == "wait"
	}
	p := c.StartupProbe
	return p != nil && p.HTTPGet != nil && strings.HasPrefix(p.HTTPGet.Path, "/readyz")
}

// deadlocks lists the containers of pod that hold back a later container
// that the gate itself waits for: the one that starts OVS or the one that
// creates the bridge. Such a pod never starts.
func deadlocks(pod corev1.PodSpec, needed ...string) []string {
	var found []string
	order := allContainers(pod)
	for i, c := range order {
		if !holdsBack(c) {
			continue
		}
		for _, later := range order[i+1:] {
			if slices.Contains(needed, later.Name) {
				found = append(found, fmt.Sprintf("%s holds back %s, which it waits for", c.Name, later.Name))
			}
		}
	}
	return found
}

func TestDeadlocks(t *testing.T) {
	gate := func(name, cmd string, sidecar, startup bool) corev1.Container {
		c := corev1.Container{Name: name, Image: gateImage + ":v1", Args: []string{cmd}}
		if sidecar {
			always := corev1.ContainerRestartPolicyAlways
			c.RestartPolicy = &always
		}
		if startup {
			c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz"}}}
		}
		return c
	}
	agent := corev1.Container{Name: "agent", Image: "cni"}
	ovs := corev1.Container{Name: "ovs", Image: "cni"}
	install := corev1.Container{Name: "install-cni", Image: "cni"}
	tests := []struct {
		name string
		pod  corev1.PodSpec
		want int
	}{
		{"wait before the OVS of its own pod (Antrea with the base's shape)",
			corev1.PodSpec{InitContainers: []corev1.Container{install, gate("w", "wait", false, false)}, Containers: []corev1.Container{agent, ovs}}, 2},
		{"sidecar with a startupProbe before the bridge's creator",
			corev1.PodSpec{InitContainers: []corev1.Container{gate("s", "serve", true, true)}, Containers: []corev1.Container{agent}}, 1},
		{"sidecar without a startupProbe", corev1.PodSpec{InitContainers: []corev1.Container{install, gate("s", "serve", true, false)}, Containers: []corev1.Container{agent, ovs}}, 0},
		{"wait where OVS runs in another pod", corev1.PodSpec{InitContainers: []corev1.Container{gate("w", "wait", false, false), install}, Containers: []corev1.Container{{Name: "cni-server"}}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Len(t, deadlocks(tt.pod, "agent", "ovs"), tt.want)
		})
	}
}

// --- structure -------------------------------------------------------------------

// TestIntegrations renders each CNI's release as a user gets it, then the
// overlay on top of it, and checks what the overlay changed.
func TestIntegrations(t *testing.T) {
	for _, cni := range integrations {
		t.Run(cni.name, func(t *testing.T) {
			shipped := cni.render(t)
			rendered := renderIntegration(t, cni, shipped)
			testIntegration(t, cni, byKey(t, unstructuredDocs(t, shipped)), byKey(t, unstructuredDocs(t, rendered)))
		})
	}
}

func testIntegration(t *testing.T, cni cniIntegration, shipped, rendered map[objKey]*unstructured.Unstructured) {
	agentDS := daemonSet(t, rendered, cni.agentDaemonSet)
	releaseAgentDS := daemonSet(t, shipped, cni.agentDaemonSet)
	pod := agentDS.Spec.Template.Spec
	ovsDS := daemonSet(t, rendered, cni.ovsDaemonSet)
	ovsPod := ovsDS.Spec.Template.Spec
	ovsC := container(t, ovsPod, cni.ovsContainer)
	ovsHostDir, _ := hostDir(ovsPod, ovsC, ovsContainerRunDir)
	require.NotEmpty(t, ovsHostDir, "%s/%s: %s is not on a hostPath", cni.ovsDaemonSet, cni.ovsContainer, ovsContainerRunDir)
	bridgePod := daemonSet(t, rendered, cni.bridgeDaemonSet).Spec.Template.Spec
	container(t, bridgePod, cni.bridgeContainer)
	container(t, pod, cni.agentContainer)

	var standalone *appsv1.DaemonSet
	if cni.standalone {
		standalone = daemonSet(t, rendered, "ovsgate")
	}
	type podOf struct {
		gateContainer
		pod corev1.PodSpec
		ds  string
	}
	var gates []podOf
	for _, ds := range []*appsv1.DaemonSet{agentDS, standalone} {
		if ds == nil {
			continue
		}
		for _, gc := range gateContainers(t, ds.Spec.Template.Spec) {
			gates = append(gates, podOf{gc, ds.Spec.Template.Spec, ds.Name})
		}
	}

	t.Run("nothing of the release changed but ovsgate's additions", func(t *testing.T) {
		for k, want := range shipped {
			got, ok := rendered[k]
			if !assert.True(t, ok, "%s is missing from the rendering", k) {
				continue
			}
			assert.Equal(t, normalized(t, want.Object), normalized(t, withoutGate(t, got).Object), "%s", k)
		}
		for k, o := range rendered {
			if _, ok := shipped[k]; !ok {
				assert.Equal(t, "ovsgate", o.GetLabels()["app.kubernetes.io/name"], "%s is neither the release's nor ovsgate's", k)
			}
		}
	})

	t.Run("the pod that runs OVS", func(t *testing.T) {
		before := daemonSet(t, shipped, cni.ovsDaemonSet)
		assert.Equal(t, container(t, before.Spec.Template.Spec, cni.ovsContainer), ovsC, "the container that runs OVS is untouched")
		if cni.ovsDaemonSet == cni.agentDaemonSet {
			// Antrea: OVS runs in the agent's pod; it gains the sidecar and
			// nothing else (checked above, byte for byte).
			return
		}
		k := keyOf(mustUnstructured(t, ovsDS))
		assert.Equal(t, normalized(t, shipped[k].Object), normalized(t, rendered[k].Object), "%s is byte-equal to the release", k)
		assert.Empty(t, gateContainers(t, ovsPod), "no ovsgate in the pod that runs OVS")
	})

	t.Run("container order", func(t *testing.T) {
		assert.Equal(t, cni.initOrder, names(pod.InitContainers))
		assert.Equal(t, names(releaseAgentDS.Spec.Template.Spec.Containers), names(pod.Containers), "the main containers")
		for _, g := range gates {
			switch g.command {
			case "wait":
				assert.True(t, g.init, "%s: wait is an init container", g.Name)
				assert.Nil(t, g.RestartPolicy, "%s: wait ends", g.Name)
				// The CNI's own init containers after it run only once OVS
				// is ready: here, install-cni writes no CNI config before.
				assert.Less(t, g.index, slices.Index(names(pod.InitContainers), "install-cni"), "%s before install-cni", g.Name)
				timeout, err := time.ParseDuration(g.value("timeout"))
				require.NoError(t, err)
				assert.Positive(t, timeout, "%s: a timeout, so that a broken OVS shows as Init:Error", g.Name)
			case "serve":
				if g.ds == "ovsgate" {
					assert.False(t, g.init, "the standalone's serve is its pod's main container")
					continue
				}
				assert.True(t, g.init, "%s: a native sidecar", g.Name)
				if assert.NotNil(t, g.RestartPolicy, g.Name) {
					assert.Equal(t, corev1.ContainerRestartPolicyAlways, *g.RestartPolicy, "%s: a native sidecar", g.Name)
				}
				assert.Nil(t, g.StartupProbe, "%s: a startupProbe would hold back the containers after it", g.Name)
				for _, w := range gates {
					if w.command == "wait" && w.ds == g.ds {
						assert.Greater(t, g.index, w.index, "%s starts after %s", g.Name, w.Name)
					}
				}
			}
		}
	})

	t.Run("no init container waits for its own pod", func(t *testing.T) {
		for _, ds := range []*appsv1.DaemonSet{agentDS, ovsDS, standalone} {
			if ds == nil {
				continue
			}
			var needed []string
			if ds.Name == cni.ovsDaemonSet {
				needed = append(needed, cni.ovsContainer)
			}
			if ds.Name == cni.bridgeDaemonSet {
				needed = append(needed, cni.bridgeContainer)
			}
			assert.Empty(t, deadlocks(ds.Spec.Template.Spec, needed...), "DaemonSet %s", ds.Name)
		}
	})

	t.Run("gate containers", func(t *testing.T) {
		require.NotEmpty(t, gates)
		want := release(t)
		for _, g := range gates {
			t.Run(g.ds+"/"+g.Name, func(t *testing.T) {
				checkAccepted(t, g.gateInvocation)
				assert.Equal(t, want, strings.TrimPrefix(g.Image, gateImage+":"), "the Makefile's RELEASE")

				// The run directory and OVSDB socket: read-only, from where
				// the CNI's OVS keeps them on the host.
				for _, p := range []string{g.value("ovs-rundir"), path.Dir(strings.TrimPrefix(g.value("ovsdb"), "unix:"))} {
					h, m := hostDir(g.pod, g.Container, p)
					assert.Equal(t, ovsHostDir, h, "%s: the host directory behind %s", g.Name, p)
					assert.True(t, m.ReadOnly, "%s: %s is mounted read-only", g.Name, p)
				}
				assert.Equal(t, ovsContainerRunDir, g.value("ovs-rundir"), "the default run directory")

				// The user: the owner of OVS's sockets, with no capability.
				sc := g.SecurityContext
				require.NotNil(t, sc)
				uid := runAsUser(ovsPod, ovsC)
				if assert.NotNil(t, sc.RunAsUser) {
					assert.Equal(t, uid, *sc.RunAsUser, "%s runs as the user that runs OVS (%s/%s)", g.Name, cni.ovsDaemonSet, cni.ovsContainer)
				}
				if assert.NotNil(t, sc.RunAsNonRoot) {
					assert.Equal(t, uid != 0, *sc.RunAsNonRoot)
				}
				if assert.NotNil(t, sc.Capabilities) {
					assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
					assert.Empty(t, sc.Capabilities.Add)
				}
				if assert.NotNil(t, sc.AllowPrivilegeEscalation) {
					assert.False(t, *sc.AllowPrivilegeEscalation)
				}
				if assert.NotNil(t, sc.ReadOnlyRootFilesystem) {
					assert.True(t, *sc.ReadOnlyRootFilesystem)
				}
				if sc.Privileged != nil {
					assert.False(t, *sc.Privileged)
				}

				// The status file: in a directory mount the user may write.
				if sf := g.value("status-file"); sf != "" {
					m, ok := mountAt(g.Container, path.Dir(sf))
					if assert.True(t, ok, "the directory of --status-file %s is not mounted", sf) {
						assert.False(t, m.ReadOnly)
						v, ok := volume(g.pod, m.Name)
						require.True(t, ok)
						if uid != 0 {
							assert.NotNil(t, v.EmptyDir, "uid %d cannot write in a hostPath directory kubelet creates for root", uid)
						}
					}
				}

				if g.command == "serve" {
					// The standalone's readiness is its own health, not OVS's
					// (OVS's is the node condition); a sidecar's is OVS's.
					readiness := "/readyz"
					if g.ds == "ovsgate" {
						readiness = "/livez"
					}
					checkProbes(t, g.gateContainer, readiness)
				}
			})
		}
	})

	t.Run("the agent reads the sidecar's status file", func(t *testing.T) {
		var sidecar *podOf
		for i, g := range gates {
			if g.command == "serve" && g.ds == cni.agentDaemonSet {
				sidecar = &gates[i]
			}
		}
		require.NotNil(t, sidecar, "no serve sidecar in %s", cni.agentDaemonSet)
		if cni.agentStatusFile == "" {
			return
		}
		sf := sidecar.value("status-file")
		h, _ := hostDir(pod, sidecar.Container, path.Dir(sf))
		require.NotEmpty(t, h, "the sidecar's status file is not on the host")
		agent := container(t, pod, cni.agentContainer)
		assert.Equal(t, cni.agentStatusFile, containerPath(pod, agent, path.Join(h, path.Base(sf))), "where %s finds it", cni.agentContainer)
		assert.NotEqual(t, "true", sidecar.value("require-flows-restored"),
			"the agent clears flow-restore-wait: a status it waits for must not count it")
		if standalone != nil {
			sg := serveContainer(t, standalone)
			sh, _ := hostDir(standalone.Spec.Template.Spec, sg.Container, path.Dir(sg.value("status-file")))
			assert.NotEqual(t, h, sh, "the sidecar and the standalone DaemonSet write different files")
		}
	})

	if cni.standalone {
		t.Run("standalone", func(t *testing.T) {
			sg := serveContainer(t, standalone)
			assert.Equal(t, ovsReadyCondition, sg.value("node-condition"))
			assert.Equal(t, "true", sg.value("require-flows-restored"), "the node is ready for pods once flows are restored")
		})
	}

	t.Run("ports", func(t *testing.T) {
		owner := map[int32]string{}
		take := func(p int32, who string) {
			if prev, ok := owner[p]; ok && prev != who {
				t.Errorf("port %d: %s and %s", p, prev, who)
			}
			owner[p] = who
		}
		for p, who := range cni.undeclaredPorts {
			take(p, who)
		}
		for k, o := range rendered {
			if k.group != "apps" || k.kind != "DaemonSet" {
				continue
			}
			ds := daemonSet(t, rendered, k.name)
			p := ds.Spec.Template.Spec
			if !p.HostNetwork {
				continue
			}
			for _, c := range allContainers(p) {
				who := o.GetName() + "/" + c.Name
				for _, cp := range c.Ports {
					take(cp.ContainerPort, who)
				}
			}
		}
		for _, g := range gates {
			who := g.ds + "/" + g.Name
			if g.command != "serve" {
				continue
			}
			for _, flag := range []string{"health-probe-bind-address", "metrics-bind-address"} {
				if addr := g.value(flag); addr != "0" {
					take(port(t, addr), who)
				}
			}
		}
	})
}

func mustUnstructured(t *testing.T, obj any) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	require.NoError(t, err)
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("DaemonSet"))
	return u
}

// checkProbes asserts a serve container's listeners and probes: the probe
// listener on loopback, with the readiness path and /livez behind the port
// it declares; the metrics listener off or declared.
func checkProbes(t *testing.T, g gateContainer, readiness string) {
	t.Helper()
	addr := g.value("health-probe-bind-address")
	host, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host, "the probe listener stays on loopback")
	probePort := port(t, addr)
	assert.Equal(t, probePort, namedPort(t, g.Container, "probe"))
	for name, p := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{
		"readinessProbe": {g.ReadinessProbe, readiness},
		"livenessProbe":  {g.LivenessProbe, "/livez"},
	} {
		require.NotNil(t, p.probe, name)
		require.NotNil(t, p.probe.HTTPGet, "%s is an httpGet", name)
		assert.Equal(t, p.path, p.probe.HTTPGet.Path, name)
		assert.Equal(t, "127.0.0.1", p.probe.HTTPGet.Host, name)
		assert.Equal(t, probePort, containerPort(t, g.Container, p.probe.HTTPGet.Port), name)
	}
	if m := g.value("metrics-bind-address"); m != "0" {
		assert.Equal(t, port(t, m), namedPort(t, g.Container, "metrics"))
	}
}

// --- against a real kube-apiserver ------------------------------------------------

// TestIntegrationsAPIServer shows a real kube-apiserver every object of each
// overlay's rendering in a server-side dry run with strict field validation,
// after creating for real what the dry run needs: the namespaces, and the
// CRDs of the custom resources in the rendering.
func TestIntegrationsAPIServer(t *testing.T) {
	c := startCluster(t)
	for _, cni := range integrations {
		t.Run(cni.name, func(t *testing.T) {
			testDryRun(t, c, cni, unstructuredDocs(t, renderIntegration(t, cni, cni.render(t))))
		})
	}
}

func testDryRun(t *testing.T, c *cluster, cni cniIntegration, objs []*unstructured.Unstructured) {
	ctx := t.Context()
	crds := map[string]*unstructured.Unstructured{} // group/kind -> CRD
	namespaces := map[string]bool{}
	for _, o := range objs {
		switch o.GetKind() {
		case "CustomResourceDefinition":
			group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
			crds[group+"/"+kind] = o
		case "Namespace":
			namespaces[o.GetName()] = true
		}
		if ns := o.GetNamespace(); ns != "" {
			namespaces[ns] = true
		}
	}
	for ns := range namespaces {
		_, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			require.NoError(t, err, "namespace %s", ns)
		}
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		crd, ok := crds[gvk.Group+"/"+gvk.Kind]
		if !ok {
			continue
		}
		require.NoError(t, c.apply(t, crd), "CRD %s, for %s %s", crd.GetName(), o.GetKind(), o.GetName())
		var last *unstructured.Unstructured
		require.True(t, testutil.Poll(30*time.Second, func() bool {
			var err error
			last, err = c.resource(t, crd).Get(ctx, crd.GetName(), metav1.GetOptions{})
			return err == nil && established(last)
		}), "CRD %s not Established: %v", crd.GetName(), last)
	}

	force := true
	for _, o := range objs {
		body, err := o.MarshalJSON()
		require.NoError(t, err)
		got, err := c.resource(t, o).Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
			FieldManager: "ovsgate-deploy-test", Force: &force, FieldValidation: metav1.FieldValidationStrict,
			DryRun: []string{metav1.DryRunAll},
		})
		if !assert.NoError(t, err, "%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName()) {
			continue
		}
		if o.GetKind() == "DaemonSet" && o.GetName() == cni.agentDaemonSet {
			// What the API server would store: ovsgate's containers where the
			// overlay put them, the sidecar still a sidecar.
			var ds appsv1.DaemonSet
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(got.Object, &ds))
			pod := ds.Spec.Template.Spec
			assert.Equal(t, cni.initOrder, names(pod.InitContainers))
			sidecar := container(t, pod, "ovsgate")
			if assert.NotNil(t, sidecar.RestartPolicy) {
				assert.Equal(t, corev1.ContainerRestartPolicyAlways, *sidecar.RestartPolicy)
			}
		}
	}
	// Nothing was stored: a dry run.
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			continue
		}
		_, err := c.resource(t, o).Get(ctx, o.GetName(), metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "%s %s/%s was stored: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
}
