package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

const (
	monitoringDir = "monitoring"
	rulePath      = "monitoring/prometheusrule.yaml"
	dashboardPath = "monitoring/grafana-dashboard.json"

	// ovsgatePrefix marks the names ovsgate must export; the Go and process
	// collectors' names are Prometheus client conventions, not checked.
	ovsgatePrefix = "ovsgate_"
)

// promQL parses expressions as a Prometheus server does by default.
var promQL = parser.NewParser(parser.Options{})

// --- the PrometheusRule ------------------------------------------------------

// prometheusRule is a PrometheusRule of the Prometheus Operator up to its
// spec, which holds rule groups in Prometheus's own format: those are left
// to Prometheus's rule parser.
type prometheusRule struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            json.RawMessage   `json:"spec"`
}

// parsePrometheusRule decodes a PrometheusRule strictly and validates its
// groups as Prometheus does when it loads a rule file: unknown fields, PromQL,
// durations, label and annotation names, and alert templates.
func parsePrometheusRule(data []byte) (*prometheusRule, *rulefmt.RuleGroups, error) {
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(data, &pr); err != nil {
		return nil, nil, err
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		return nil, nil, fmt.Errorf("want a monitoring.coreos.com/v1 PrometheusRule, got %s %s", pr.APIVersion, pr.Kind)
	}
	spec, err := yaml.JSONToYAML(pr.Spec)
	if err != nil {
		return nil, nil, fmt.Errorf("spec: %w", err)
	}
	// Legacy names (no UTF-8) so that Prometheus 2 loads the rules as well.
	groups, errs := rulefmt.Parse(spec, false, model.LegacyValidation, promQL, slog.New(slog.DiscardHandler))
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("spec: %w", err)
	}
	if len(groups.Groups) == 0 {
		return nil, nil, errors.New("spec: no rule groups")
	}
	return &pr, groups, nil
}

func TestParsePrometheusRule(t *testing.T) {
	const head = "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: x\n"
	rule := func(lines string) string {
		return head + "spec:\n  groups:\n    - name: g\n      rules:\n        - alert: A\n" + lines
	}
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{name: "valid", doc: rule("          expr: up == 0\n          for: 5m\n")},
		{name: "misspelt rule field", doc: rule("          exprs: up == 0\n"), wantErr: "exprs"},
		{name: "bad PromQL", doc: rule("          expr: rate(up[5m]\n"), wantErr: "could not parse expression"},
		{name: "bad duration", doc: rule("          expr: up == 0\n          for: 5 minutes\n"), wantErr: "5 minutes"},
		{name: "bad label name", doc: rule("          expr: up == 0\n          labels:\n            bad-name: x\n"), wantErr: "invalid label name"},
		{name: "bad template", doc: rule("          expr: up == 0\n          annotations:\n            summary: '{{ $labels.instance '\n"), wantErr: "summary"},
		{name: "unknown top-level field", doc: head + "spec:\n  groups: []\nstatus: {}\n", wantErr: "status"},
		{name: "wrong kind", doc: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\nspec: {}\n", wantErr: "want a monitoring.coreos.com/v1 PrometheusRule"},
		{name: "no groups", doc: head + "spec:\n  groups: []\n", wantErr: "no rule groups"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parsePrometheusRule([]byte(tt.doc))
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func readRuleGroups(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	data, err := os.ReadFile(rulePath)
	require.NoError(t, err)
	_, groups, err := parsePrometheusRule(data)
	require.NoError(t, err, rulePath)
	return groups
}

// dropsInstance reports an aggregation that loses both the instance and the
// node label: an alert must say which node it is about.
func dropsInstance(expr parser.Expr) error {
	var errs []error
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		agg, ok := n.(*parser.AggregateExpr)
		if !ok {
			return nil
		}
		kept := func(label string) bool { return agg.Without != slices.Contains(agg.Grouping, label) }
		if !kept("instance") && !kept("node") {
			errs = append(errs, fmt.Errorf("%s drops the instance and node labels", agg))
		}
		return nil
	})
	return errors.Join(errs...)
}

func TestDropsInstance(t *testing.T) {
	tests := []struct {
		expr    string
		wantErr bool
	}{
		{expr: `up == 0`},
		{expr: `sum by (instance, le) (rate(h_bucket[5m]))`},
		{expr: `max by (node) (kube_node_info)`},
		{expr: `sum without (le) (rate(h_bucket[5m]))`},
		{expr: `sum without (instance) (rate(h_bucket[5m]))`},
		{expr: `sum by (le) (rate(h_bucket[5m]))`, wantErr: true},
		{expr: `count(up)`, wantErr: true},
		{expr: `sum without (instance, node) (up)`, wantErr: true},
		{expr: `up unless on (node) max by (job) (up)`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			expr, err := promQL.ParseExpr(tt.expr)
			require.NoError(t, err)
			if tt.wantErr {
				assert.Error(t, dropsInstance(expr))
				return
			}
			assert.NoError(t, dropsInstance(expr))
		})
	}
}

func TestPrometheusRule(t *testing.T) {
	groups := readRuleGroups(t)
	alerts := make(map[string]bool)
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			t.Run(r.Alert, func(t *testing.T) {
				assert.False(t, alerts[r.Alert], "alert name repeated")
				alerts[r.Alert] = true

				assert.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], "severity label")
				summary, description := r.Annotations["summary"], r.Annotations["description"]
				assert.NotEmpty(t, summary, "summary annotation")
				assert.NotEmpty(t, description, "description annotation")
				assert.Regexp(t, `readyz|README|ovsgate check`, description,
					"the description says where to look: /readyz?verbose, ovsgate check, the README's troubleshooting table")
				assert.Contains(t, summary+description, "$labels.instance", "the annotations name the node")

				expr, err := promQL.ParseExpr(r.Expr)
				require.NoError(t, err)
				assert.NoError(t, dropsInstance(expr))
			})
		}
	}
	assert.NotEmpty(t, alerts, "no alerting rules in %s", rulePath)
}

// --- the Grafana dashboard ---------------------------------------------------

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *datasourceRef   `json:"datasource"`
	Panels     []dashboardPanel `json:"panels"` // of a collapsed row
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
}

// dashboard is the part of Grafana's dashboard model these tests read.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"` // a string or, for a query variable, an object
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashboardPanel `json:"panels"`
}

// panels returns every panel but rows, also those inside collapsed rows.
func (d dashboard) panels() []dashboardPanel {
	var ps []dashboardPanel
	for _, p := range d.Panels {
		if p.Type == "row" {
			ps = append(ps, p.Panels...)
			continue
		}
		ps = append(ps, p)
	}
	return ps
}

func readDashboard(t *testing.T, path string) dashboard {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(data, &d), path)
	return d
}

// grafanaInterval is a Grafana interval variable; the dashboard uses them
// only where PromQL wants a duration. Other variables ($instance) stand in
// label matcher strings, where PromQL takes them as they are.
var grafanaInterval = regexp.MustCompile(`\$\{?__(?:rate_interval|interval|range)\}?`)

// dashboardPromQL turns a panel's query into PromQL.
func dashboardPromQL(expr string) string {
	return grafanaInterval.ReplaceAllString(expr, "5m")
}

// labelValues is a query variable's label_values(SELECTOR, LABEL).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\)$`)

const dashboardDatasource = "${datasource}"

func TestGrafanaDashboard(t *testing.T) {
	d := readDashboard(t, dashboardPath)

	t.Run("uid", func(t *testing.T) {
		assert.Regexp(t, `^[A-Za-z0-9_-]{1,40}$`, d.UID)
		others, err := filepath.Glob(filepath.Join(monitoringDir, "*.json"))
		require.NoError(t, err)
		for _, path := range others {
			if path != dashboardPath {
				assert.NotEqual(t, d.UID, readDashboard(t, path).UID, "%s has the same uid", path)
			}
		}
	})

	assert.NotEmpty(t, d.Title)
	assert.GreaterOrEqual(t, d.SchemaVersion, 39)

	t.Run("variables", func(t *testing.T) {
		vars := make(map[string]string)
		for _, v := range d.Templating.List {
			vars[v.Name] = v.Type
			if v.Name == "datasource" {
				assert.Equal(t, "datasource", v.Type)
				assert.JSONEq(t, `"prometheus"`, string(v.Query), "the datasource variable offers Prometheus data sources")
			}
		}
		assert.Contains(t, vars, "datasource")
		assert.True(t, vars["instance"] == "query" || vars["node"] == "query", "a query variable instance or node: %v", vars)
	})

	t.Run("panels", func(t *testing.T) {
		ids := make(map[int]bool)
		for _, p := range d.panels() {
			assert.False(t, ids[p.ID], "panel id %d repeated", p.ID)
			ids[p.ID] = true
			if assert.NotNil(t, p.Datasource, "panel %q: datasource", p.Title) {
				assert.Equal(t, dashboardDatasource, p.Datasource.UID, "panel %q", p.Title)
			}
			var exprs int
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					continue
				}
				exprs++
				if assert.NotNil(t, tg.Datasource, "panel %q, target %s: datasource", p.Title, tg.RefID) {
					assert.Equal(t, dashboardDatasource, tg.Datasource.UID, "panel %q, target %s", p.Title, tg.RefID)
				}
				_, err := promQL.ParseExpr(dashboardPromQL(tg.Expr))
				assert.NoError(t, err, "panel %q, target %s", p.Title, tg.RefID)
			}
			assert.Positive(t, exprs, "panel %q has no target with an expr", p.Title)
		}
		assert.NotEmpty(t, ids, "no panels")
	})
}

// --- metric names against the real daemon ------------------------------------

// selectedMetrics returns the metric names an expression's selectors name.
func selectedMetrics(expr string) ([]string, error) {
	node, err := promQL.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var errs []error
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if name == "" && m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			errs = append(errs, fmt.Errorf("selector %s names no metric", vs))
			return nil
		}
		names = append(names, name)
		return nil
	})
	return names, errors.Join(errs...)
}

func TestSelectedMetrics(t *testing.T) {
	tests := []struct {
		expr    string
		want    []string
		wantErr string
	}{
		{expr: `ovsgate_ready == 0`, want: []string{"ovsgate_ready"}},
		{expr: `increase(a_total{instance=~"$instance"}[15m]) > 3`, want: []string{"a_total"}},
		{
			expr: `histogram_quantile(0.99, sum by (le) (rate(h_seconds_bucket[5m]))) / on() group_left max(b offset 1h)`,
			want: []string{"h_seconds_bucket", "b"},
		},
		{expr: `max_over_time(g[1h:5m])`, want: []string{"g"}},
		{expr: `{__name__="by_matcher"}`, want: []string{"by_matcher"}},
		{expr: `{__name__=~"ovsgate_.*"}`, wantErr: "names no metric"},
		{expr: `rate(x[5m]`, wantErr: "unclosed"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := selectedMetrics(tt.expr)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// usedMetrics maps every metric name the alerts and the dashboard select to
// where it is used.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := make(map[string][]string)
	add := func(where, expr string) {
		names, err := selectedMetrics(expr)
		require.NoError(t, err, "%s: %s", where, expr)
		for _, n := range names {
			used[n] = append(used[n], where)
		}
	}
	for _, g := range readRuleGroups(t).Groups {
		for _, r := range g.Rules {
			add("rule "+r.Alert+r.Record, r.Expr)
		}
	}
	d := readDashboard(t, dashboardPath)
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			if tg.Expr != "" {
				add(fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), dashboardPromQL(tg.Expr))
			}
		}
	}
	for _, v := range d.Templating.List {
		if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
			add("variable "+v.Name, m[1])
		}
	}
	return used
}

// seriesNames are the names PromQL can select of a metric family as the
// text format exposes it: a classic histogram's or summary's series carry
// suffixes, and its bare name selects nothing.
func seriesNames(family string, typ dto.MetricType) []string {
	switch typ {
	case dto.MetricType_HISTOGRAM:
		return []string{family + "_bucket", family + "_sum", family + "_count"}
	case dto.MetricType_SUMMARY:
		return []string{family, family + "_sum", family + "_count"}
	default:
		return []string{family}
	}
}

// unexported returns, sorted, the ovsgate names in used that no exported
// series carries.
func unexported(used map[string][]string, exported map[string]bool) []string {
	var missing []string
	for name := range used {
		if strings.HasPrefix(name, ovsgatePrefix) && !exported[name] {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	return missing
}

func TestUnexported(t *testing.T) {
	exported := make(map[string]bool)
	for _, n := range append(seriesNames("ovsgate_ready", dto.MetricType_GAUGE),
		seriesNames("ovsgate_appctl_request_duration_seconds", dto.MetricType_HISTOGRAM)...) {
		exported[n] = true
	}
	tests := []struct {
		name string
		used []string
		want []string
	}{
		{name: "exported", used: []string{"ovsgate_ready", "ovsgate_appctl_request_duration_seconds_bucket"}},
		{name: "misspelt", used: []string{"ovsgate_raedy", "ovsgate_ready"}, want: []string{"ovsgate_raedy"}},
		{name: "histogram without suffix", used: []string{"ovsgate_appctl_request_duration_seconds"},
			want: []string{"ovsgate_appctl_request_duration_seconds"}},
		{name: "not ovsgate's", used: []string{"process_resident_memory_bytes", "up"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used := make(map[string][]string)
			for _, n := range tt.used {
				used[n] = []string{"test"}
			}
			assert.Equal(t, tt.want, unexported(used, exported))
		})
	}
}

// startReadyServe runs the real `ovsgate serve` against s, with extra flags
// added, until the test ends, waits until its /readyz answers 200 and
// returns its metrics address.
func startReadyServe(t *testing.T, s *ovstest.Sandbox, extra ...string) string {
	t.Helper()
	args := append([]string{"serve", "--bridge=br-int",
		"--ovsdb=" + s.Endpoint(), "--ovs-rundir=" + s.RunDir(),
		"--health-probe-bind-address=" + testutil.AnyPort, "--metrics-bind-address=" + testutil.AnyPort,
		"--status-file=" + filepath.Join(t.TempDir(), "status.json")}, extra...)
	d := testutil.StartOvsgate(t, ovsgateBin, nil, args...)
	exited, stderr := d.Exited(), d.Stderr
	t.Cleanup(func() { assert.NoError(t, d.Stop(), "serve exits 0 after SIGTERM: %s", stderr.String()) })
	probeAddr, metricsAddr := d.Addrs(t)

	var last string
	ready := ovstest.Poll(30*time.Second, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		code, body := testutil.Get("http://" + probeAddr + "/readyz?verbose")
		last = fmt.Sprintf("%d %q", code, body)
		return code == http.StatusOK
	})
	select {
	case <-exited:
		t.Fatalf("serve exited early (%v): %s", d.Err(), stderr.String())
	default:
	}
	require.True(t, ready, "/readyz never answered 200 (last: %s): %s", last, stderr.String())
	return metricsAddr
}

// TestMonitoringMetricsExported scrapes a ready ovsgate: only then has every
// labelled metric (per bridge, per unixctl method) a series to show. It
// keeps a node condition, so that the writer's metrics are there too; the
// API server it names is never reached (nothing listens there), which
// changes nothing for the gate and the probes.
func TestMonitoringMetricsExported(t *testing.T) {
	used := usedMetrics(t)
	require.True(t, slices.ContainsFunc(slices.Collect(maps.Keys(used)), func(n string) bool {
		return strings.HasPrefix(n, ovsgatePrefix)
	}), "the alerts and the dashboard select no ovsgate metric")

	s := ovstest.Start(t, "br-int")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(unreachableKubeconfig), 0o600))
	metricsAddr := startReadyServe(t, s, "--node-condition=ovsgate.io/OVSReady", "--node-name=node-1", "--kubeconfig="+kubeconfig)

	code, body := testutil.Get("http://" + metricsAddr + "/metrics")
	require.Equal(t, http.StatusOK, code, body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)
	exported := make(map[string]bool)
	for name, f := range families {
		for _, n := range seriesNames(name, f.GetType()) {
			exported[n] = true
		}
	}
	for _, name := range unexported(used, exported) {
		t.Errorf("%s selects %s, which ovsgate does not export", strings.Join(used[name], ", "), name)
	}
}

// unreachableKubeconfig names an API server at a port where nothing listens.
const unreachableKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: ovsgate
  user: {token: unused}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: ovsgate}
current-context: nowhere
`
