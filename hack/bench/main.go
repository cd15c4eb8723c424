// Command bench measures ovsgate side by side with the gates people script
// today, against a sandbox OVS, and writes a Markdown table. Run it with
// `make bench`; it needs Open vSwitch and a built bin/ovsgate.
package main

import (
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

type env struct {
	dir, bin, probe, metrics, statusFile string
	serve                                *exec.Cmd
}

func main() {
	trials := flag.Int("trials", 50, "trials per reaction and detection figure")
	idle := flag.Duration("idle", 60*time.Second, "how long to measure idle CPU")
	out := flag.String("out", "BENCHMARKS.md", "Markdown file to write")
	bin := flag.String("ovsgate", "bin/ovsgate", "ovsgate binary")
	flag.Parse()
	if err := run(*trials, *idle, *out, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(trials int, idle time.Duration, out, bin string) error {
	dir, err := os.MkdirTemp("", "ovsbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := sh("hack/ovs-sandbox.sh", "start", dir, "br-int"); err != nil {
		return err
	}
	defer func() { _ = sh("hack/ovs-sandbox.sh", "stop", dir) }()

	e := &env{dir: dir, bin: bin, probe: freeAddr(), metrics: freeAddr(), statusFile: filepath.Join(dir, "status", "status.json")}
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
	gate, shell, poll1s, err := e.reaction(trials)
	if err != nil {
		return err
	}
	add("| reaction: add-br returns -> ready, median | %s | shell gate %s; 1 s poll %s | %s; %s | median at most half the shell gate's |",
		ms(pct(gate, 50)), ms(pct(shell, 50)), ms(pct(poll1s, 50)), ratio(pct(shell, 50), pct(gate, 50)), ratio(pct(poll1s, 50), pct(gate, 50)))
	add("| reaction: add-br returns -> ready, p99 | %s | shell gate %s; 1 s poll %s | %s; %s | at most 10 ms |",
		ms(pct(gate, 99)), ms(pct(shell, 99)), ms(pct(poll1s, 99)), ratio(pct(shell, 99), pct(gate, 99)), ratio(pct(poll1s, 99), pct(gate, 99)))

	fmt.Fprintln(os.Stderr, "bench: detection")
	exitD, restartD, err := e.detection(trials / 5)
	if err != nil {
		return err
	}
	add("| detection: ovs-vswitchd SIGKILLed -> /readyz 503, median / p99 | %s / %s | 1 s poll: 500 ms / 1 s (by construction) | %s | at once |",
		ms(pct(exitD, 50)), ms(pct(exitD, 99)), ratio(500*time.Millisecond, pct(exitD, 50)))
	add("| detection: new ovs-vswitchd started -> ready on its pid, median / p99 | %s / %s | | | |", ms(pct(restartD, 50)), ms(pct(restartD, 99)))

	fmt.Fprintln(os.Stderr, "bench: probe cost")
	perReq, rps, err := e.probeCost(20000)
	if err != nil {
		return err
	}
	appctlCPU := execCPU(dir, 50, "ovs-appctl", "-t", ctlSocket(dir), "version")
	vsctlCPU := execCPU(dir, 50, "ovs-vsctl", "--db=unix:"+dir+"/db.sock", "show")
	add("| probe cost: server CPU per `/readyz` (new connection each) | %s | exec `ovs-appctl version` %s; `ovs-vsctl show` %s | %s; %s | at least 100x less |",
		us(perReq), us(appctlCPU), us(vsctlCPU), ratio(appctlCPU, perReq), ratio(vsctlCPU, perReq))
	add("| probe throughput: `/readyz` requests per second (4 clients, same 2 cores) | %.0f/s | | | |", rps)

	fmt.Fprintln(os.Stderr, "bench: footprint (idle for", idle, ")")
	rss, idleCPU, goroutines := e.footprint(idle)
	fi, _ := os.Stat(bin)
	add("| footprint: RSS of a ready `serve` | %.1f MiB | | | |", float64(rss)/1024)
	add("| footprint: CPU while idle over %s | %s (%.3f%% of a core) | | | |", idle, ms(idleCPU), 100*idleCPU.Seconds()/idle.Seconds())
	add("| footprint: binary size | %.1f MiB | | | |", float64(fi.Size())/(1<<20))
	add("| footprint: goroutines | %d | | | |", goroutines)

	var b strings.Builder
	fmt.Fprintf(&b, "# ovsgate benchmarks\n\nWritten by `make bench` (hack/bench) on %s: %d cores, %s/%s, %s, Open vSwitch %s with the dummy datapath (netdev bridges), %s.\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), ovsVersion(dir), cpuModel())
	fmt.Fprintf(&b, "Every figure is measured in the same run as its baseline; ratios are baseline / ovsgate. %d trials for reaction, %d for detection.\n\n", trials, trials/5)
	b.WriteString("| figure | ovsgate | baseline | ratio | goal |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	b.WriteString("\nBaselines: the shell gate is `ovs-vsctl wait-until bridge br-int 'datapath_id!=\"\"'` then `ovs-appctl dpif/show-dp-features br-int` in a loop until it answers (the best a script can do); the 1 s poll is a loop that checks once a second, like common CNI start scripts, started at a random phase.\n")
	b.WriteString("\nNot measured yet: the scale figures (0, 1,000 and 10,000 ports against a client that monitors every column).\n")
	fmt.Print(b.String())
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// reaction times add-br returning -> ready for ovsgate (status file and
// /readyz), the shell gate and a 1 s poll loop.
func (e *env) reaction(n int) (gate, shell, poll1s []time.Duration, err error) {
	for i := 0; i < n; i++ {
		if err = e.delBridge(); err != nil {
			return
		}
		if err = vsctl(e.dir, "--may-exist", "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev"); err != nil {
			return
		}
		start := time.Now()
		if !poll(5*time.Second, func() bool { return e.fileReady() && e.ready() }) {
			return nil, nil, nil, errors.New("not ready after add-br")
		}
		gate = append(gate, time.Since(start))

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
	return gate, shell, poll1s, nil
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

func (e *env) detection(n int) (exit, restart []time.Duration, err error) {
	for i := 0; i < n; i++ {
		pid := vswitchdPID(e.dir)
		if err = syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return
		}
		start := time.Now()
		if !poll(5*time.Second, func() bool { return !e.ready() }) {
			return nil, nil, errors.New("exit not noticed")
		}
		exit = append(exit, time.Since(start))
		for syscall.Kill(pid, 0) == nil {
			time.Sleep(time.Millisecond)
		}
		if err = sh("hack/ovs-sandbox.sh", "start", e.dir); err != nil {
			return
		}
		newPID := vswitchdPID(e.dir)
		start = time.Now()
		if !poll(10*time.Second, func() bool { return e.ready() && e.filePID() == newPID }) {
			return nil, nil, errors.New("not ready on the new instance")
		}
		restart = append(restart, time.Since(start))
	}
	return exit, restart, nil
}

func (e *env) probeCost(n int) (perReq time.Duration, rps float64, err error) {
	pid := strconv.Itoa(e.serve.Process.Pid)
	before := cpuOf(pid)
	start := time.Now()
	errc := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func() {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			for i := 0; i < n/4; i++ {
				r, err := c.Get("http://" + e.probe + "/readyz")
				if err != nil {
					errc <- err
					return
				}
				_, _ = io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
			errc <- nil
		}()
	}
	for w := 0; w < 4; w++ {
		if err := <-errc; err != nil {
			return 0, 0, err
		}
	}
	elapsed := time.Since(start)
	return (cpuOf(pid) - before) / time.Duration(n), float64(n) / elapsed.Seconds(), nil
}

func (e *env) footprint(idle time.Duration) (rssKiB int, idleCPU time.Duration, goroutines int) {
	pid := strconv.Itoa(e.serve.Process.Pid)
	before := cpuOf(pid)
	time.Sleep(idle)
	idleCPU = cpuOf(pid) - before
	b, _ := os.ReadFile("/proc/" + pid + "/status")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	if r, err := http.Get("http://" + e.metrics + "/metrics"); err == nil {
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
				goroutines, _ = strconv.Atoi(v)
			}
		}
	}
	return rssKiB, idleCPU, goroutines
}

func (e *env) ready() bool {
	c := http.Client{Timeout: time.Second}
	r, err := c.Get("http://" + e.probe + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	return r.StatusCode == 200
}

func (e *env) status() (ready bool, pid int) {
	b, err := os.ReadFile(e.statusFile)
	if err != nil {
		return false, 0
	}
	var s struct {
		Ready    bool `json:"ready"`
		VSwitchd struct {
			PID int `json:"pid"`
		} `json:"vswitchd"`
	}
	if json.Unmarshal(b, &s) != nil {
		return false, 0
	}
	return s.Ready, s.VSwitchd.PID
}

func (e *env) fileReady() bool { r, _ := e.status(); return r }
func (e *env) filePID() int {
	r, p := e.status()
	if !r {
		return 0
	}
	return p
}

// execCPU is the CPU (user+system) one run of the command costs, averaged.
func execCPU(dir string, n int, name string, args ...string) time.Duration {
	var total time.Duration
	for i := 0; i < n; i++ {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "OVS_RUNDIR="+dir)
		if cmd.Run() != nil {
			continue
		}
		total += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return total / time.Duration(n)
}

// cpuOf reads a process's user+system CPU from /proc (clock ticks of 10 ms).
func cpuOf(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
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

func sh(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Microsecond)
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

func ratio(base, ours time.Duration) string {
	if ours <= 0 {
		ours = time.Microsecond
	}
	return fmt.Sprintf("%.0fx", float64(base)/float64(ours))
}
