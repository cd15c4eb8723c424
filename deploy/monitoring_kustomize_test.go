package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const (
	// The labels kube-prometheus-stack's Prometheus and Grafana select by
	// default: ruleSelector and podMonitorSelector match release: <the Helm
	// release>, the dashboard sidecar grafana_dashboard: "1".
	releaseLabel   = "release"
	defaultRelease = "kube-prometheus-stack"
	dashboardLabel = "grafana_dashboard"

	monitoringNamespace  = "monitoring"
	monitoringAPIVersion = "monitoring.coreos.com/v1"
	metricsPath          = "/metrics"

	readmePath = "../README.md"
	// monitoringRemote is how the README names deploy/monitoring in a
	// kustomization, followed by a release tag.
	monitoringRemote = "github.com/ovsgate/ovsgate/deploy/monitoring?ref="
)

// podMonitor is a monitoring.coreos.com/v1 PodMonitor with the fields the
// shipped one uses, named as in the Prometheus Operator's API, so that a
// strict decoding rejects a misspelt field (which the operator would ignore).
type podMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		NamespaceSelector struct {
			Any        bool     `json:"any"`
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port        string `json:"port"`
			Path        string `json:"path"`
			Relabelings []struct {
				Action       string   `json:"action"`
				SourceLabels []string `json:"sourceLabels"`
				Separator    *string  `json:"separator"`
				Regex        string   `json:"regex"`
				TargetLabel  string   `json:"targetLabel"`
				Replacement  *string  `json:"replacement"`
			} `json:"relabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// monitoringRendering is deploy/monitoring, or an overlay of it, rendered
// and decoded strictly.
type monitoringRendering struct {
	configMaps  []*corev1.ConfigMap
	rules       []*rulefmt.RuleGroups
	ruleMeta    []metav1.ObjectMeta
	podMonitors []*podMonitor
}

// objects returns the metadata of every object of the rendering.
func (r monitoringRendering) objects() []metav1.ObjectMeta {
	objs := slices.Clone(r.ruleMeta)
	for _, cm := range r.configMaps {
		objs = append(objs, cm.ObjectMeta)
	}
	for _, pm := range r.podMonitors {
		objs = append(objs, pm.Metadata)
	}
	return objs
}

func renderMonitoring(t *testing.T, dir string) monitoringRendering {
	t.Helper()
	var r monitoringRendering
	for i, doc := range docSeparator.Split(string(kustomize(t, dir)), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		require.NoError(t, yaml.Unmarshal([]byte(doc), &tm), "document %d", i)
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/ConfigMap":
			var cm corev1.ConfigMap
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &cm), "document %d", i)
			r.configMaps = append(r.configMaps, &cm)
		case monitoringAPIVersion + "/PrometheusRule":
			pr, groups, err := parsePrometheusRule([]byte(doc))
			require.NoError(t, err, "document %d", i)
			r.rules = append(r.rules, groups)
			r.ruleMeta = append(r.ruleMeta, pr.Metadata)
		case monitoringAPIVersion + "/PodMonitor":
			var pm podMonitor
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &pm), "document %d", i)
			r.podMonitors = append(r.podMonitors, &pm)
		default:
			t.Fatalf("%s, document %d: unexpected kind %q of %q", dir, i, tm.Kind, tm.APIVersion)
		}
	}
	return r
}

// kustomizations returns the directories of every kustomization under
// kubernetes/: the bases and their overlays.
func kustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	for _, pattern := range []string{"kubernetes/*/kustomization.yaml", "kubernetes/overlays/*/kustomization.yaml"} {
		paths, err := filepath.Glob(pattern)
		require.NoError(t, err)
		for _, p := range paths {
			dirs = append(dirs, filepath.Dir(p))
		}
	}
	require.Contains(t, dirs, baseDir)
	require.Contains(t, dirs, standaloneDir)
	return dirs
}

// TestPodMonitorScrapesTheDaemonSets renders every DaemonSet the repository
// ships and checks that the PodMonitor finds the metrics listener of each
// `ovsgate serve`: its selector matches the pod's labels, its namespace
// selector reaches the pod's namespace, and its port name is the serve
// container's metrics port. A DaemonSet without serve (init-only) has
// nothing to scrape and must offer no such port.
func TestPodMonitorScrapesTheDaemonSets(t *testing.T) {
	r := renderMonitoring(t, monitoringDir)
	require.Len(t, r.podMonitors, 1, "one PodMonitor")
	pm := r.podMonitors[0]
	require.NotEmpty(t, pm.Spec.PodMetricsEndpoints)
	selector, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	require.NoError(t, err)
	require.False(t, selector.Empty(), "a PodMonitor without a selector scrapes every pod")

	var scraped int
	for _, dir := range kustomizations(t) {
		objs, err := decodeStrict(kustomize(t, dir))
		require.NoError(t, err, dir)
		for _, obj := range objs {
			ds, ok := obj.(*appsv1.DaemonSet)
			if !ok {
				continue
			}
			t.Run(dir+"/"+ds.Name, func(t *testing.T) {
				pod := ds.Spec.Template
				var serves []gateContainer
				for _, gc := range gateContainers(t, pod.Spec) {
					if gc.command == "serve" {
						serves = append(serves, gc)
					}
				}
				if len(serves) == 0 {
					for _, ep := range pm.Spec.PodMetricsEndpoints {
						for _, c := range allContainers(pod.Spec) {
							assert.False(t, slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == ep.Port }),
								"container %s offers port %q, but nothing serves metrics in this pod", c.Name, ep.Port)
						}
					}
					return
				}
				require.Len(t, serves, 1, "one serve container")
				serve := serves[0]
				scraped++

				assert.True(t, selector.Matches(k8slabels.Set(pod.Labels)),
					"selector %s does not match the pod labels %v", selector, pod.Labels)
				ns := pm.Spec.NamespaceSelector
				assert.True(t, ns.Any || slices.Contains(ns.MatchNames, ds.Namespace),
					"the namespace selector %+v does not reach namespace %q", ns, ds.Namespace)

				metricsPort := port(t, serve.value("metrics-bind-address"))
				for _, ep := range pm.Spec.PodMetricsEndpoints {
					require.NotEmpty(t, ep.Port, "an endpoint without a port name scrapes every port of the pod")
					var with []string
					for _, c := range allContainers(pod.Spec) {
						if slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == ep.Port }) {
							with = append(with, c.Name)
						}
					}
					assert.Equal(t, []string{serve.Name}, with, "the containers with a port named %q", ep.Port)
					assert.Equal(t, metricsPort, namedPort(t, serve.Container, ep.Port), "port %q is serve's --metrics-bind-address", ep.Port)
					path := ep.Path
					if path == "" {
						path = metricsPath
					}
					assert.Equal(t, metricsPath, path, "the path serve answers metrics on")
				}
			})
		}
	}
	assert.GreaterOrEqual(t, scraped, 2, "the base and the standalone DaemonSet are scraped")
}

// relabelTarget returns the value the endpoint's relabelings give a target
// label, from a source label (a meta label) or as a fixed replacement.
func relabelTarget(pm *podMonitor, target string) (source, replacement string) {
	for _, ep := range pm.Spec.PodMetricsEndpoints {
		for _, rc := range ep.Relabelings {
			if rc.TargetLabel != target || (rc.Action != "" && rc.Action != "replace") {
				continue
			}
			source = strings.Join(rc.SourceLabels, ";")
			if rc.Replacement != nil {
				replacement = *rc.Replacement
			}
		}
	}
	return source, replacement
}

// TestPodMonitorLabelsMatchTheAlerts: the alerts select ovsgate's scrape
// targets by job and match them to nodes by the node label; the PodMonitor
// must give its targets both.
func TestPodMonitorLabelsMatchTheAlerts(t *testing.T) {
	r := renderMonitoring(t, monitoringDir)
	require.Len(t, r.podMonitors, 1)
	pm := r.podMonitors[0]

	source, job := relabelTarget(pm, "job")
	assert.Empty(t, source, "job is a fixed name, not one that follows the PodMonitor's namespace")
	assert.NotEmpty(t, job, "the PodMonitor sets the job label")
	source, replacement := relabelTarget(pm, "node")
	assert.Equal(t, "__meta_kubernetes_pod_node_name", source, "the node label is the pod's node")
	assert.Empty(t, replacement, "the node label is the meta label as it is")

	var ups int
	for _, g := range readRuleGroups(t).Groups {
		for _, rule := range g.Rules {
			expr, err := promQL.ParseExpr(rule.Expr)
			require.NoError(t, err)
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok || vs.Name != "up" {
					return nil
				}
				ups++
				i := slices.IndexFunc(vs.LabelMatchers, func(m *labels.Matcher) bool { return m.Name == "job" })
				if assert.GreaterOrEqual(t, i, 0, "%s: %s selects every job's targets", rule.Alert, vs) {
					assert.True(t, vs.LabelMatchers[i].Matches(job), "%s: %s does not select the PodMonitor's job %q", rule.Alert, vs, job)
				}
				return nil
			})
		}
	}
	assert.Positive(t, ups, "no alert selects up: nothing notices an ovsgate that is down")
}

// TestMonitoringKustomization: what `kubectl apply -k deploy/monitoring`
// creates, and the labels a default kube-prometheus-stack selects it by.
func TestMonitoringKustomization(t *testing.T) {
	r := renderMonitoring(t, monitoringDir)

	require.Len(t, r.rules, 1, "one PrometheusRule")
	assert.Equal(t, readRuleGroups(t), r.rules[0], "the rendering carries %s unchanged", rulePath)
	require.Len(t, r.podMonitors, 1, "one PodMonitor")

	require.Len(t, r.configMaps, 1, "one ConfigMap, the dashboard")
	cm := r.configMaps[0]
	assert.Equal(t, "1", cm.Labels[dashboardLabel], "the label the Grafana sidecar watches")
	assert.Equal(t, "ovsgate-grafana-dashboard", cm.Name, "a fixed name, no hash suffix")
	require.Len(t, cm.Data, 1)
	want, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	for key, data := range cm.Data {
		assert.True(t, strings.HasSuffix(key, ".json"), "key %s: Grafana loads *.json files", key)
		assert.JSONEq(t, string(want), data, "the rendering carries %s unchanged", dashboardPath)
	}

	for _, m := range r.objects() {
		assert.Equal(t, monitoringNamespace, m.Namespace, "%s", m.Name)
		assert.Equal(t, defaultRelease, m.Labels[releaseLabel], "%s: the label kube-prometheus-stack selects", m.Name)
	}
}

// readmeMonitoringOverlay is the README's example of an overlay of
// deploy/monitoring: a kustomization whose resource is the repository's
// deploy/monitoring at a release.
var readmeMonitoringOverlay = regexp.MustCompile("(?s)```yaml\n([^`]*?" + regexp.QuoteMeta(monitoringRemote) + "[^`]*?)```")

// TestMonitoringOverlayInREADME renders the README's overlay with the
// repository's own deploy/monitoring in place of the remote one: its
// namespace and labels must reach every object, its patch the PodMonitor's
// selector, and the dashboard keeps the sidecar's label.
func TestMonitoringOverlayInREADME(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	require.NoError(t, err)
	m := readmeMonitoringOverlay.FindSubmatch(readme)
	require.NotNil(t, m, "the README shows no overlay of %s", monitoringRemote)
	block := string(m[1])

	var k struct {
		Namespace string   `json:"namespace"`
		Resources []string `json:"resources"`
		Labels    []struct {
			Pairs map[string]string `json:"pairs"`
		} `json:"labels"`
		Patches []any `json:"patches"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(block), &k), block)
	require.Len(t, k.Resources, 1, block)
	assert.Equal(t, monitoringRemote+release(t), k.Resources[0], "the README points at this release")
	assert.NotEqual(t, monitoringNamespace, k.Namespace, "the example changes the namespace")
	want := make(map[string]string)
	for _, l := range k.Labels {
		for key, v := range l.Pairs {
			want[key] = v
		}
	}
	assert.NotEqual(t, defaultRelease, want[releaseLabel], "the example changes the release label")

	dir := t.TempDir()
	abs, err := filepath.Abs(monitoringDir)
	require.NoError(t, err)
	// kustomize takes no absolute paths.
	local, err := filepath.Rel(dir, abs)
	require.NoError(t, err)
	overlay := strings.Replace(block, k.Resources[0], local, 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644))

	r := renderMonitoring(t, dir)
	require.Len(t, r.rules, 1)
	require.Len(t, r.podMonitors, 1)
	require.Len(t, r.configMaps, 1)
	for _, obj := range r.objects() {
		assert.Equal(t, k.Namespace, obj.Namespace, "%s", obj.Name)
		for key, v := range want {
			assert.Equal(t, v, obj.Labels[key], "%s: label %s", obj.Name, key)
		}
	}
	assert.Equal(t, "1", r.configMaps[0].Labels[dashboardLabel])
	if assert.NotEmpty(t, k.Patches, "the example shows how a CNI selects its own pods") {
		shipped := renderMonitoring(t, monitoringDir).podMonitors[0].Spec.Selector
		assert.NotEqual(t, shipped, r.podMonitors[0].Spec.Selector, "the example's patch replaces the PodMonitor's selector")
	}
}
