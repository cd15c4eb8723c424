package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ovsgate/ovsgate/nodecondition"
)

// The root package's benchmark does the measuring, with a real
// kube-apiserver; it is run as `go test` because it needs the test
// helpers that start one.
const (
	apiBench        = "BenchmarkNodeConditionWrites"
	apiBenchTimeout = 15 * time.Minute
	apiNodes        = 5000 // the cluster size of the benchmark's @5000 metrics
)

// The kubelet's Node status writes are the baseline: with node leases, its
// default, it PATCHes the status when it changes and otherwise every
// nodeStatusReportFrequency (5 min). Its 10 s --node-status-update-frequency
// is how often it looks; it writes that often only when the flag is set
// explicitly, which makes it the report frequency too. Leases (40 s,
// renewed every quarter of that) are writes to another, small object.
const (
	kubeletStatusEvery = 5 * time.Minute
	kubeletLeaseEvery  = 10 * time.Second
)

// errBenchSkipped is a benchmark that skipped itself, e.g. for want of a
// built kube-apiserver.
var errBenchSkipped = errors.New("skipped")

// runGoBench runs one benchmark of the root package once and returns its
// reported metrics by unit.
func runGoBench(name string, timeout time.Duration) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^"+name+"$", "-benchtime", "1x", "-count", "1", ".")
	out, runErr := cmd.CombinedOutput()
	metrics, err := parseGoBench(string(out), name)
	if err != nil && runErr != nil && !errors.Is(err, errBenchSkipped) {
		// The parse error alone would hide why go test failed.
		fmt.Fprintf(os.Stderr, "bench: go test -bench %s:\n%s\n", name, out)
		return nil, fmt.Errorf("go test -bench %s: %w: %s", name, runErr, lastLine(string(out)))
	}
	return metrics, err
}

// parseGoBench finds name's result line in `go test -bench` output, e.g.
//
//	BenchmarkX-2   1   82159747765 ns/op   30.00 restarts   0.8999 writes/heartbeat
//
// and returns its metrics by unit; a skipped benchmark is errBenchSkipped
// with the reason it gave.
func parseGoBench(out, name string) (map[string]float64, error) {
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		if rest, ok := strings.CutPrefix(line, "--- SKIP: "+name); ok && (rest == "" || rest[0] == '-' || rest[0] == ' ') {
			return nil, fmt.Errorf("%w: %s", errBenchSkipped, logMessage(lines[i+1:]))
		}
		if rest, ok := strings.CutPrefix(line, "--- FAIL: "+name); ok && (rest == "" || rest[0] == '-' || rest[0] == ' ') {
			return nil, fmt.Errorf("failed: %s", logMessage(lines[i+1:]))
		}
		f := strings.Fields(line)
		if len(f) < 4 || !benchName(f[0], name) {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // a log line that starts with the name
		}
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("result line %q: values and units do not pair up", line)
		}
		metrics := map[string]float64{}
		for j := 2; j < len(f); j += 2 {
			v, err := strconv.ParseFloat(f[j], 64)
			if err != nil {
				return nil, fmt.Errorf("result line %q: %s: %w", line, f[j+1], err)
			}
			metrics[f[j+1]] = v
		}
		return metrics, nil
	}
	return nil, fmt.Errorf("no result line for %s: %s", name, lastLine(out))
}

// benchName reports whether field is name with go test's -GOMAXPROCS suffix.
func benchName(field, name string) bool {
	rest, ok := strings.CutPrefix(field, name)
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	_, err := strconv.Atoi(strings.TrimPrefix(rest, "-"))
	return rest[0] == '-' && err == nil
}

// logMessage returns the first t.Log line below a --- SKIP or --- FAIL
// line, without its "file.go:NN: " prefix.
func logMessage(lines []string) string {
	for _, l := range lines {
		if !strings.HasPrefix(l, "    ") {
			break
		}
		l = strings.TrimSpace(l)
		if file, msg, ok := strings.Cut(l, ": "); ok && strings.Contains(file, ".go:") {
			l = msg
		}
		if l != "" {
			return l
		}
	}
	return "no reason given"
}

func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// apiLoadRows are the table rows of the load one node's condition puts on
// the API server, next to the kubelet's own Node status writes. outage is
// how long one ovs-vswitchd restart kept ovsgate unready in this run, which
// tells whether the merge window hid it. A benchmark that could not run is
// one row that says why.
func apiLoadRows(m map[string]float64, runErr error, outage []time.Duration) []string {
	kubeletPerH := float64(time.Hour / kubeletStatusEvery)
	kubeletPerS := kubeletPerH * apiNodes / 3600
	leasePerS := float64(apiNodes) / kubeletLeaseEvery.Seconds()
	why := fmt.Sprintf("one PATCH every %s while nothing changes, its default with node leases; it checks every 10 s but writes that often only when --node-status-update-frequency is set", span(kubeletStatusEvery))
	if runErr != nil {
		return []string{fmt.Sprintf("| API server: node condition writes (`go test -bench %s`) | not measured: %s | kubelet Node status %.0f/node/h, %.1f/s at %s nodes (%s) | | |",
			apiBench, cell(runErr.Error()), kubeletPerH, kubeletPerS, thousands(apiNodes), why)}
	}
	for _, u := range []string{"writes/heartbeat", "steady-writes/node/h", "flapping-writes/node/h", "restarts", "steady-writes/s@5000", "flapping-writes/s@5000"} {
		if _, ok := m[u]; !ok {
			return apiLoadRows(nil, fmt.Errorf("%s reported no %s", apiBench, u), outage)
		}
	}
	outageNote := ""
	if len(outage) > 0 {
		outageNote = fmt.Sprintf("; in the detection trials above, one restart kept ovsgate unready for %s median, %s p99", ms(pct(outage, 50)), ms(pct(outage, 99)))
	}
	steady, flapping := m["steady-writes/node/h"], m["flapping-writes/node/h"]
	return []string{
		fmt.Sprintf("| API server: node condition writes per node per hour, steady (default %s heartbeat; measured as %.2f writes per 2 s heartbeat over 10 heartbeats, scaled) | %.1f | kubelet Node status %.0f (%s) | %s | at most the kubelet's |",
			span(nodecondition.DefaultHeartbeat), m["writes/heartbeat"], steady, kubeletPerH, why, ratioF(kubeletPerH, steady)),
		fmt.Sprintf("| API server: node condition writes per node per hour while ovs-vswitchd restarts every 2 s for a minute (%.0f restarts; the writes of that minute, per hour, heartbeats not included; a state that flips back within the %s merge window is never written%s) | %.1f | kubelet Node status %.0f | %s | at most %s (one per merge window) |",
			m["restarts"], span(nodecondition.DefaultMergeWindow), outageNote, flapping, kubeletPerH, ratioF(kubeletPerH, flapping), thousands(int(time.Hour/nodecondition.DefaultMergeWindow))),
		fmt.Sprintf("| API server: %s such nodes, node condition writes per second, steady / flapping | %.1f/s / %.1f/s | kubelet Node status %.1f/s (and %.0f/s lease renewals, every %s to a small Lease object) | %s; %s | at most the kubelet's |",
			thousands(apiNodes), m["steady-writes/s@5000"], m["flapping-writes/s@5000"], kubeletPerS, leasePerS, span(kubeletLeaseEvery), ratioF(kubeletPerS, m["steady-writes/s@5000"]), ratioF(kubeletPerS, m["flapping-writes/s@5000"])),
	}
}

// ratioF is ratio for rates; "-" when ovsgate sent nothing to compare with.
func ratioF(base, ours float64) string {
	if ours <= 0 {
		return "-"
	}
	return times(base / ours)
}

// span prints a whole number of minutes or seconds as people write it.
func span(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return fmt.Sprintf("%g s", d.Seconds())
}

// thousands prints n with comma separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
