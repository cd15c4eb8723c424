package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testdata/KEY.txt is the output of a real `go test -bench` run of each of
// goBenches (the API server's load skipped, as without a kube-apiserver).
func fixture(t *testing.T, key string) results {
	t.Helper()
	out, err := os.ReadFile(filepath.Join("testdata", key+".txt"))
	require.NoError(t, err)
	r, err := readResults(bytes.NewReader(out))
	require.NoError(t, err)
	if len(r.metrics) == 0 {
		r.Err = errors.New(why(out))
	}
	return r
}

func sampleReport(t *testing.T) report {
	t.Helper()
	rep := newReport(5)
	for _, gb := range goBenches {
		rep.Go[gb.key] = fixture(t, gb.key)
	}
	rep.Met = rep.verdicts()
	return rep
}

func TestReadResults(t *testing.T) {
	r := fixture(t, latencyKey)
	require.NoError(t, r.Err)
	assert.Len(t, r.metrics, 5, "one per sub-benchmark")
	assert.Equal(t, 1.519, r.Get("Reaction/ovsgate", "p50-ms"), "named without Benchmark and -GOMAXPROCS")
	assert.Equal(t, 367.8, r.Get("Detection/restart", "outage-p50-ms"))
	assert.InDelta(t, 0.1758, r.Get("Reaction/ovsgate", "sec/op"), 1e-4, "benchfmt tidies ns/op")
	assert.True(t, math.IsNaN(r.Get("Reaction/ovsgate", "p42-ms")))
	assert.True(t, math.IsNaN(r.Get("Reaction", "p50-ms")))
}

func TestWhy(t *testing.T) {
	for _, tc := range []struct{ name, out, want string }{
		{"skipped", "BenchmarkX\n--- SKIP: BenchmarkX\n    x_test.go:3: no kube-apiserver\nPASS\nok  \tm\t0.4s\n", "x_test.go:3: no kube-apiserver"},
		{"sub-benchmark failed", "BenchmarkX/a-2  1  5 ns/op\n--- FAIL: BenchmarkX\n    --- FAIL: BenchmarkX/b\n        x_test.go:9: not ready\nFAIL\n", "--- FAIL: BenchmarkX/b"},
		{"no reason", "panic: boom\nexit status 2\nFAIL\tm\t0.1s\n", "FAIL\tm\t0.1s"},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, why([]byte(tc.out))) })
	}
}

// The report carries every target, and a figure for every cell it promises.
func TestRender(t *testing.T) {
	rep := sampleReport(t)
	var md bytes.Buffer
	require.NoError(t, render(&md, rep))
	doc := md.String()
	for _, bad := range []string{"NaN", "<no value>", "%!", "{{"} {
		assert.NotContains(t, doc, bad)
	}
	var rows, targets []string
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "| ") {
			rows = append(rows, line)
			assert.Equal(t, 6, strings.Count(line, "|")-strings.Count(line, `\|`), "five cells: %s", line)
		}
		if strings.HasPrefix(line, "| targets: ") {
			targets = append(targets, line)
			assert.Regexp(t, `: (met|\*\*missed\*\*) \|$`, line)
		}
	}
	assert.Len(t, targets, 5)
	assert.Equal(t, rows[1:6], targets, "the targets come first, below the header")
	for _, n := range []string{"0", "1000", "10000"} {
		assert.Contains(t, doc, "| scale, "+n+" ports: bytes read from OVSDB at start |")
	}
	assert.Contains(t, doc, "| API server: node condition writes (`go test -bench NodeConditionWrites`) | not measured: "+
		"nodecondition_bench_test.go:33: kubetest: kube-apiserver.sh: kube-apiserver v1.37.2 not built")
	assert.Contains(t, doc, "("+latencyFigure+")")
}

func TestVerdicts(t *testing.T) {
	set := func(name, unit string, v float64) func(report) {
		return func(r report) {
			for _, res := range r.Go {
				if _, ok := res.metrics[name]; ok {
					res.metrics[name][unit] = v
				}
			}
		}
	}
	all := func(v verdicts) bool {
		return v.Probe && v.RSS && v.Soak && v.ReactionP99 && v.ReactionShare && v.Check && v.Idle
	}
	// Figures that meet every goal, whatever the fixtures' loaded machine gave.
	meetAll := func(r report) {
		for _, f := range []func(report){set("ReadyzCPU", "ratio", 1.05), set("ServeFootprint/idle", "rss-KiB", 11<<10),
			set("ServeFootprint/day", "before-rss-KiB", 12<<10), set("ServeFootprint/day", "after-rss-KiB", 13<<10),
			set("ServeFootprint/day", "before-goroutines", 21), set("ServeFootprint/day", "after-goroutines", 21),
			set("Reaction/ovsgate", "p99-ms", 2.9), set("Reaction/ovsgate", "p50-ms", 1), set("Reaction/shell-gate", "p50-ms", 4),
			set("Scale/check/ports=0", "check/version", 1.5), set("Scale/check/ports=5000", "check/version", 1.6),
			set("ServeFootprint/idle", "cpu-ms", 29), set("ServeFootprint/idle", "s", 60)} {
			f(r)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(report)
		miss   func(verdicts) bool
	}{
		{"probe ratio above", set("ReadyzCPU", "ratio", 1.11), func(v verdicts) bool { return !v.Probe }},
		{"every goal met", func(report) {}, nil},
		{"RSS at the goal", set("ServeFootprint/idle", "rss-KiB", 12<<10), nil},
		{"RSS above", set("ServeFootprint/idle", "rss-KiB", 12<<10+1), func(v verdicts) bool { return !v.RSS }},
		{"RSS grows over the day", set("ServeFootprint/day", "after-rss-KiB", 30<<10), func(v verdicts) bool { return !v.Soak }},
		{"a goroutine more after the day", set("ServeFootprint/day", "after-goroutines", 99), func(v verdicts) bool { return !v.Soak }},
		{"reaction p99 above", set("Reaction/ovsgate", "p99-ms", 3.01), func(v verdicts) bool { return !v.ReactionP99 }},
		{"reaction median at a quarter of the shell's", set("Reaction/shell-gate", "p50-ms", 4.1), nil},
		{"reaction median near the shell's", set("Reaction/shell-gate", "p50-ms", 2), func(v verdicts) bool { return !v.ReactionShare }},
		{"check grows with ports", set("Scale/check/ports=5000", "check/version", 10), func(v verdicts) bool { return !v.Check }},
		{"busy while idle", set("ServeFootprint/idle", "cpu-ms", 40), func(v verdicts) bool { return !v.Idle }},
		{"idle not measured", func(r report) { delete(r.Go["Serve"].metrics, "ServeFootprint/idle") }, func(v verdicts) bool { return !v.Idle && !v.RSS }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := sampleReport(t)
			meetAll(rep)
			tc.change(rep)
			v := rep.verdicts()
			if tc.miss == nil {
				assert.True(t, all(v), "%+v", v)
				return
			}
			assert.True(t, tc.miss(v), "%+v", v)
			assert.Contains(t, v.summary(), "(missed: ")
		})
	}
}

func TestDrawLatency(t *testing.T) {
	lat := fixture(t, latencyKey)
	var svg bytes.Buffer
	require.NoError(t, drawLatency(&svg, lat, 5))
	dec := xml.NewDecoder(&svg)
	var text strings.Builder
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "well-formed XML")
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
		case xml.CharData:
			text.Write(tok)
		}
	}
	assert.Equal(t, "svg", root)
	for _, c := range curves {
		assert.Contains(t, text.String(), c.label)
	}

	delete(lat.metrics["Detection/exit"], "p90-ms")
	assert.ErrorContains(t, drawLatency(io.Discard, lat, 5), "Detection/exit reported no p90-ms")
}
