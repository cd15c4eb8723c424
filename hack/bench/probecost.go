package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// probeCost is the CPU per probe of one way of probing, and what the prober
// itself spent per probe (HTTP client, or fork+exec+wait).
type probeCost struct {
	cpu, prober time.Duration
}

// httpCost sends n GET requests to url from the given number of clients,
// each on a new connection as the kubelet does, pausing gap between a
// client's requests, and returns the server's CPU per request and the
// request rate.
func httpCost(serverPID int, url string, n, clients int, gap time.Duration) (probeCost, float64, error) {
	before, self := cpuOf(serverPID), selfCPU()
	start := time.Now()
	errc := make(chan error, clients)
	for w := 0; w < clients; w++ {
		go func() {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
			for i := 0; i < n/clients; i++ {
				r, err := c.Get(url)
				if err != nil {
					errc <- err
					return
				}
				_, _ = io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if r.StatusCode != http.StatusOK {
					errc <- errors.New(url + ": " + r.Status)
					return
				}
				if gap > 0 {
					time.Sleep(gap)
				}
			}
			errc <- nil
		}()
	}
	for w := 0; w < clients; w++ {
		if err := <-errc; err != nil {
			return probeCost{}, 0, err
		}
	}
	elapsed := time.Since(start)
	per := func(d time.Duration) time.Duration { return d / time.Duration(n) }
	return probeCost{cpu: per(cpuOf(serverPID) - before), prober: per(selfCPU() - self)}, float64(n) / elapsed.Seconds(), nil
}

// execCost runs a command n times, gap apart, and returns its own CPU per
// run (user+system of the child) and what starting and reaping it cost here.
func execCost(dir string, n int, gap time.Duration, name string, args ...string) (probeCost, error) {
	var child time.Duration
	self := selfCPU()
	for i := 0; i < n; i++ {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "OVS_RUNDIR="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return probeCost{}, errors.New(name + ": " + err.Error() + ": " + string(out))
		}
		child += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if gap > 0 {
			time.Sleep(gap)
		}
	}
	return probeCost{cpu: child / time.Duration(n), prober: (selfCPU() - self) / time.Duration(n)}, nil
}

// bareServer is the floor for /readyz, run as a child process: a default
// net/http server whose handler writes "ok".
func bareServer(addr string) error {
	return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
}

// cpuOf is a process's CPU time, summed over its threads from schedstat
// (nanoseconds, unlike the 10 ms ticks of /proc/PID/stat).
func cpuOf(pid int) time.Duration {
	files, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	var total int64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if fields := strings.Fields(string(b)); len(fields) > 0 {
			ns, _ := strconv.ParseInt(fields[0], 10, 64)
			total += ns
		}
	}
	return time.Duration(total)
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// probeResult is what probeCosts measured: table rows, a note on what the
// prober itself spent, and the back-to-back figures of the probe target.
type probeResult struct {
	rows       []string
	note       string
	ours, bare time.Duration // CPU per probe back to back, medians of the rounds
	ratio      float64       // median over the rounds of ours / bare
}

// probeCosts measures /readyz against a bare net/http server and two exec
// probes, back to back and at a probe-like pace. Back to back, ovsgate and
// the bare server take turns over several rounds and each figure is a
// median of rounds, so that one noisy stretch decides nothing.
func (e *env) probeCosts() (probeResult, error) {
	var res probeResult
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	bareAddr := freeAddr()
	bare := exec.Command(self, "-bare-server", bareAddr)
	bare.Stderr = os.Stderr
	if err := bare.Start(); err != nil {
		return res, err
	}
	defer func() { _ = bare.Process.Kill(); _ = bare.Wait() }()
	if !poll(10*time.Second, func() bool { return readyAt(bareAddr) }) {
		return res, errors.New("bare net/http server never answered")
	}

	ours, floor := "http://"+e.probe+"/readyz", "http://"+bareAddr+"/readyz"
	vsctlArgs := []string{"--db=unix:" + e.dir + "/db.sock", "show"}
	modes := []struct {
		name       string
		rounds, n  int // n requests per round to each server
		clients    int
		gap        time.Duration
		execRuns   int
		backToBack bool
	}{
		{fmt.Sprintf("back to back (4 clients, median of %d alternating rounds of %s)", probeRounds, thousands(probeRoundRequests)), probeRounds, probeRoundRequests, 4, 0, 100, true},
		{"one probe every 100 ms", 1, 50, 1, 100 * time.Millisecond, 50, false},
	}
	type measured struct {
		probeCost
		rps float64
	}
	for _, m := range modes {
		measure := func(pid int, url string) func() (measured, error) {
			return func() (measured, error) {
				c, rps, err := httpCost(pid, url, m.n, m.clients, m.gap)
				return measured{c, rps}, err
			}
		}
		gs, bs, err := alternate(m.rounds, measure(e.serve.Process.Pid, ours), measure(bare.Process.Pid, floor))
		if err != nil {
			return res, err
		}
		var gCPU, bCPU, gProber []time.Duration
		var gRPS, bRPS []float64
		for i := range gs {
			gCPU, bCPU, gProber = append(gCPU, gs[i].cpu), append(bCPU, bs[i].cpu), append(gProber, gs[i].prober)
			gRPS, bRPS = append(gRPS, gs[i].rps), append(bRPS, bs[i].rps)
		}
		g, b := pct(gCPU, 50), pct(bCPU, 50)
		a, err := execCost(e.dir, m.execRuns, m.gap, "ovs-appctl", "-t", ctlSocket(e.dir), "version")
		if err != nil {
			return res, err
		}
		v, err := execCost(e.dir, m.execRuns, m.gap, "ovs-vsctl", vsctlArgs...)
		if err != nil {
			return res, err
		}
		res.rows = append(res.rows, fmt.Sprintf("| probe cost, %s: CPU per probe | %s (bare net/http %s) | exec `ovs-appctl version` %s; `ovs-vsctl show` %s | %s; %s | at least 100x less |",
			m.name, us(g), us(b), us(a.cpu), us(v.cpu), ratio(a.cpu, g), ratio(v.cpu, g)))
		if m.backToBack {
			res.rows = append(res.rows, fmt.Sprintf("| probe throughput: `/readyz` requests per second (4 clients on the same %d cores, median of the rounds) | %.0f/s | bare net/http %.0f/s | | |",
				runtime.NumCPU(), medianF(gRPS), medianF(bRPS)))
			res.ours, res.bare = g, b
			if res.ratio, err = medianRatio(gCPU, bCPU); err != nil {
				return res, err
			}
		} else {
			res.note = fmt.Sprintf("Left out of the ratios, the prober's own CPU per probe at that pace: %s for a Go HTTP client, %s to fork, exec and reap `ovs-appctl`.",
				us(pct(gProber, 50)), us(a.prober))
		}
	}
	return res, nil
}
