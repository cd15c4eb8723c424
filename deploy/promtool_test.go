package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

const (
	// ruleTestsDir holds the unit tests of the alerts, in promtool's format.
	ruleTestsDir = "monitoring/tests"
	// ruleFileName is the plain rule file the tests load (rule_files): the
	// PrometheusRule's spec, written beside a copy of the tests.
	ruleFileName = "ovsgate-rules.yaml"
)

// --- promtool's unit test files ----------------------------------------------

// ruleTestFile is a `promtool test rules` input, with the fields these
// tests read or that the files use; a misspelt one fails the strict decoding.
type ruleTestFile struct {
	RuleFiles          []string        `json:"rule_files"`
	EvaluationInterval string          `json:"evaluation_interval"`
	Tests              []ruleTestGroup `json:"tests"`
}

type ruleTestGroup struct {
	Name        string `json:"name"`
	Interval    string `json:"interval"`
	InputSeries []struct {
		Series string `json:"series"`
		Values string `json:"values"`
	} `json:"input_series"`
	AlertRuleTests  []alertRuleTest   `json:"alert_rule_test"`
	PromQLExprTests []json.RawMessage `json:"promql_expr_test"`
}

type alertRuleTest struct {
	EvalTime  string `json:"eval_time"`
	Alertname string `json:"alertname"`
	ExpAlerts []struct {
		ExpLabels      map[string]string `json:"exp_labels"`
		ExpAnnotations map[string]string `json:"exp_annotations"`
	} `json:"exp_alerts"`
}

func readRuleTestFiles(t *testing.T) map[string]ruleTestFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(ruleTestsDir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, paths, "no rule tests in %s", ruleTestsDir)
	files := make(map[string]ruleTestFile)
	for _, path := range paths {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		var f ruleTestFile
		require.NoError(t, yaml.UnmarshalStrict(data, &f), path)
		files[path] = f
	}
	return files
}

// uncoveredAlerts checks the unit tests against the alerts of the rule: every
// test loads ruleFileName and names an alert that exists, and every alert
// has a group in which it must not fire yet at one evaluation and must fire
// at a later one. An alert that never fires in its own test is a defect.
func uncoveredAlerts(alerts []string, files map[string]ruleTestFile) error {
	var errs []error
	// notYet and fires: per alert, per group, the evaluation times.
	type times struct{ notYet, fires []time.Duration }
	seen := make(map[string]map[string]*times)
	for path, f := range files {
		if !slices.Equal(f.RuleFiles, []string{ruleFileName}) {
			errs = append(errs, fmt.Errorf("%s: rule_files is %v, want [%s]", path, f.RuleFiles, ruleFileName))
		}
		for i, g := range f.Tests {
			group := fmt.Sprintf("%s, group %d %q", path, i, g.Name)
			for _, at := range g.AlertRuleTests {
				if !slices.Contains(alerts, at.Alertname) {
					errs = append(errs, fmt.Errorf("%s: alert %q is not in the rule", group, at.Alertname))
					continue
				}
				d, err := model.ParseDuration(at.EvalTime)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: eval_time %q: %w", group, at.EvalTime, err))
					continue
				}
				if seen[at.Alertname] == nil {
					seen[at.Alertname] = make(map[string]*times)
				}
				tm := seen[at.Alertname][group]
				if tm == nil {
					tm = &times{}
					seen[at.Alertname][group] = tm
				}
				if len(at.ExpAlerts) == 0 {
					tm.notYet = append(tm.notYet, time.Duration(d))
				} else {
					tm.fires = append(tm.fires, time.Duration(d))
				}
			}
		}
	}
	for _, alert := range alerts {
		covered := false
		for _, tm := range seen[alert] {
			if len(tm.notYet) > 0 && len(tm.fires) > 0 && slices.Min(tm.notYet) < slices.Min(tm.fires) {
				covered = true
			}
		}
		if !covered {
			errs = append(errs, fmt.Errorf("alert %s: no test group in which it does not fire yet and then fires", alert))
		}
	}
	return errors.Join(errs...)
}

func TestUncoveredAlerts(t *testing.T) {
	const firing = `{eval_time: 5m, alertname: A, exp_alerts: [{exp_labels: {severity: critical}}]}`
	file := func(rules string, cases ...string) ruleTestFile {
		var f ruleTestFile
		doc := fmt.Sprintf("rule_files: [%s]\ntests:\n  - alert_rule_test: [%s]\n", rules, strings.Join(cases, ", "))
		require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &f), doc)
		return f
	}
	tests := []struct {
		name    string
		alerts  []string // in the rule; A when nil
		files   map[string]ruleTestFile
		wantErr []string
	}{
		{name: "covered", files: map[string]ruleTestFile{
			"a.yaml": file(ruleFileName, `{eval_time: 4m, alertname: A, exp_alerts: []}`, firing),
		}},
		{name: "never fires", files: map[string]ruleTestFile{
			"a.yaml": file(ruleFileName, `{eval_time: 4m, alertname: A, exp_alerts: []}`),
		}, wantErr: []string{"alert A: no test group"}},
		{name: "no case before it fires", files: map[string]ruleTestFile{
			"a.yaml": file(ruleFileName, firing, `{eval_time: 6m, alertname: A, exp_alerts: []}`),
		}, wantErr: []string{"alert A: no test group"}},
		{name: "not yet and firing in different groups", files: map[string]ruleTestFile{
			"a.yaml": file(ruleFileName, `{eval_time: 4m, alertname: A, exp_alerts: []}`),
			"b.yaml": file(ruleFileName, firing),
		}, wantErr: []string{"alert A: no test group"}},
		{name: "untested alert", alerts: []string{"A", "B"}, files: map[string]ruleTestFile{
			"a.yaml": file(ruleFileName, `{eval_time: 4m, alertname: A}`, firing),
		}, wantErr: []string{"alert B: no test group"}},
		{name: "misspelt alert", files: map[string]ruleTestFile{
			"a.yaml": file(ruleFileName, `{eval_time: 4m, alertname: A}`, firing, `{eval_time: 1m, alertname: AA}`),
		}, wantErr: []string{`alert "AA" is not in the rule`}},
		{name: "other rule file", files: map[string]ruleTestFile{
			"a.yaml": file("rules.yaml", `{eval_time: 4m, alertname: A}`, firing),
		}, wantErr: []string{"a.yaml: rule_files is [rules.yaml]"}},
		{name: "bad eval time", files: map[string]ruleTestFile{
			"a.yaml": file(ruleFileName, `{eval_time: 4 minutes, alertname: A}`, firing),
		}, wantErr: []string{`eval_time "4 minutes"`, "alert A: no test group"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alerts := tt.alerts
			if alerts == nil {
				alerts = []string{"A"}
			}
			err := uncoveredAlerts(alerts, tt.files)
			if len(tt.wantErr) == 0 {
				assert.NoError(t, err)
				return
			}
			for _, want := range tt.wantErr {
				assert.ErrorContains(t, err, want)
			}
		})
	}
}

// alertingRules returns the rule's alerts in order.
func alertingRules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	var alerts []rulefmt.Rule
	for _, g := range readRuleGroups(t).Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r)
			}
		}
	}
	require.NotEmpty(t, alerts, "no alerts in %s", rulePath)
	return alerts
}

func TestPrometheusRuleTestsCoverEveryAlert(t *testing.T) {
	var names []string
	for _, r := range alertingRules(t) {
		names = append(names, r.Alert)
	}
	assert.NoError(t, uncoveredAlerts(names, readRuleTestFiles(t)))
}

// --- running promtool ----------------------------------------------------------

// promtool returns the path of promtool (Debian's prometheus package; `make
// test` installs it when missing).
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		testutil.SkipUnlessCI(t, "promtool not found, cannot run the alerts' unit tests (apt-get install prometheus, or hack/install-promtool.sh): %v", err)
	}
	return path
}

// ruleSpec is the PrometheusRule's spec as generic YAML, for the rule file
// and for its mutants.
func ruleSpec(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(rulePath)
	require.NoError(t, err)
	pr, _, err := parsePrometheusRule(data)
	require.NoError(t, err, rulePath)
	var spec map[string]any
	require.NoError(t, json.Unmarshal(pr.Spec, &spec))
	return spec
}

// runRuleTests writes spec as ruleFileName beside copies of the test files
// and runs `promtool test rules` on them: nil when every test passes, else
// an error with promtool's report.
func runRuleTests(t *testing.T, promtool string, spec map[string]any, testFiles []string) error {
	t.Helper()
	dir := t.TempDir()
	rules, err := yaml.Marshal(spec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ruleFileName), rules, 0o644))
	var names []string
	for _, path := range testFiles {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		name := filepath.Base(path)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
		names = append(names, name)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, append([]string{"test", "rules"}, names...)...)
	cmd.Dir = dir // the tests name the rule file relative to themselves
	out, err := cmd.CombinedOutput()
	// promtool only warns about a rule file it cannot find, and then every
	// alert is silent: the tests that expect none would pass.
	require.NotContains(t, string(out), "no file match", "promtool did not load %s", ruleFileName)
	if err != nil {
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "run promtool: %s", out)
		return fmt.Errorf("promtool test rules: %w\n%s", err, out)
	}
	return nil
}

// TestPrometheusRuleUnitTests runs the alerts' unit tests against the rule
// as shipped.
func TestPrometheusRuleUnitTests(t *testing.T) {
	bin := promtool(t)
	paths := slices.Sorted(maps.Keys(readRuleTestFiles(t)))
	assert.NoError(t, runRuleTests(t, bin, ruleSpec(t), paths))
}

// mutateAlert returns a copy of spec with the named alert changed by mutate.
func mutateAlert(t *testing.T, spec map[string]any, alert string, mutate func(rule map[string]any)) map[string]any {
	t.Helper()
	data, err := json.Marshal(spec)
	require.NoError(t, err)
	var mutant map[string]any
	require.NoError(t, json.Unmarshal(data, &mutant))
	found := false
	groups, _ := mutant["groups"].([]any)
	for _, g := range groups {
		rules, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rules {
			if rule := r.(map[string]any); rule["alert"] == alert {
				mutate(rule)
				found = true
			}
		}
	}
	require.True(t, found, "alert %s not in the spec", alert)
	return mutant
}

// TestPrometheusRuleUnitTestsCatchMutants breaks each alert in two ways and
// requires its unit tests to fail: an alert that never fires (its firing
// cases are really evaluated), and one without its `for` (its "not yet"
// cases fall inside the `for`, so they test it).
func TestPrometheusRuleUnitTestsCatchMutants(t *testing.T) {
	bin := promtool(t)
	spec := ruleSpec(t)
	files := readRuleTestFiles(t)
	for _, r := range alertingRules(t) {
		alert := r.Alert
		// Only the files that test the alert: promtool is slow to start.
		var paths []string
		for path, f := range files {
			if slices.ContainsFunc(f.Tests, func(g ruleTestGroup) bool {
				return slices.ContainsFunc(g.AlertRuleTests, func(at alertRuleTest) bool { return at.Alertname == alert })
			}) {
				paths = append(paths, path)
			}
		}
		require.NotEmpty(t, paths, "no unit test of %s", alert)
		slices.Sort(paths)

		t.Run(alert+"/never fires", func(t *testing.T) {
			mutant := mutateAlert(t, spec, alert, func(rule map[string]any) {
				rule["expr"] = fmt.Sprintf("(%s) unless on () vector(1)", rule["expr"])
			})
			err := runRuleTests(t, bin, mutant, paths)
			require.Error(t, err, "the tests of %s pass with an alert that never fires", alert)
			assert.ErrorContains(t, err, alert)
		})
		// An alert without a for has none to remove: its not-yet case is a
		// value below the threshold.
		if r.For == 0 {
			continue
		}
		t.Run(alert+"/without for", func(t *testing.T) {
			mutant := mutateAlert(t, spec, alert, func(rule map[string]any) { delete(rule, "for") })
			err := runRuleTests(t, bin, mutant, paths)
			require.Error(t, err, "the tests of %s pass without its for", alert)
			assert.ErrorContains(t, err, alert)
		})
	}
}
