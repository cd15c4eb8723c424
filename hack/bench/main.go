// Command bench runs ovsgate's benchmarks, which measure it against the
// gates people script today and against its own targets, and writes
// BENCHMARKS.md from BENCHMARKS.md.tmpl, with the latency picture beside it.
// Run it with `make bench`; it needs Open vSwitch (and a built kube-apiserver
// for the API server's load).
//
// Every figure is a metric of a Go benchmark of the root package
// (goBenches), read from `go test -bench` output with benchfmt; this command
// only judges the targets and writes the report.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// latencyFigure is the picture written next to the Markdown file.
const latencyFigure = "benchmarks-latency.svg"

func main() {
	out := flag.String("out", "BENCHMARKS.md", "Markdown file to write")
	trials := flag.Int("trials", 50, "trials per reaction and detection figure")
	skip := flag.String("skip", "", "optional Go benchmarks not to run, comma-separated: "+strings.Join(optionalKeys(), ", "))
	flag.Parse()
	var skipped []string
	for _, k := range strings.Split(*skip, ",") {
		if k != "" && !slices.Contains(optionalKeys(), k) {
			fmt.Fprintf(os.Stderr, "bench: -skip: %q is not an optional benchmark (%s)\n", k, strings.Join(optionalKeys(), ", "))
			os.Exit(2)
		}
		skipped = append(skipped, k)
	}
	if *trials < 1 {
		fmt.Fprintln(os.Stderr, "bench: -trials must be at least 1")
		os.Exit(2)
	}
	if err := run(*out, *trials, skipped); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func optionalKeys() []string {
	var keys []string
	for _, g := range goBenches {
		if g.optional {
			keys = append(keys, g.key)
		}
	}
	return keys
}

func run(out string, trials int, skip []string) error {
	rep := newReport(trials)
	for _, gb := range goBenches {
		if slices.Contains(skip, gb.key) {
			rep.Go[gb.key] = results{Err: errors.New("not run (-skip)")}
			continue
		}
		start := time.Now()
		logf("go test -bench %s", gb.bench)
		r := runGoBench(gb, trials)
		switch {
		case r.Err != nil && !gb.optional:
			return fmt.Errorf("%s: %w", gb.key, r.Err)
		case r.Err != nil:
			logf("%s not measured: %v", gb.key, r.Err)
		}
		rep.Go[gb.key] = r
		logf("%s done in %s", gb.key, time.Since(start).Round(time.Second))
	}
	rep.Met = rep.verdicts()

	var fig, md bytes.Buffer
	if err := drawLatency(&fig, rep.Go[latencyKey], trials); err != nil {
		return fmt.Errorf("draw %s: %w", latencyFigure, err)
	}
	if err := render(&md, rep); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(out), latencyFigure), fig.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(out, md.Bytes(), 0o644); err != nil {
		return err
	}
	logf("%s", rep.Met.summary())
	return nil
}

func newReport(trials int) report {
	r := report{Trials: trials, Figure: latencyFigure, Goals: targetGoals, Go: map[string]results{}, Kubelet: newKubeletBaseline(),
		Date: time.Now().UTC().Format("2006-01-02"), Cores: runtime.NumCPU(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
		GoVersion: runtime.Version(), OVS: "?", CPU: "unknown CPU"}
	// "ovs-vswitchd (Open vSwitch) 3.1.0"
	if v, err := exec.Command("ovs-vswitchd", "--version").Output(); err == nil {
		f := strings.Fields(strings.SplitN(string(v), "\n", 2)[0])
		r.OVS = f[len(f)-1]
	}
	info, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(info), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			r.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			break
		}
	}
	return r
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }
