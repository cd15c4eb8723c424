package main

import (
	"errors"
	"fmt"
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

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

// The cost benchmarks of a ready `ovsgate serve`. BENCHMARKS.md.tmpl (in
// hack/bench) describes their method: keep the two in step.
const (
	// probeRounds rounds of probeRequests requests from probeClients
	// clients to each server. With 5 rounds, two identical floor servers
	// came out 0.89x to 1.07x apart from run to run on a 2-core machine;
	// the median of more rounds narrows that, at about 2.7 s a round.
	probeRounds   = 15
	probeRequests = 4000
	probeClients  = 4
	execRuns      = 100

	footprintIdle = time.Minute
	// dayProbes is a day of probes at one a second, sent as fast as
	// probeClients clients go, so that a leak per request shows in seconds.
	// dayWarmup requests come first, so that the day starts from the state
	// it ends in: after a load, not after an idle minute in which the
	// runtime returned memory to the OS.
	dayProbes = 86400
	dayWarmup = 4000
	// daySettle is the wait after a load before memory is read; then up to
	// dayGoroutineWait for the connections' goroutines to end.
	daySettle        = 5 * time.Second
	dayGoroutineWait = 15 * time.Second
	// heapGCs garbage collections are watched for each reading of the heap,
	// after one more, which may still be the last load's.
	heapGCs = 12
)

// BenchmarkReadyzCPU measures the server CPU per /readyz on a new connection
// (as the kubelet's probes come), back to back from probeClients clients,
// for ovsgate serve and two floor servers (hack/bench/floor: a default
// net/http server answering "ok", built as ovsgate is; the second says how
// far apart two identical servers come out here). They take turns over
// probeRounds rounds, each round starting with the next one, so that a slow
// stretch of a loaded machine falls on all; the figures are medians of the
// rounds, the ratios medians of the rounds' own ratios. Then the CPU of one
// run of the exec probes scripts use.
func BenchmarkReadyzCPU(b *testing.B) {
	s := ovstest.Start(b, "br-int")
	sv := benchServe(b, s, buildStatic(b, ".", "ovsgate"))
	floor := buildStatic(b, "./hack/bench/floor", "floor")
	floor1, addr1 := startFloor(b, floor)
	floor2, addr2 := startFloor(b, floor)
	servers, addrs := []*testutil.Daemon{sv.Daemon, floor1, floor2}, []string{sv.probe, addr1, addr2}
	ctl := filepath.Join(s.RunDir(), fmt.Sprintf("ovs-vswitchd.%d.ctl", s.VSwitchdPID()))
	var cpu [3][]time.Duration
	var appctl, vsctl time.Duration
	for b.Loop() {
		for round := range probeRounds {
			for k := range servers {
				i := (round + k) % len(servers)
				cpu[i] = append(cpu[i], httpCost(b, servers[i].Cmd.Process.Pid, addrs[i], probeRequests))
			}
		}
		appctl = execCost(b, "ovs-appctl", "-t", ctl, "version")
		vsctl = execCost(b, "ovs-vsctl", "--db="+s.Endpoint(), "show")
	}
	b.ReportMetric(float64(median(cpu[0]))/1e3, "ovsgate-µs")
	b.ReportMetric(float64(median(cpu[1]))/1e3, "floor-µs")
	b.ReportMetric(medianRatio(cpu[0], cpu[1]), "ratio")
	b.ReportMetric(medianRatio(cpu[2], cpu[1]), "noise")
	b.ReportMetric(float64(appctl)/1e3, "appctl-µs")
	b.ReportMetric(float64(vsctl)/1e3, "vsctl-µs")
	b.ReportMetric(probeRounds, "rounds")
}

// BenchmarkServeFootprint measures a ready serve with one bridge, built as
// make build builds it: "idle" its CPU over footprintIdle with nothing to
// do, then its memory; "day" a day of probes compressed, memory read before,
// halfway and after; "floor" the floor server's RSS after the day's warm-up,
// read as the day's first reading is: the least any Go HTTP daemon holds
// after answering probes.
func BenchmarkServeFootprint(b *testing.B) {
	s := ovstest.Start(b, "br-int")
	bin := buildStatic(b, ".", "ovsgate")
	sv := benchServe(b, s, bin)
	pid := sv.Cmd.Process.Pid
	b.Run("idle", func(b *testing.B) {
		for b.Loop() {
			before := cpuOf(pid)
			time.Sleep(footprintIdle) // what is measured: a minute with nothing to do
			b.ReportMetric(float64(cpuOf(pid)-before)/1e6, "cpu-ms")
			b.ReportMetric(footprintIdle.Seconds(), "s")
			sv.reportMemory(b, "")
			fi, err := os.Stat(bin)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fi.Size()>>10), "binary-KiB")
		}
	})
	b.Run("day", func(b *testing.B) {
		for b.Loop() {
			httpCost(b, pid, sv.probe, dayWarmup)
			sv.settle(b, 0)
			goroutines := sv.reportMemory(b, "before-")
			start := time.Now()
			httpCost(b, pid, sv.probe, dayProbes/2)
			took := time.Since(start)
			sv.settle(b, goroutines)
			sv.reportMemory(b, "mid-")
			start = time.Now()
			httpCost(b, pid, sv.probe, dayProbes-dayProbes/2)
			took += time.Since(start)
			sv.settle(b, goroutines)
			sv.reportMemory(b, "after-")
			b.ReportMetric(took.Seconds(), "s")
			b.ReportMetric(dayProbes, "requests")
		}
	})
	b.Run("floor", func(b *testing.B) {
		floor := buildStatic(b, "./hack/bench/floor", "floor")
		for b.Loop() {
			f, addr := startFloor(b, floor)
			httpCost(b, f.Cmd.Process.Pid, addr, dayWarmup)
			time.Sleep(daySettle) // read as the day's first reading is
			b.ReportMetric(float64(procKiB(b, f.Cmd.Process.Pid)["VmRSS"]), "rss-KiB")
			fi, err := os.Stat(floor)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fi.Size()>>10), "binary-KiB")
		}
	})
}

// benchServer is an `ovsgate serve` for the benchmarks.
type benchServer struct {
	*testutil.Daemon
	probe, metrics, statusFile string
}

// benchServe starts bin's `serve` against s, with its status file on a
// tmpfs, and returns it once /readyz answers 200.
func benchServe(b *testing.B, s *ovstest.Sandbox, bin string) *benchServer {
	sv := &benchServer{statusFile: shmStatusFile(b)}
	sv.Daemon = testutil.StartOvsgate(b, bin, nil, "serve", "--ovsdb", s.Endpoint(), "--ovs-rundir", s.RunDir(),
		"--status-file", sv.statusFile, "--health-probe-bind-address", testutil.AnyPort, "--metrics-bind-address", testutil.AnyPort)
	sv.probe, sv.metrics = sv.Addrs(b)
	if !ovstest.Poll(30*time.Second, func() bool { code, _ := testutil.Get("http://" + sv.probe + "/readyz"); return code == http.StatusOK }) {
		b.Fatal("serve never became ready")
	}
	return sv
}

// shmStatusFile is a path for a status file on a tmpfs, as /var/run is on a
// node: on this machine's disk its fsyncs would time the disk.
func shmStatusFile(b *testing.B) string {
	dir, err := os.MkdirTemp("/dev/shm", "ovsgate-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "status.json")
}

// settle waits daySettle after a load, then up to dayGoroutineWait for the
// connections' goroutines to end (when goroutines is known).
func (sv *benchServer) settle(b *testing.B, goroutines int) {
	time.Sleep(daySettle) // the protocol: every reading is as long after its load
	if goroutines > 0 {
		ovstest.Poll(dayGoroutineWait, func() bool { return int(sv.scrape(b)["go_goroutines"]) <= goroutines })
	}
}

// reportMemory reports serve's memory: RSS first, as it stands, then the Go
// runtime's over heapGCs garbage collections, which the scrapes' own
// allocations bring on. The heap is the least seen just after a collection:
// the registry runs its collectors concurrently, so how much of a scrape's
// own allocation the heap it reports includes varies (2.7 to 5.8 MiB for
// the same server, in trials); the least of a dozen held to 0.1 MiB. A
// scrape counts its own goroutines too, so the count jitters by one or two;
// the most frequent value is the server's own plus the scrape's usual
// share. It returns that goroutine count.
func (sv *benchServer) reportMemory(b *testing.B, prefix string) int {
	st := procKiB(b, sv.Cmd.Process.Pid)
	m := sv.scrape(b)
	seen, heap := map[int]int{}, 0.0
	for gc, deadline := 0, time.Now().Add(time.Minute); gc <= heapGCs; {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d garbage collections in a minute of scraping", gc, heapGCs+1)
		}
		prev := m["go_memstats_last_gc_time_seconds"]
		m = sv.scrape(b)
		seen[int(m["go_goroutines"])]++
		if m["go_memstats_last_gc_time_seconds"] == prev {
			continue
		}
		if h := m["go_memstats_heap_alloc_bytes"]; gc == 1 || (gc > 1 && h < heap) {
			heap = h
		}
		gc++
	}
	goroutines := 0
	for v, n := range seen {
		if n > seen[goroutines] || (n == seen[goroutines] && v < goroutines) {
			goroutines = v
		}
	}
	b.ReportMetric(float64(st["VmRSS"]), prefix+"rss-KiB")
	b.ReportMetric(float64(st["RssAnon"]), prefix+"anon-KiB")
	b.ReportMetric(float64(st["RssFile"]), prefix+"file-KiB")
	b.ReportMetric(heap/1024, prefix+"heap-KiB")
	b.ReportMetric(float64(goroutines), prefix+"goroutines")
	return goroutines
}

// scrape reads the metrics listener, summing each family's samples (for
// the unlabelled Go runtime metrics, their value), on a new connection each
// time: a kept-alive one would hold a goroutine in the server between
// scrapes, and go_goroutines would count it some times and not others.
func (sv *benchServer) scrape(b *testing.B) map[string]float64 {
	code, body := testutil.Get("http://" + sv.metrics + "/metrics")
	if code != http.StatusOK {
		b.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	out := make(map[string]float64, len(families))
	for name, f := range families {
		for _, m := range f.GetMetric() {
			out[name] += m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return out
}

// buildStatic builds the package pkg of this module as make build builds
// ovsgate (static, stripped) and returns the binary.
func buildStatic(b *testing.B, pkg, name string) string {
	bin := filepath.Join(b.TempDir(), name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// floorAddr finds the address the floor server says it listens on.
var floorAddr = regexp.MustCompile(`listening on (\S+)`)

// startFloor starts the floor server on a free address (its one argument)
// and returns it and that address once it answers.
func startFloor(b *testing.B, bin string) (*testutil.Daemon, string) {
	d := testutil.StartOvsgate(b, bin, nil, testutil.AnyPort)
	var addr string
	if !ovstest.Poll(10*time.Second, func() bool {
		if m := floorAddr.FindStringSubmatch(d.Stderr.String()); m != nil {
			addr = m[1]
		}
		code, _ := testutil.Get("http://" + addr + "/")
		return addr != "" && code == http.StatusOK
	}) {
		b.Fatal("the floor server never answered")
	}
	return d, addr
}

// httpCost sends n GET /readyz to addr from probeClients clients, each on a
// new connection, and returns the CPU the server with pid spent per request.
func httpCost(b *testing.B, pid int, addr string, n int) time.Duration {
	before := cpuOf(pid)
	errc := make(chan error, probeClients)
	for range probeClients {
		go func() {
			for range n / probeClients {
				if code, body := testutil.Get("http://" + addr + "/readyz"); code != http.StatusOK {
					errc <- fmt.Errorf("GET /readyz on %s: %d %s", addr, code, body)
					return
				}
			}
			errc <- nil
		}()
	}
	var err error
	for range probeClients {
		err = errors.Join(err, <-errc)
	}
	if err != nil {
		b.Fatal(err)
	}
	return (cpuOf(pid) - before) / time.Duration(probeClients*(n/probeClients))
}

// execCost runs a command execRuns times and returns its own CPU per run
// (user+system of the child, from its rusage).
func execCost(b *testing.B, name string, args ...string) time.Duration {
	var cpu time.Duration
	for range execRuns {
		cmd := exec.Command(name, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", name, err, out)
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return cpu / execRuns
}

// cpuOf is a process's CPU time, summed over its threads from schedstat
// (nanoseconds, unlike the 10 ms ticks of /proc/PID/stat).
func cpuOf(pid int) time.Duration {
	files, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	var total int64
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			if fields := strings.Fields(string(data)); len(fields) > 0 {
				ns, _ := strconv.ParseInt(fields[0], 10, 64)
				total += ns
			}
		}
	}
	return time.Duration(total)
}

// procKiB reads the "Name: N kB" fields of /proc/PID/status.
func procKiB(b *testing.B, pid int) map[string]int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	kib := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "kB" {
			if n, err := strconv.Atoi(f[1]); err == nil {
				kib[strings.TrimSuffix(f[0], ":")] = n
			}
		}
	}
	return kib
}

// median is the middle of d (the upper one of an even count).
func median[T float64 | time.Duration](d []T) T {
	return slices.Sorted(slices.Values(d))[len(d)/2]
}

// medianRatio is the median over rounds of ours/base, each round's pair
// measured side by side.
func medianRatio(ours, base []time.Duration) float64 {
	r := make([]float64, len(ours))
	for i := range ours {
		r[i] = float64(ours[i]) / float64(max(base[i], 1))
	}
	return median(r)
}
