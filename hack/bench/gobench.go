package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"strings"

	"golang.org/x/perf/benchfmt"
)

const latencyKey = "Latency"

// goBench is one `go test -bench` run of the root package; its results
// reach the template as .Go.<key>.
type goBench struct {
	key, bench string
	perTrial   bool // one iteration per trial (-benchtime <trials>x), else one in all
	optional   bool // the report says why it is missing, rather than failing
}

// goBenches are the runs of make bench, first to last. A new section of the
// report is a run here (or a benchmark in one) and a block in the template.
var goBenches = []goBench{
	{key: latencyKey, bench: "^Benchmark(Reaction|Detection)$", perTrial: true},
	{key: "Serve", bench: "^Benchmark(ReadyzCPU|ServeFootprint)$"},
	{key: "Scale", bench: "^BenchmarkScale$"},
	{key: "APILoad", bench: "^BenchmarkNodeConditionWrites$", optional: true},
}

// results are one run's benchmark results: metric by benchmark name (without
// "Benchmark" and the -GOMAXPROCS suffix) and unit. Err says why the run gave
// none, or not all it should have.
type results struct {
	Err     error
	metrics map[string]map[string]float64
}

// Get is a metric, NaN when the run did not report it.
func (r results) Get(name, unit string) float64 {
	if v, ok := r.metrics[name][unit]; ok {
		return v
	}
	return math.NaN()
}

func runGoBench(gb goBench, trials int) results {
	benchtime := "1x"
	if gb.perTrial {
		benchtime = fmt.Sprintf("%dx", trials)
	}
	out, err := exec.Command("go", "test", "-run", "^$", "-bench", gb.bench, "-benchtime", benchtime, "-count", "1", "-timeout", "1h", ".").CombinedOutput()
	r, rerr := readResults(bytes.NewReader(out))
	switch {
	case err != nil:
		r.Err = fmt.Errorf("go test -bench %s: %w: %s", gb.bench, err, why(out))
	case rerr != nil:
		r.Err = rerr
	case len(r.metrics) == 0:
		r.Err = errors.New(why(out))
	}
	return r
}

// readResults reads `go test -bench` output.
func readResults(in io.Reader) (results, error) {
	r := results{metrics: map[string]map[string]float64{}}
	rd := benchfmt.NewReader(in, "go test")
	for rd.Scan() {
		res, ok := rd.Result().(*benchfmt.Result)
		if !ok {
			continue // unit metadata, or a log line that begins like a result
		}
		base, parts := res.Name.Parts()
		name := string(base)
		for _, p := range parts {
			if p[0] == '/' {
				name += string(p)
			}
		}
		m := map[string]float64{}
		for _, v := range res.Values {
			m[v.Unit] = v.Value
		}
		r.metrics[name] = m
	}
	return r, rd.Err()
}

// why is what go test said of a benchmark that failed or skipped: the first
// line logged under its --- FAIL or --- SKIP, else its last line.
func why(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i, l := range lines[:len(lines)-1] {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "--- FAIL") || strings.HasPrefix(l, "--- SKIP") {
			return strings.TrimSpace(lines[i+1])
		}
	}
	return lines[len(lines)-1]
}
