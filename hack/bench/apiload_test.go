package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Output of real runs of go test -bench, one passing, one without a built
// kube-apiserver.
const (
	benchPassed = `goos: linux
goarch: amd64
pkg: github.com/ovsgate/ovsgate
cpu: AMD EPYC
BenchmarkNodeConditionWrites-2   	       1	82159747765 ns/op	         0 flapping-writes/node/h	         0 flapping-writes/s@5000	        30.00 restarts	        10.80 steady-writes/node/h	        15.00 steady-writes/s@5000	         0.8999 writes/heartbeat
--- BENCH: BenchmarkNodeConditionWrites-2
    nodecondition_bench_test.go:33: kubetest: kube-apiserver ready at https://127.0.0.1:41861 after 3.309s
PASS
ok  	github.com/ovsgate/ovsgate	99.358s
`
	benchSkipped = `goos: linux
goarch: amd64
pkg: github.com/ovsgate/ovsgate
cpu: AMD EPYC
BenchmarkNodeConditionWrites
--- SKIP: BenchmarkNodeConditionWrites
    nodecondition_bench_test.go:33: kubetest: kube-apiserver.sh: kube-apiserver v1.37.2 not built: run hack/kube-apiserver.sh build (or make test)
PASS
ok  	github.com/ovsgate/ovsgate	0.412s
`
	benchFailed = `BenchmarkNodeConditionWrites-2
--- FAIL: BenchmarkNodeConditionWrites-2
    nodecondition_bench_test.go:97: the condition never became True
FAIL
exit status 1
FAIL	github.com/ovsgate/ovsgate	70.1s
`
)

func TestParseGoBench(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    map[string]float64
		skipped bool
		errHas  string
	}{
		{
			name: "passed",
			out:  benchPassed,
			want: map[string]float64{"ns/op": 82159747765, "flapping-writes/node/h": 0, "flapping-writes/s@5000": 0, "restarts": 30,
				"steady-writes/node/h": 10.8, "steady-writes/s@5000": 15, "writes/heartbeat": 0.8999},
		},
		{name: "skipped", out: benchSkipped, skipped: true, errHas: "kube-apiserver v1.37.2 not built: run hack/kube-apiserver.sh build (or make test)"},
		{name: "failed", out: benchFailed, errHas: "failed: the condition never became True"},
		{name: "no result", out: "ok  \tgithub.com/ovsgate/ovsgate\t0.1s\n", errHas: "no result line"},
		{name: "another benchmark", out: "BenchmarkNodeConditionWritesFast-2 1 5 ns/op 3 restarts\n", errHas: "no result line"},
		{name: "odd fields", out: "BenchmarkNodeConditionWrites-2 1 5 ns/op 3\n", errHas: "do not pair up"},
		{name: "not a number", out: "BenchmarkNodeConditionWrites-2 1 5 ns/op x restarts\n", errHas: "restarts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGoBench(tt.out, "BenchmarkNodeConditionWrites")
			if tt.errHas == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.errHas)
			assert.Equal(t, tt.skipped, errors.Is(err, errBenchSkipped))
		})
	}
}

// Every row is a table row of five cells, whether the benchmark ran or not,
// and a benchmark that could not run says why.
func TestAPILoadRows(t *testing.T) {
	measured, err := parseGoBench(benchPassed, apiBench)
	require.NoError(t, err)
	_, skipped := parseGoBench(benchSkipped, apiBench)
	outage := []time.Duration{80 * time.Millisecond}

	tests := []struct {
		name   string
		m      map[string]float64
		err    error
		rows   int
		has    []string
		hasNot []string
	}{
		{
			name: "measured",
			m:    measured,
			rows: 3,
			has: []string{"| 10.8 | kubelet Node status 12 (one PATCH every 5 min", "| 1.1x |", "30 restarts", "within the 1 s merge window", "5,000 such nodes", "every 10 s to a small Lease", "| 0.0 |", "| 15.0/s / 0.0/s |",
				"kubelet Node status 16.7/s", "500/s lease renewals", "at most 3,600 (one per merge window)", "80.00 ms median, 80.00 ms p99"},
		},
		{name: "skipped", err: skipped, rows: 1, has: []string{"not measured: skipped: kubetest: kube-apiserver.sh", "12/node/h, 16.7/s at 5,000 nodes"}},
		{name: "a metric missing", m: map[string]float64{"restarts": 3}, rows: 1, has: []string{"not measured: BenchmarkNodeConditionWrites reported no writes/heartbeat"}},
		{name: "a pipe in the reason", err: errors.New("a | b\nc"), rows: 1, has: []string{`not measured: a \| b c`}, hasNot: []string{"a | b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := apiLoadRows(tt.m, tt.err, outage)
			require.Len(t, rows, tt.rows)
			all := strings.Join(rows, "\n")
			for _, r := range rows {
				cells := strings.Split(strings.ReplaceAll(r, `\|`, ""), "|")
				assert.Len(t, cells, 7, "row %q is not five cells", r)
			}
			for _, s := range tt.has {
				assert.Contains(t, all, s)
			}
			for _, s := range tt.hasNot {
				assert.NotContains(t, all, s)
			}
		})
	}
}
