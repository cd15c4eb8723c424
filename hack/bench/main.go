// Command bench measures ovsgate side by side with the gates people script
// today, against a sandbox OVS, and writes a Markdown table. Run it with
// `make bench`; it needs Open vSwitch and a built bin/ovsgate.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// latencyFigure is the SVG written next to the Markdown file.
const latencyFigure = "benchmarks-latency.svg"

// scaleRuns is how many times each client is started per port count; with
// 10,000 ports ovs-vswitchd and ovsdb-server spend long stretches on
// statistics, so single start-up times vary and the median is reported.
const scaleRuns = 7

type env struct {
	dir, bin, probe, metrics, statusFile string
	serve                                *exec.Cmd
}

func main() {
	trials := flag.Int("trials", 50, "trials per reaction and detection figure")
	idle := flag.Duration("idle", 60*time.Second, "how long to measure idle CPU")
	out := flag.String("out", "BENCHMARKS.md", "Markdown file to write")
	bin := flag.String("ovsgate", "bin/ovsgate", "ovsgate binary")
	ports := flag.String("ports", "0,1000,10000", "port counts on the gated bridge for the scale figures")
	monitorAllSock := flag.String("monitor-all", "", "internal: run as the all-columns OVSDB client on this socket")
	bareAddr := flag.String("bare-server", "", "internal: run as a bare net/http server on this address")
	probeOnlyAddr := flag.String("probe-only-server", "", "internal: run as ovsgate's probe listener alone on this address")
	apiLoad := flag.Bool("api-load", true, "run "+apiBench+" for the API server rows (about 2 minutes; needs a built kube-apiserver)")
	flag.Parse()
	var err error
	switch {
	case *monitorAllSock != "":
		err = monitorAll(*monitorAllSock, os.Stdin, func(*allColumns) { fmt.Println("ready") })
	case *bareAddr != "":
		err = bareServer(*bareAddr)
	case *probeOnlyAddr != "":
		err = probeOnlyServer(*probeOnlyAddr)
	default:
		var counts []int
		for _, f := range strings.Split(*ports, ",") {
			n, perr := strconv.Atoi(strings.TrimSpace(f))
			if perr != nil || n < 0 {
				fmt.Fprintf(os.Stderr, "bench: -ports: %q is not a port count\n", f)
				os.Exit(2)
			}
			if len(counts) > 0 && n < counts[len(counts)-1] {
				fmt.Fprintf(os.Stderr, "bench: -ports must be in increasing order, got %d after %d\n", n, counts[len(counts)-1])
				os.Exit(2)
			}
			counts = append(counts, n)
		}
		if *trials < 1 {
			fmt.Fprintln(os.Stderr, "bench: -trials must be at least 1")
			os.Exit(2)
		}
		err = run(*trials, *idle, *out, *bin, counts, *apiLoad)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(trials int, idle time.Duration, out, bin string, portCounts []int, apiLoad bool) error {
	// First, while nothing else of ours runs: it starts its own OVS and
	// kube-apiserver.
	apiMetrics, apiErr := map[string]float64(nil), errors.New("not run (-api-load=false)")
	if apiLoad {
		fmt.Fprintln(os.Stderr, "bench: API server load (go test -bench", apiBench+")")
		apiMetrics, apiErr = runGoBench(apiBench, apiBenchTimeout)
		if apiErr != nil {
			fmt.Fprintln(os.Stderr, "bench: API server load not measured:", apiErr)
		}
	}

	dir, err := os.MkdirTemp("", "ovsbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := sh("hack/ovs-sandbox.sh", "start", dir, "br-int"); err != nil {
		return err
	}
	defer func() { _ = sh("hack/ovs-sandbox.sh", "stop", dir) }()

	// The status file on a tmpfs, as /var/run is on a node: on this
	// machine's disk its fsyncs would measure the disk, not ovsgate.
	statusDir, err := os.MkdirTemp("/dev/shm", "ovsgate-bench")
	if err != nil {
		statusDir = filepath.Join(dir, "status")
	} else {
		defer os.RemoveAll(statusDir)
	}
	e := &env{dir: dir, bin: bin, probe: freeAddr(), metrics: freeAddr(), statusFile: filepath.Join(statusDir, "status.json")}
	e.serve = exec.Command(bin, "serve", "--ovsdb", "unix:"+dir+"/db.sock", "--ovs-rundir", dir,
		"--status-file", e.statusFile, "--health-probe-bind-address", e.probe, "--metrics-bind-address", e.metrics)
	e.serve.Stderr = io.Discard
	if err := e.serve.Start(); err != nil {
		return err
	}
	defer func() { _ = e.serve.Process.Signal(syscall.SIGTERM); _ = e.serve.Wait() }()
	if !poll(10*time.Second, e.ready) {
		return errors.New("ovsgate serve never became ready")
	}

	var rows []string
	add := func(format string, a ...any) { rows = append(rows, fmt.Sprintf(format, a...)) }

	fmt.Fprintln(os.Stderr, "bench: reaction")
	gate, decided, shell, poll1s, err := e.reaction(trials)
	if err != nil {
		return err
	}
	add("| reaction: add-br returns -> ready, median | %s | shell gate %s; 1 s poll %s | %s; %s | median at most half the shell gate's |",
		ms(pct(gate, 50)), ms(pct(shell, 50)), ms(pct(poll1s, 50)), ratio(pct(shell, 50), pct(gate, 50)), ratio(pct(poll1s, 50), pct(gate, 50)))
	add("| reaction: add-br returns -> ready, p99 | %s | shell gate %s; 1 s poll %s | %s; %s | at most 10 ms |",
		ms(pct(gate, 99)), ms(pct(shell, 99)), ms(pct(poll1s, 99)), ratio(pct(shell, 99), pct(gate, 99)), ratio(pct(poll1s, 99), pct(gate, 99)))

	fmt.Fprintln(os.Stderr, "bench: detection")
	exitD, restartD, outage, err := e.detection(trials)
	if err != nil {
		return err
	}
	add("| detection: ovs-vswitchd SIGKILLed -> /readyz 503, median / p99 | %s / %s | 1 s poll: 500 ms / 990 ms (by construction) | %s; %s | at once |",
		ms(pct(exitD, 50)), ms(pct(exitD, 99)), ratio(500*time.Millisecond, pct(exitD, 50)), ratio(990*time.Millisecond, pct(exitD, 99)))
	add("| detection: new ovs-vswitchd started -> ready on its pid, median / p99 | %s / %s | | | |", ms(pct(restartD, 50)), ms(pct(restartD, 99)))

	fmt.Fprintln(os.Stderr, "bench: probe cost")
	probes, err := e.probeCosts()
	if err != nil {
		return err
	}
	rows = append(rows, probes.rows...)

	fmt.Fprintln(os.Stderr, "bench: footprint (idle for", idle, ")")
	idleCPU, wakeups, mem, err := e.footprint(idle)
	if err != nil {
		return err
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return err
	}
	add("| footprint: RSS of a ready `serve` | %s | | | |", mibOf(mem.rssKiB))
	secs, err := residentSections(e.serve.Process.Pid, bin)
	files := "RssFile by section of the binary (resident of size, from /proc/PID/pagemap): "
	if err != nil {
		files += "not measured: " + err.Error()
	} else {
		files += sectionsText(secs) + ". The kernel maps in the neighbours of each page touched (fault-around), so RssFile follows the binary's size more than the code that runs; the floor server in the RSS target row shows the same share"
	}
	add("| footprint: what that RSS is made of | %s. %s | | | |", rssBreakdown(mem), files)
	add("| footprint: CPU while idle over %s | %s (%.3f%% of a core); its threads woke %d times, %.1f per second (voluntary context switches) | | | |",
		idle, ms(idleCPU), idlePercent(idleCPU, idle), wakeups, float64(wakeups)/idle.Seconds())
	add("| footprint: binary size | %.1f MiB | | | |", float64(fi.Size())/(1<<20))
	add("| footprint: goroutines | %d | | | |", mem.goroutines)

	fmt.Fprintln(os.Stderr, "bench: a day of probes,", thousands(soakProbes), "requests")
	day, err := e.soak()
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "bench: the floor server's memory")
	floor, err := floorMemory(dir)
	if err != nil {
		return err
	}

	have := 0
	var checkNone, checkMany checkCost
	for _, n := range scaleSteps(portCounts, 0, checkPorts) {
		fmt.Fprintln(os.Stderr, "bench: scale with", n, "ports")
		if err := e.setPorts(have, n); err != nil {
			return err
		}
		have = n
		switch n {
		case 0:
			checkNone, err = e.checkCPU(checkRuns)
		case checkPorts:
			checkMany, err = e.checkCPU(checkRuns)
		}
		if err != nil {
			return err
		}
		if !slices.Contains(portCounts, n) {
			continue
		}
		g, err := e.scaleOvsgate(scaleRuns)
		if err != nil {
			return err
		}
		a, err := e.scaleAllColumns(scaleRuns)
		if err != nil {
			return err
		}
		add("| scale, %d ports: bytes read from OVSDB at start | %d B | all columns %d B | %s | flat in ports |", n, g.bytes, a.bytes, ratioN(a.bytes, g.bytes))
		add("| scale, %d ports: process start -> ready (median of %d) | %s | all columns %s (tables loaded, features not yet asked) | %s | flat in ports |", n, scaleRuns, ms(g.ready), ms(a.ready), ratio(a.ready, g.ready))
		add("| scale, %d ports: RSS 1 s after ready | %.1f MiB | all columns %.1f MiB | %s | flat in ports |", n, float64(g.rssKiB)/1024, float64(a.rssKiB)/1024, ratioN(int64(a.rssKiB), int64(g.rssKiB)))
		add("| scale, %d ports: one `ovs-appctl dpif/show-dp-features` (wall time, median of 5; what ovs-vswitchd itself takes to answer) | | %s | | |", n, ms(e.appctlWall(5)))
	}
	rows = append(rows, apiLoadRows(apiMetrics, apiErr, outage)...)

	targets := []target{
		probeTarget(probes.ours, probes.bare, probes.ratio, probes.noise),
		rssTarget(mem, day, floor),
		reactionTarget(gate, decided, shell),
		checkTarget(checkNone, checkMany),
		idleTarget(idleCPU, idle),
	}
	var top []string
	for _, t := range targets {
		top = append(top, t.row)
	}
	rows = append(top, rows...)

	figure := filepath.Join(filepath.Dir(out), latencyFigure)
	f, err := os.Create(figure)
	if err != nil {
		return err
	}
	err = writeECDF(f, fmt.Sprintf("Latency distributions, %d trials per curve", trials), []panel{
		{title: "Reaction: add-br returns → ready", series: []series{
			{name: "ovsgate", color: "#0072B2", vals: gate},
			{name: "shell gate", color: "#E69F00", dash: "7 3", vals: shell},
			{name: "1 s poll", color: "#D55E00", dash: "2 2", vals: poll1s},
		}},
		{title: "ovsgate: ovs-vswitchd killed, then restarted", series: []series{
			{name: "SIGKILL → 503", color: "#0072B2", vals: exitD},
			{name: "restart → ready", color: "#009E73", dash: "7 3", vals: restartD},
		}},
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", figure, err)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# ovsgate benchmarks\n\nWritten by `make bench` (hack/bench) on %s: %d cores, %s/%s, %s, Open vSwitch %s with the dummy datapath (netdev bridges), %s.\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), ovsVersion(dir), cpuModel())
	fmt.Fprintf(&b, "Every figure is measured in the same run as its baseline; ratios are baseline / ovsgate, except in the targets rows, where they are ovsgate / baseline as the targets are written. %d trials for reaction and detection.\n\n", trials)
	fmt.Fprintf(&b, "![Cumulative distributions of reaction and detection latency, ovsgate against the shell gates](%s)\n\n", latencyFigure)
	b.WriteString("How to read the figure: each curve is one method, and its height at a time on the (logarithmic) x axis is the share of trials done by then, so a curve further left is faster and a steeper one is steadier; medians are where curves cross the 50% line.\n\n")
	b.WriteString("| figure | ovsgate | baseline | ratio | goal |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	b.WriteString("\nBaselines:\n")
	b.WriteString("- ovsgate's status file is on a tmpfs (/dev/shm), as /var/run is on a node, so that its fsyncs do not measure this machine's disk.\n")
	b.WriteString("- The shell gate is `ovs-vsctl wait-until bridge br-int 'datapath_id!=\"\"'` then `ovs-appctl dpif/show-dp-features br-int` in a loop until it answers (the best a script can do). The 1 s poll is a loop that checks once a second, like common CNI start scripts, started at a random phase.\n")
	b.WriteString("- Probe cost is CPU time of the process that answers: the server's threads for HTTP (from schedstat), the command itself for exec (its rusage). Every HTTP request uses a new connection, as the kubelet's do. The bare net/http server is a default `http.Server` whose handler writes \"ok\": the floor for any Go HTTP probe. " + probes.note + " In a cluster an exec probe also runs through the container runtime (`runc exec`), which this machine does not have; that cost is not included.\n")
	b.WriteString("- The all-columns client is a generic OVSDB client (run as a separate Go process) that reads the schema and monitors every column of Bridge, Port and Interface, keeping the rows as decoded JSON, as a client with full table models does. Bytes are counted by a unix-socket proxy in front of ovsdb-server, the same way for both clients. ovsgate's time to ready is its process start, OVSDB (the same bytes whatever the port count) and one batch to ovs-vswitchd (`version` and `dpif/show-dp-features` in one write, answered in one pass of its main loop); what grows with the ports is how long ovs-vswitchd takes to answer, shown per size by the `ovs-appctl` row.\n")
	fmt.Fprintf(&b, "- The targets rows: probe CPU is the back-to-back measurement above, the ratio the median of the rounds' own ratios. The day of probes is %s `/readyz` requests on new connections, after %s more to start it from the state it ends in (loaded, not idle); each reading of memory is %s after a load, RSS first (VmRSS), then the Go runtime's metrics over %d garbage collections brought on by scraping the metrics listener: the Go heap is the least `go_memstats_heap_alloc_bytes` seen just after one (what the server holds, and what a scrape holds while it runs, the same each time; not the garbage of the last requests), and goroutines the most frequent `go_goroutines` value over those scrapes: each scrape counts its own goroutines too (the one serving it and the workers client_golang starts to collect it, from one up to one per registered collector, as many as the scheduler lets start), so single scrapes jitter by one or two, and the most frequent value is the server's own count plus the scrape's usual share. `ovsgate check` CPU is the child's user+system time from its rusage, and so is that of the `ovsgate version` run beside each check; the %s ports are added as in the scale rows.\n",
		thousands(soakProbes), thousands(soakWarmup), soakSettle, snapshotGCs, thousands(checkPorts))
	fmt.Print(b.String())
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "bench:", targetSummary(targets))
	return nil
}

// reaction times add-br returning -> ready for ovsgate (status file and
// /readyz), the shell gate and a 1 s poll loop. decided is, for each of
// ovsgate's trials, when the gate itself turned ready (the status's
// "updated") after add-br returned, 0 when it did before: the rest of a
// trial is the status file's write and the reader's own requests.
func (e *env) reaction(n int) (gate, decided, shell, poll1s []time.Duration, err error) {
	events, err := statusEvents(e.statusFile)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer events.close()
	for i := 0; i < n; i++ {
		if err = e.delBridge(); err != nil {
			return
		}
		if err = vsctl(e.dir, "--may-exist", "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev"); err != nil {
			return
		}
		start := time.Now()
		// The status file is replaced after /readyz turns: wait for it
		// without polling, then confirm /readyz.
		if !events.waitFor(5*time.Second, 50*time.Millisecond, e.fileReady) || !poll(5*time.Second, e.ready) {
			return nil, nil, nil, nil, errors.New("not ready after add-br")
		}
		gate = append(gate, time.Since(start))
		updated, uerr := e.readySince()
		if uerr != nil {
			return nil, nil, nil, nil, uerr
		}
		decided = append(decided, max(0, updated.Sub(start)))

		if err = e.delBridge(); err != nil {
			return
		}
		if err = vsctl(e.dir, "--may-exist", "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev"); err != nil {
			return
		}
		start = time.Now()
		if err = vsctl(e.dir, "wait-until", "bridge", "br-int", `datapath_id!=""`); err != nil {
			return
		}
		for exec.Command("ovs-appctl", "-t", ctlSocket(e.dir), "dpif/show-dp-features", "br-int").Run() != nil {
		}
		shell = append(shell, time.Since(start))

		// A 1 s poll started at a random phase sees the bridge at its next tick.
		phase := time.Duration(time.Now().UnixNano() % int64(time.Second))
		poll1s = append(poll1s, time.Second-phase+shell[len(shell)-1])
	}
	return gate, decided, shell, poll1s, nil
}

// readySince is the "updated" time of a ready status file: when the gate
// turned ready.
func (e *env) readySince() (time.Time, error) {
	s, err := e.status()
	if err != nil {
		return time.Time{}, err
	}
	if !s.Ready || s.Updated.IsZero() {
		return time.Time{}, fmt.Errorf("status file: not ready with its time (ready %v, updated %v)", s.Ready, s.Updated)
	}
	return s.Updated, nil
}

func (e *env) delBridge() error {
	if err := vsctl(e.dir, "--if-exists", "del-br", "br-int"); err != nil {
		return err
	}
	if !poll(5*time.Second, func() bool { return !e.ready() }) {
		return errors.New("still ready after del-br")
	}
	return nil
}

// detection kills ovs-vswitchd as a crash would and times /readyz turning
// 503 from the moment the SIGKILL is sent, then starts a new one and times
// ovsgate trusting its pid from the moment its start script returns; outage
// is the whole restart, SIGKILL to ready again. The sandbox script does the
// killing: it signals only the process it started, never a pid read from
// the pidfile.
func (e *env) detection(n int) (exit, restart, outage []time.Duration, err error) {
	for i := 0; i < n; i++ {
		var gone func() error
		if gone, err = killVSwitchd(e.dir); err != nil {
			return
		}
		start := time.Now()
		killed := start
		if !poll(5*time.Second, func() bool { return !e.ready() }) {
			_ = gone()
			return nil, nil, nil, errors.New("exit not noticed")
		}
		exit = append(exit, time.Since(start))
		if err = gone(); err != nil {
			return
		}
		if err = sh("hack/ovs-sandbox.sh", "start-vswitchd", e.dir); err != nil {
			return
		}
		newPID := vswitchdPID(e.dir)
		start = time.Now()
		if !poll(10*time.Second, func() bool { return e.ready() && e.filePID() == newPID }) {
			return nil, nil, nil, errors.New("not ready on the new instance")
		}
		restart = append(restart, time.Since(start))
		outage = append(outage, time.Since(killed))
	}
	return exit, restart, outage, nil
}

// killVSwitchd runs `ovs-sandbox.sh kill-vswitchd` and returns as soon as
// the script reports the SIGKILL sent; gone waits until it reports the
// process gone (it exits 0 only then).
func killVSwitchd(dir string) (gone func() error, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cmd := exec.CommandContext(ctx, "hack/ovs-sandbox.sh", "kill-vswitchd", dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	var said []string
	lines := bufio.NewScanner(out)
	finish := func() error {
		defer cancel()
		for lines.Scan() {
			said = append(said, lines.Text())
		}
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("hack/ovs-sandbox.sh kill-vswitchd %s: %w: %s %s", dir, err, strings.Join(said, "; "), stderr.String())
		}
		return nil
	}
	for lines.Scan() {
		said = append(said, lines.Text())
		if strings.HasPrefix(lines.Text(), "ovs-vswitchd: SIGKILL sent") {
			return finish, nil
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("hack/ovs-sandbox.sh kill-vswitchd %s did not report the SIGKILL: %s", dir, strings.Join(said, "; "))
}

// footprint is serve's CPU and wakeups over idle, then its memory.
func (e *env) footprint(idle time.Duration) (idleCPU time.Duration, wakeups int, mem memSnapshot, err error) {
	pid := e.serve.Process.Pid
	before, woke := cpuOf(pid), sleepsOf(pid)
	time.Sleep(idle)
	idleCPU, wakeups = cpuOf(pid)-before, sleepsOf(pid)-woke
	mem, err = e.snapshot()
	return idleCPU, wakeups, mem, err
}

// sleepsOf is how many times a process's threads have gone to sleep so
// far (their voluntary context switches, summed): each one is followed by a
// wakeup, so over an idle stretch it counts the wakeups.
func sleepsOf(pid int) int {
	files, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
	total := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				total += n
			}
		}
	}
	return total
}

func (e *env) ready() bool { return readyAt(e.probe) }

// readyAt reports whether GET /readyz on addr answers 200.
func readyAt(addr string) bool {
	c := http.Client{Timeout: time.Second}
	r, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	return r.StatusCode == 200
}

// fileStatus is what the bench reads of serve's status file.
type fileStatus struct {
	Ready    bool      `json:"ready"`
	Updated  time.Time `json:"updated"`
	VSwitchd struct {
		PID int `json:"pid"`
	} `json:"vswitchd"`
}

// status reads serve's status file.
func (e *env) status() (fileStatus, error) {
	var s fileStatus
	b, err := os.ReadFile(e.statusFile)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("status file: %w", err)
	}
	return s, nil
}

func (e *env) fileReady() bool { s, err := e.status(); return err == nil && s.Ready }
func (e *env) filePID() int {
	if s, err := e.status(); err == nil && s.Ready {
		return s.VSwitchd.PID
	}
	return 0
}

func vswitchdPID(dir string) int {
	b, _ := os.ReadFile(filepath.Join(dir, "ovs-vswitchd.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func ctlSocket(dir string) string {
	return filepath.Join(dir, fmt.Sprintf("ovs-vswitchd.%d.ctl", vswitchdPID(dir)))
}

func ovsVersion(dir string) string {
	out, err := exec.Command("ovs-appctl", "-t", ctlSocket(dir), "version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	return f[len(f)-1]
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func vsctl(dir string, args ...string) error {
	return sh("ovs-vsctl", append([]string{"--db=unix:" + dir + "/db.sock", "--timeout=10"}, args...)...)
}

func sh(name string, args ...string) error { return runFor(30*time.Second, name, args...) }

// runFor runs a command with a deadline; its error names the command (cut
// short when it is long) and carries its output.
func runFor(d time.Duration, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		shown := args
		if len(shown) > 8 {
			shown = append(slices.Clone(shown[:8]), fmt.Sprintf("... (%d more arguments)", len(args)-8))
		}
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(shown, " "), err, out)
	}
	return nil
}

func poll(d time.Duration, cond func() bool) bool { return pollEvery(100*time.Microsecond, d, cond) }

// pollEvery checks cond every interval until it holds or d has passed.
func pollEvery(interval, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(interval)
	}
	return false
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d.Nanoseconds())/1000) }

// ratioN is ratio for counts (bytes, KiB).
func ratioN(base, ours int64) string {
	if ours <= 0 {
		return "-"
	}
	return times(float64(base) / float64(ours))
}

func ratio(base, ours time.Duration) string {
	if ours <= 0 {
		ours = time.Microsecond
	}
	return times(float64(base) / float64(ours))
}

// times prints a ratio with one decimal below 10 and none above.
func times(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.1fx", r)
	}
	return fmt.Sprintf("%.0fx", r)
}
