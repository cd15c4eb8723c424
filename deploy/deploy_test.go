package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/probe"
)

const (
	baseDir     = "kubernetes/base"
	initOnlyDir = "kubernetes/overlays/init-only"
	unitPath    = "systemd/ovsgate.service"
	dockerPath  = "Dockerfile"

	gateImage = "ghcr.io/ovsgate/ovsgate"
	envPrefix = "OVSGATE_"

	// Linked into the test binary the way the Dockerfile links its build
	// arguments, to prove the -X targets exist.
	testVersion = "v0.0.0-deploytest"
	testCommit  = "c0ffee-deploytest"
)

// ovsgateBin is the real ovsgate binary, built once by TestMain: the
// manifests are checked against what it accepts, not against a copy of its
// flag list.
var ovsgateBin string

func TestMain(m *testing.M) {
	os.Exit(testutil.MainWithOvsgate(m, &ovsgateBin, fmt.Sprintf("-X main.version=%s -X main.commit=%s", testVersion, testCommit), func() error { return goleak.Find() }))
}

// --- rendering and strict decoding ---------------------------------------

// kustomize renders dir with kubectl's built-in kustomize.
func kustomize(t testing.TB, dir string) []byte {
	t.Helper()
	return testutil.Kustomize(t, dir)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict decodes every YAML document of a rendering into its k8s.io/api
// type; a field the type does not know, or a kind not expected here, fails.
func decodeStrict(data []byte) ([]any, error) {
	var objs []any
	for i, doc := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "apps/v1/DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "v1/ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1/ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "rbac.authorization.k8s.io/v1/ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy":
			obj = &admissionv1.ValidatingAdmissionPolicy{}
		case "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding":
			obj = &admissionv1.ValidatingAdmissionPolicyBinding{}
		case nodeReadinessRuleAPIVersion + "/NodeReadinessRule":
			obj = &nodeReadinessRule{} // in standalone_test.go
		default:
			return nil, fmt.Errorf("document %d: unexpected kind %q of %q", i, tm.Kind, tm.APIVersion)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		return nil, errors.New("no documents")
	}
	return objs, nil
}

// renderDaemonSet renders dir and returns its one DaemonSet.
func renderDaemonSet(t *testing.T, dir string) *appsv1.DaemonSet {
	t.Helper()
	objs, err := decodeStrict(kustomize(t, dir))
	require.NoError(t, err)
	require.Len(t, objs, 1, "the rendering of %s holds exactly the DaemonSet", dir)
	ds, ok := objs[0].(*appsv1.DaemonSet)
	require.True(t, ok, "%s renders a %T, want a DaemonSet", dir, objs[0])
	return ds
}

func TestDecodeStrict(t *testing.T) {
	const rule = "apiVersion: readiness.node.x-k8s.io/v1alpha1\nkind: NodeReadinessRule\nmetadata:\n  name: r\nspec:\n"
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{
			name: "valid",
			doc:  "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\nspec:\n  template:\n    spec:\n      hostNetwork: true\n",
		},
		{
			name:    "misspelt field",
			doc:     "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\nspec:\n  template:\n    spec:\n      hostNetwrok: true\n",
			wantErr: "hostNetwrok",
		},
		{
			name:    "field at the wrong level",
			doc:     "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\nspec:\n  hostNetwork: true\n",
			wantErr: "hostNetwork",
		},
		{
			name:    "unexpected kind",
			doc:     "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
			wantErr: "unexpected kind",
		},
		{
			name:    "empty",
			doc:     "---\n",
			wantErr: "no documents",
		},
		{name: "rule", doc: rule + "  conditions:\n    - type: a.io/B\n      requiredStatus: \"True\"\n  enforcementMode: continuous\n  taint:\n    key: readiness.k8s.io/X\n    effect: NoSchedule\n  nodeSelector: {}\n"},
		{name: "rule with a misspelt field", doc: rule + "  conditions:\n    - type: a.io/B\n      requieredStatus: \"True\"\n", wantErr: "requieredStatus"},
		{name: "rule with status", doc: rule + "  nodeSelector: {}\nstatus:\n  appliedNodes: []\n", wantErr: "status"},
		{name: "cluster role", doc: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\nrules:\n  - apiGroups: [\"\"]\n    resources: [nodes]\n    verbs: [get]\n"},
		{name: "cluster role with a misspelt field", doc: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\nrules:\n  - apiGroup: [\"\"]\n", wantErr: "apiGroup"},
		{name: "binding", doc: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: b\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: r\nsubjects:\n  - kind: ServiceAccount\n    name: s\n    namespace: n\n"},
		{name: "namespaced role", doc: "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: r\n", wantErr: "unexpected kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tt.doc))
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// --- the real command line -----------------------------------------------

// runOvsgate runs the built binary with only env in its environment, so that
// no OVSGATE_* variable of the test's own environment leaks in.
func runOvsgate(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	r := testutil.RunOvsgate(t, ovsgateBin, env, args...)
	return r.Stdout, r.Stderr, r.Code
}

var (
	helpFlagLine = regexp.MustCompile(`^\s+(?:-[A-Za-z], )?--([a-z0-9][a-z0-9-]*)(?:\s|$)(.*)$`)
	helpDefault  = regexp.MustCompile(`\(default (.+)\)\s*$`)
)

// commandFlags returns the flags of "ovsgate <command>" (its own and the
// global ones) with their defaults, as its --help prints them.
func commandFlags(t *testing.T, command string) map[string]string {
	t.Helper()
	out, stderr, code := runOvsgate(t, nil, command, "--help")
	require.Equal(t, 0, code, "ovsgate %s --help: %s", command, stderr)
	flags := make(map[string]string)
	for _, line := range strings.Split(out, "\n") {
		m := helpFlagLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		def := ""
		if d := helpDefault.FindStringSubmatch(m[2]); d != nil {
			def = d[1]
			if u, err := strconv.Unquote(def); err == nil {
				def = u
			}
		}
		flags[m[1]] = def
	}
	require.Contains(t, flags, "bridge", "cannot parse the flags out of:\n%s", out)
	return flags
}

// flagName returns the flag an argument sets ("--timeout=5m" -> "timeout"),
// or "" for a positional argument.
func flagName(arg string) string {
	if !strings.HasPrefix(arg, "-") {
		return ""
	}
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return name
}

// envFlag is the flag an OVSGATE_* variable sets (the inverse of the daemon's
// naming rule: OVSGATE_OVS_RUNDIR -> ovs-rundir).
func envFlag(name string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, envPrefix), "_", "-"))
}

// gateInvocation is one use of the ovsgate binary: a container or a unit.
type gateInvocation struct {
	command string   // serve, wait, check
	args    []string // after the command
	env     []corev1.EnvVar
	flags   map[string]string // of the command, with defaults
}

// value is the flag's effective value: the command line wins over the
// environment, which wins over the default.
func (g gateInvocation) value(flag string) string {
	val, set := "", false
	for i, a := range g.args {
		switch {
		case strings.HasPrefix(a, "--"+flag+"="):
			val, set = strings.TrimPrefix(a, "--"+flag+"="), true
		case a == "--"+flag && i+1 < len(g.args):
			val, set = g.args[i+1], true
		}
	}
	if set {
		return val
	}
	for _, e := range g.env {
		if e.Name == envPrefix+strings.ToUpper(strings.ReplaceAll(flag, "-", "_")) {
			return envValue(e)
		}
	}
	return g.flags[flag]
}

func (g gateInvocation) envList() []string {
	var env []string
	for _, e := range g.env {
		env = append(env, e.Name+"="+envValue(e))
	}
	return env
}

// exampleNodeName stands in for the node name a pod gets from the downward
// API when an invocation is run here.
const exampleNodeName = "node-1"

// nodeNameFromPod reports OVSGATE_NODE_NAME taken from the downward API's
// spec.nodeName, the one variable a manifest may give ovsgate that way.
func nodeNameFromPod(e corev1.EnvVar) bool {
	v := e.ValueFrom
	return e.Name == envPrefix+"NODE_NAME" && e.Value == "" && v != nil &&
		v.FieldRef != nil && v.FieldRef.FieldPath == "spec.nodeName" &&
		v.ResourceFieldRef == nil && v.ConfigMapKeyRef == nil && v.SecretKeyRef == nil && v.FileKeyRef == nil
}

// envValue is a variable's value, exampleNodeName for the node name from the
// downward API.
func envValue(e corev1.EnvVar) string {
	if nodeNameFromPod(e) {
		return exampleNodeName
	}
	return e.Value
}

// checkAccepted asserts that ovsgate accepts the invocation: every flag
// exists, every value parses, every OVSGATE_* variable names a flag and
// passes the daemon's own validation.
func checkAccepted(t *testing.T, g gateInvocation) {
	t.Helper()
	for _, a := range g.args {
		if name := flagName(a); name != "" {
			assert.Contains(t, g.flags, name, "ovsgate %s has no flag --%s", g.command, name)
		}
	}
	// Cobra parses (and rejects) every flag and value before it honours --help.
	_, stderr, code := runOvsgate(t, nil, append(append([]string{g.command}, g.args...), "--help")...)
	assert.Equal(t, 0, code, "ovsgate %s %v rejects its arguments: %s", g.command, g.args, stderr)

	for _, e := range g.env {
		require.True(t, strings.HasPrefix(e.Name, envPrefix), "variable %s is not read by ovsgate", e.Name)
		if !nodeNameFromPod(e) {
			assert.Nil(t, e.ValueFrom, "%s: use a literal value", e.Name)
		}
		assert.Contains(t, g.flags, envFlag(e.Name), "%s maps to --%s, which ovsgate %s lacks", e.Name, envFlag(e.Name), g.command)
	}
	// The environment is validated when a command runs, not on --help: run a
	// check bounded to a millisecond. Not ready (1) or ready (0) are fine; 2
	// means a variable was rejected.
	_, stderr, code = runOvsgate(t, g.envList(), "check", "--timeout=1ms", "--status-file=")
	assert.NotEqual(t, 2, code, "ovsgate rejects the environment %v: %s", g.envList(), stderr)
}

// --- the DaemonSet -----------------------------------------------------------

func imageRepo(image string) string {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err, "address %q", addr)
	n, err := strconv.ParseInt(p, 10, 32)
	require.NoError(t, err, "port of %q", addr)
	return int32(n)
}

// containerPort resolves a probe's port (a number or a port name).
func containerPort(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

func namedPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	return containerPort(t, c, intstr.FromString(name))
}

func mountAt(c corev1.Container, path string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volume(pod corev1.PodSpec, name string) (corev1.Volume, bool) {
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

// gateContainer is a container running ovsgate, with where it sits.
type gateContainer struct {
	corev1.Container
	gateInvocation
	init  bool
	index int
}

func gateContainers(t *testing.T, pod corev1.PodSpec) []gateContainer {
	t.Helper()
	var gcs []gateContainer
	add := func(cs []corev1.Container, init bool) {
		for i, c := range cs {
			if imageRepo(c.Image) != gateImage {
				continue
			}
			require.Empty(t, c.Command, "container %s: the image's ENTRYPOINT is ovsgate; give the command in args", c.Name)
			require.NotEmpty(t, c.Args, "container %s: no ovsgate command in args", c.Name)
			cmd := c.Args[0]
			require.Contains(t, []string{"serve", "wait", "check"}, cmd, "container %s", c.Name)
			gcs = append(gcs, gateContainer{
				Container:      c,
				gateInvocation: gateInvocation{command: cmd, args: c.Args[1:], env: c.Env, flags: commandFlags(t, cmd)},
				init:           init,
				index:          i,
			})
		}
	}
	add(pod.InitContainers, true)
	add(pod.Containers, false)
	return gcs
}

func allContainers(pod corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(pod.InitContainers), pod.Containers...)
}

// checkPod asserts what holds for the base and every overlay.
func checkPod(t *testing.T, ds *appsv1.DaemonSet) []gateContainer {
	t.Helper()
	pod := ds.Spec.Template.Spec
	statusDir := filepath.Dir(probe.DefaultStatusFile)

	t.Run("pod", func(t *testing.T) {
		assert.Equal(t, "ovsgate-example", ds.Name)
		assert.True(t, pod.HostNetwork, "hostNetwork")
		assert.False(t, pod.HostPID, "hostPID is not needed: ovsgate finds ovs-vswitchd through its run directory")
		assert.Equal(t, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, pod.Tolerations)
		assert.Equal(t, "system-node-critical", pod.PriorityClassName)
		if assert.NotNil(t, pod.AutomountServiceAccountToken) {
			assert.False(t, *pod.AutomountServiceAccountToken, "ovsgate does not talk to the API server")
		}
		assert.Equal(t, ds.Spec.Selector.MatchLabels["app"], ds.Spec.Template.Labels["app"])
	})

	t.Run("securityContext", func(t *testing.T) {
		for _, c := range allContainers(pod) {
			sc := c.SecurityContext
			require.NotNil(t, sc, "container %s", c.Name)
			if assert.NotNil(t, sc.ReadOnlyRootFilesystem, c.Name) {
				assert.True(t, *sc.ReadOnlyRootFilesystem, "%s: readOnlyRootFilesystem", c.Name)
			}
			if assert.NotNil(t, sc.AllowPrivilegeEscalation, c.Name) {
				assert.False(t, *sc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation", c.Name)
			}
			if sc.Privileged != nil {
				assert.False(t, *sc.Privileged, "%s: privileged", c.Name)
			}
			if assert.NotNil(t, sc.Capabilities, c.Name) {
				assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, "%s: drop every capability", c.Name)
				assert.Empty(t, sc.Capabilities.Add, "%s: ovsgate needs no capability", c.Name)
			}
		}
	})

	gcs := gateContainers(t, pod)
	require.NotEmpty(t, gcs, "no container runs %s", gateImage)

	t.Run("gate containers", func(t *testing.T) {
		for _, gc := range gcs {
			t.Run(gc.Name, func(t *testing.T) {
				checkAccepted(t, gc.gateInvocation)

				// uid 0 because the OVS sockets are root-owned; see the comment
				// in daemonset.yaml.
				sc := gc.SecurityContext
				if assert.NotNil(t, sc.RunAsUser) {
					assert.Equal(t, int64(0), *sc.RunAsUser)
				}

				r := gc.Resources
				assert.Zero(t, r.Requests.Cpu().Cmp(resource.MustParse("10m")), "cpu request %s", r.Requests.Cpu())
				assert.Zero(t, r.Requests.Memory().Cmp(resource.MustParse("32Mi")), "memory request %s", r.Requests.Memory())
				assert.Zero(t, r.Limits.Memory().Cmp(resource.MustParse("64Mi")), "memory limit %s", r.Limits.Memory())
				assert.NotContains(t, r.Limits, corev1.ResourceCPU, "a throttled gate answers probes late")

				// The OVS run directory: read-only, at the daemon's default,
				// from the same host path.
				rundir := gc.value("ovs-rundir")
				assert.Equal(t, gc.flags["ovs-rundir"], rundir, "the manifest keeps the --ovs-rundir default")
				m, ok := mountAt(gc.Container, rundir)
				if assert.True(t, ok, "--ovs-rundir %s is not mounted", rundir) {
					assert.True(t, m.ReadOnly, "the OVS run directory is mounted read-only")
					assert.Empty(t, m.SubPath)
					v, ok := volume(pod, m.Name)
					require.True(t, ok, "volume %s", m.Name)
					if assert.NotNil(t, v.HostPath, "volume %s is a hostPath", v.Name) {
						assert.Equal(t, rundir, v.HostPath.Path)
					}
				}
				ovsdb := gc.value("ovsdb")
				if sock, ok := strings.CutPrefix(ovsdb, "unix:"); ok {
					_, ok := mountAt(gc.Container, filepath.Dir(sock))
					assert.True(t, ok, "the directory of --ovsdb %s is not mounted", ovsdb)
				}

				// The status file: through a writable directory mount.
				if sf := gc.value("status-file"); sf != "" {
					assert.Equal(t, probe.DefaultStatusFile, sf)
					m, ok := mountAt(gc.Container, filepath.Dir(sf))
					if assert.True(t, ok, "the directory of --status-file %s is not mounted", sf) {
						assert.False(t, m.ReadOnly, "ovsgate writes the status file")
						assert.Empty(t, m.SubPath, "the status directory is mounted whole")
					}
				}
			})
		}
	})

	t.Run("status file shared as a directory", func(t *testing.T) {
		var name string
		for _, c := range allContainers(pod) {
			for _, m := range c.VolumeMounts {
				assert.NotEqual(t, probe.DefaultStatusFile, m.MountPath,
					"%s mounts the status file itself: a file mount never sees the renamed replacement", c.Name)
				if m.MountPath == statusDir {
					assert.Empty(t, m.SubPath, "%s", c.Name)
					name = m.Name
				}
			}
		}
		require.NotEmpty(t, name, "nothing mounts %s", statusDir)
		v, ok := volume(pod, name)
		require.True(t, ok, "volume %s", name)
		switch {
		case v.HostPath != nil:
			assert.Equal(t, statusDir, v.HostPath.Path)
			if assert.NotNil(t, v.HostPath.Type) {
				assert.Equal(t, corev1.HostPathDirectoryOrCreate, *v.HostPath.Type)
			}
		case v.EmptyDir != nil:
		default:
			t.Errorf("volume %s is neither a hostPath directory nor an emptyDir", name)
		}
	})

	t.Run("wait init container", func(t *testing.T) {
		var waits []gateContainer
		for _, gc := range gcs {
			if gc.command == "wait" {
				waits = append(waits, gc)
			}
		}
		require.Len(t, waits, 1)
		w := waits[0]
		assert.True(t, w.init, "wait runs as an init container")
		assert.Nil(t, w.RestartPolicy, "wait is a plain init container, not a sidecar")
		timeout, err := time.ParseDuration(w.value("timeout"))
		require.NoError(t, err)
		assert.Positive(t, timeout, "an init container with no --timeout hides a broken OVS behind a pod stuck in Init")
		assert.Equal(t, probe.DefaultStatusFile, w.value("status-file"), "wait writes the status file for the agent")
	})

	t.Run("agent reads the status file", func(t *testing.T) {
		var found bool
		for _, c := range pod.Containers {
			if imageRepo(c.Image) == gateImage {
				continue
			}
			m, ok := mountAt(c, statusDir)
			if !ok {
				continue
			}
			found = true
			assert.True(t, m.ReadOnly, "%s only reads the status", c.Name)
			// The path, or a variable that holds it.
			cmd := strings.Join(append(c.Command, c.Args...), " ")
			for _, e := range c.Env {
				if e.Value == probe.DefaultStatusFile && strings.Contains(cmd, "$"+e.Name) {
					cmd += " " + e.Value
				}
			}
			assert.Contains(t, cmd, probe.DefaultStatusFile, c.Name)
		}
		assert.True(t, found, "no main container reads %s", statusDir)
	})
	return gcs
}

func TestBase(t *testing.T) {
	ds := renderDaemonSet(t, baseDir)
	gcs := checkPod(t, ds)
	pod := ds.Spec.Template.Spec

	var serves []gateContainer
	var waitIndex = -1
	for _, gc := range gcs {
		switch gc.command {
		case "serve":
			serves = append(serves, gc)
		case "wait":
			waitIndex = gc.index
		}
	}
	require.Len(t, serves, 1, "one serve container")
	s := serves[0]

	t.Run("native sidecar", func(t *testing.T) {
		assert.True(t, s.init, "serve runs in initContainers")
		if assert.NotNil(t, s.RestartPolicy) {
			assert.Equal(t, corev1.ContainerRestartPolicyAlways, *s.RestartPolicy)
		}
		assert.Greater(t, s.index, waitIndex, "serve starts after wait")
	})

	probePort := port(t, probe.DefaultProbeAddr)
	metricsPort := port(t, probe.DefaultMetricsAddr)

	t.Run("probes", func(t *testing.T) {
		assert.Equal(t, probe.DefaultProbeAddr, s.flags["health-probe-bind-address"], "help and probe constants agree")
		assert.Equal(t, probe.DefaultMetricsAddr, s.flags["metrics-bind-address"], "help and probe constants agree")
		assert.Equal(t, probe.DefaultStatusFile, s.flags["status-file"], "help and probe constants agree")
		assert.Equal(t, probePort, port(t, s.value("health-probe-bind-address")))
		assert.Equal(t, metricsPort, port(t, s.value("metrics-bind-address")))
		assert.Equal(t, probePort, namedPort(t, s.Container, "probe"))
		assert.Equal(t, metricsPort, namedPort(t, s.Container, "metrics"))

		for name, p := range map[string]struct {
			probe *corev1.Probe
			path  string
		}{
			"startupProbe":   {s.StartupProbe, "/readyz"},
			"readinessProbe": {s.ReadinessProbe, "/readyz"},
			"livenessProbe":  {s.LivenessProbe, "/livez"},
		} {
			require.NotNil(t, p.probe, name)
			require.NotNil(t, p.probe.HTTPGet, "%s is an httpGet", name)
			assert.Equal(t, p.path, p.probe.HTTPGet.Path, name)
			assert.Equal(t, probePort, containerPort(t, s.Container, p.probe.HTTPGet.Port), name)
			// kubelet probes a host-network pod from the host: loopback.
			assert.Equal(t, "127.0.0.1", p.probe.HTTPGet.Host, name)
		}
		// The probe listener (/status, reasons) is not open to the network;
		// the metrics listener is, for Prometheus.
		host, _, err := net.SplitHostPort(s.value("health-probe-bind-address"))
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1", host)
		host, _, err = net.SplitHostPort(s.value("metrics-bind-address"))
		require.NoError(t, err)
		assert.Empty(t, host, "metrics on every interface")
		// A startup probe that gives up before wait would is pointless.
		sp := s.StartupProbe
		assert.GreaterOrEqual(t, time.Duration(sp.PeriodSeconds*sp.FailureThreshold)*time.Second, time.Minute)
	})

	ann := ds.Spec.Template.Annotations
	t.Run("prometheus annotations", func(t *testing.T) {
		assert.Equal(t, "true", ann["prometheus.io/scrape"])
		assert.Equal(t, strconv.Itoa(int(metricsPort)), ann["prometheus.io/port"])
		assert.Equal(t, "/metrics", ann["prometheus.io/path"])
	})

	t.Run("paths served by the daemon", func(t *testing.T) {
		checkServed(t, s.StartupProbe.HTTPGet.Path, s.LivenessProbe.HTTPGet.Path, ann["prometheus.io/path"])
	})

	t.Run("image", func(t *testing.T) {
		checkImages(t, pod)
	})
}

// release is the Makefile's RELEASE: the version these sources make.
func release(t *testing.T) string {
	t.Helper()
	return makefileVar(t, "RELEASE")
}

// makefileVar is the value the Makefile gives the variable name (NAME := value).
func makefileVar(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s*:=\s*(\S+)\s*$`).FindSubmatch(b)
	require.NotNil(t, m, "the Makefile sets %s", name)
	return string(m[1])
}

// checkImages asserts that every image has a pinned tag, never latest, and
// that ovsgate's is the Makefile's release: a restart then pulls nothing
// new, and a rollback is a tag away.
func checkImages(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	want := release(t)
	for _, c := range allContainers(pod) {
		repo, tag, ok := strings.Cut(strings.TrimPrefix(c.Image, imageRepo(c.Image)), ":")
		assert.True(t, ok && repo == "", "%s: kustomize images: pins a tag: %s", c.Name, c.Image)
		assert.NotEqual(t, "latest", tag, "%s: latest means a pull on every restart and no way back", c.Name)
		if imageRepo(c.Image) == gateImage {
			assert.Equal(t, want, tag, "%s: the Makefile's RELEASE", c.Name)
		}
		assert.Empty(t, c.ImagePullPolicy, "%s: the default (IfNotPresent for a tag that is not latest)", c.Name)
	}
}

func TestInitOnlyOverlay(t *testing.T) {
	ds := renderDaemonSet(t, initOnlyDir)
	gcs := checkPod(t, ds)
	for _, gc := range gcs {
		assert.NotEqual(t, "serve", gc.command, "container %s still serves", gc.Name)
	}
	for _, c := range allContainers(ds.Spec.Template.Spec) {
		assert.Nil(t, c.RestartPolicy, "container %s is a sidecar", c.Name)
		assert.Nil(t, c.ReadinessProbe, "container %s: nothing serves /readyz", c.Name)
	}
	for k := range ds.Spec.Template.Annotations {
		assert.False(t, strings.HasPrefix(k, "prometheus.io/"), "annotation %s: nothing serves /metrics", k)
	}
}

// checkServed runs the real daemon (against an OVS that is not there) and
// asserts that the paths the manifest probes and scrapes exist: /readyz
// answers 503 (not ready, not 404), /livez 200, /metrics 200.
func checkServed(t *testing.T, readyPath, livePath, metricsPath string) {
	dir := t.TempDir()
	statusFile := filepath.Join(dir, "run", "status.json")
	d := testutil.StartOvsgate(t, ovsgateBin, nil, "serve",
		"--health-probe-bind-address="+testutil.AnyPort, "--metrics-bind-address="+testutil.AnyPort,
		"--status-file="+statusFile, "--ovsdb=unix:"+filepath.Join(dir, "db.sock"), "--ovs-rundir="+dir)
	exited, stderr := d.Exited(), d.Stderr
	probeAddr, metricsAddr := d.Addrs(t)

	var code int
	var body string
	live := testutil.Poll(30*time.Second, func() bool {
		code, body = testutil.Get("http://" + probeAddr + livePath)
		return code == http.StatusOK || !d.Running()
	})
	select {
	case <-exited:
		t.Fatalf("ovsgate serve exited early (%v): %s", d.Err(), stderr.String())
	default:
	}
	require.True(t, live, "%s never answered 200 (last: %d, %s): %s", livePath, code, body, stderr.String())
	code, body = testutil.Get("http://" + probeAddr + readyPath)
	require.NotZero(t, code, body)
	assert.Equal(t, http.StatusServiceUnavailable, code, "%s without OVS: %s", readyPath, body)
	code, body = testutil.Get("http://" + metricsAddr + metricsPath)
	require.NotZero(t, code, body)
	assert.Equal(t, http.StatusOK, code, metricsPath)
	assert.Contains(t, body, "ovsgate_ready ")

	assert.NoError(t, d.Stop(), "serve exits 0 after SIGTERM: %s", stderr.String())
	b, err := os.ReadFile(statusFile)
	require.NoError(t, err)
	var status struct{ Ready *bool }
	require.NoError(t, json.Unmarshal(b, &status))
	if assert.NotNil(t, status.Ready) {
		assert.False(t, *status.Ready)
	}
}

// --- systemd -----------------------------------------------------------------

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(r io.Reader) (unit, error) {
	u := make(unit)
	var section string
	sc := bufio.NewScanner(r)
	var cont string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line = cont + " " + line
			cont = ""
		}
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cont = strings.TrimSpace(strings.TrimSuffix(line, `\`))
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", n, line)
			}
			section = line[1 : len(line)-1]
			if _, ok := u[section]; ok {
				return nil, fmt.Errorf("line %d: section %s repeated", n, section)
			}
			u[section] = make(map[string][]string)
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: want KEY=VALUE in a section, got %q", n, line)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		u[section][key] = append(u[section][key], val)
	}
	return u, sc.Err()
}

func (u unit) get(section, key string) (string, bool) {
	vs, ok := u[section][key]
	if !ok {
		return "", false
	}
	return vs[len(vs)-1], true
}

// words is every value of a list-valued key, split.
func (u unit) words(section, key string) []string {
	var ws []string
	for _, v := range u[section][key] {
		ws = append(ws, strings.Fields(v)...)
	}
	return ws
}

func TestParseUnit(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    unit
		wantErr string
	}{
		{
			name: "keys, comments, repeats",
			text: "# c\n[Unit]\nAfter=a.service\nAfter=b.service\n\n[Service]\n; c\nExecStart=/bin/x \\\n  serve\nCapabilityBoundingSet=\n",
			want: unit{
				"Unit":    {"After": {"a.service", "b.service"}},
				"Service": {"ExecStart": {"/bin/x serve"}, "CapabilityBoundingSet": {""}},
			},
		},
		{name: "key outside a section", text: "A=b\n", wantErr: "line 1"},
		{name: "not a key", text: "[Unit]\nnonsense\n", wantErr: "line 2"},
		{name: "repeated section", text: "[Unit]\n[Unit]\n", wantErr: "repeated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := parseUnit(strings.NewReader(tt.text))
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, u)
		})
	}
}

func TestSystemdUnit(t *testing.T) {
	f, err := os.Open(unitPath)
	require.NoError(t, err)
	defer f.Close()
	u, err := parseUnit(f)
	require.NoError(t, err)

	t.Run("ordering", func(t *testing.T) {
		after, wants := u.words("Unit", "After"), u.words("Unit", "Wants")
		for _, svc := range []string{"openvswitch-switch.service", "openvswitch.service"} { // Debian, RHEL
			assert.Contains(t, after, svc)
			assert.Contains(t, wants, svc)
		}
		for _, svc := range []string{"ovsdb-server.service", "ovs-vswitchd.service"} {
			assert.Contains(t, after, svc)
		}
		for _, key := range []string{"BindsTo", "PartOf", "Requires"} {
			assert.NotContains(t, u["Unit"], key, "ovsgate must outlive an OVS restart to report it")
		}
		v, _ := u.get("Install", "WantedBy")
		assert.Equal(t, "multi-user.target", v)
	})

	t.Run("ExecStart", func(t *testing.T) {
		require.Len(t, u["Service"]["ExecStart"], 1)
		fields := strings.Fields(u["Service"]["ExecStart"][0])
		require.GreaterOrEqual(t, len(fields), 2)
		assert.Equal(t, "/usr/local/bin/ovsgate", fields[0])
		assert.Equal(t, "serve", fields[1])
		checkAccepted(t, gateInvocation{command: "serve", args: fields[2:], flags: commandFlags(t, "serve")})
	})

	t.Run("hardening", func(t *testing.T) {
		want := map[string]string{
			"Restart":               "on-failure",
			"NoNewPrivileges":       "yes",
			"ProtectSystem":         "strict",
			"ProtectHome":           "yes",
			"PrivateTmp":            "yes",
			"PrivateDevices":        "yes",
			"ProtectKernelTunables": "yes",
			"ProtectKernelModules":  "yes",
			"ProtectControlGroups":  "yes",
			"CapabilityBoundingSet": "", // empty: no capability at all
			"AmbientCapabilities":   "",
		}
		for key, val := range want {
			got, ok := u.get("Service", key)
			if assert.True(t, ok, "[Service] %s missing", key) {
				assert.Equal(t, val, got, key)
			}
		}
		assert.ElementsMatch(t, []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"},
			u.words("Service", "RestrictAddressFamilies"))
		if user, ok := u.get("Service", "User"); ok {
			assert.Equal(t, "root", user, "the OVS sockets are root-owned")
		}
		assert.NotContains(t, u["Service"], "DynamicUser", "the OVS sockets are root-owned")
	})

	t.Run("status directory", func(t *testing.T) {
		// /var/run is /run on every systemd host; the runtime directory is
		// where the status file's default path lands.
		dir := filepath.Dir(probe.DefaultStatusFile)
		rundir, ok := u.get("Service", "RuntimeDirectory")
		require.True(t, ok, "RuntimeDirectory")
		assert.Equal(t, filepath.Base(dir), rundir)
		assert.Equal(t, "/var/run", filepath.Dir(dir))
		assert.Contains(t, u.words("Service", "ReadWritePaths"), "/run/"+rundir)
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			testutil.SkipUnlessCI(t, "systemd-analyze not found (Debian's systemd package; make test-deps installs it): %v", err)
		}
		// verify insists that the binary exists: point it at the test build.
		text, err := os.ReadFile(unitPath)
		require.NoError(t, err)
		copyPath := filepath.Join(t.TempDir(), "ovsgate.service")
		require.NoError(t, os.WriteFile(copyPath,
			bytes.ReplaceAll(text, []byte("/usr/local/bin/ovsgate"), []byte(ovsgateBin)), 0o644))
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, analyze, "verify", copyPath).CombinedOutput()
		assert.NoError(t, err, "%s", out)
		assert.NotContains(t, string(out), "ovsgate.service", "warnings about the unit")
	})
}

// --- Dockerfile --------------------------------------------------------------

func TestDockerfile(t *testing.T) {
	text, err := os.ReadFile(dockerPath)
	require.NoError(t, err)
	df := string(text)

	var froms []string
	for _, line := range strings.Split(df, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.EqualFold(f[0], "FROM") {
			continue
		}
		f = slices.DeleteFunc(f[1:], func(s string) bool { return strings.HasPrefix(s, "--") })
		require.NotEmpty(t, f, "FROM without an image: %q", line)
		froms = append(froms, f[0])
	}
	require.Len(t, froms, 2, "a builder stage and the final stage")

	t.Run("builder matches go.mod", func(t *testing.T) {
		gomod, err := os.ReadFile("../go.mod")
		require.NoError(t, err)
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
		require.NotNil(t, m, "go directive in go.mod")
		assert.Equal(t, "golang:"+string(m[1]), froms[0])
	})

	t.Run("final image", func(t *testing.T) {
		assert.Equal(t, "gcr.io/distroless/static-debian12", froms[1],
			"the static image running as root: the nonroot variant cannot reach the root-owned OVS sockets")
		final := df[strings.LastIndex(df, "\nFROM "):]
		entry := regexp.MustCompile(`(?m)^ENTRYPOINT (.+)$`).FindStringSubmatch(final)
		cmd := regexp.MustCompile(`(?m)^CMD (.+)$`).FindStringSubmatch(final)
		require.NotNil(t, entry, "ENTRYPOINT")
		require.NotNil(t, cmd, "CMD")
		var entryv, cmdv []string
		require.NoError(t, json.Unmarshal([]byte(entry[1]), &entryv), "ENTRYPOINT in exec form")
		require.NoError(t, json.Unmarshal([]byte(cmd[1]), &cmdv), "CMD in exec form")
		assert.Equal(t, []string{"/ovsgate"}, entryv)
		assert.Equal(t, []string{"serve"}, cmdv)
		assert.Contains(t, final, "COPY --from=build /out/ovsgate /ovsgate")
		assert.Contains(t, final, fmt.Sprintf("EXPOSE %d %d",
			port(t, probe.DefaultProbeAddr), port(t, probe.DefaultMetricsAddr)))
	})

	t.Run("build flags", func(t *testing.T) {
		assert.Contains(t, df, "CGO_ENABLED=0")
		assert.Contains(t, df, "-trimpath")
		assert.Contains(t, df, `-ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}"`)
		// The -X targets exist: a misspelt one would be ignored silently.
		out, stderr, code := runOvsgate(t, nil, "version")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, out, "ovsgate "+testVersion+"\n")
		assert.Contains(t, out, "commit: "+testCommit+"\n")
	})
}
