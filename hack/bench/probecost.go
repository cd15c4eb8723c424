package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/probe"
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
	sent := clients * (n / clients)
	per := func(d time.Duration) time.Duration { return d / time.Duration(sent) }
	return probeCost{cpu: per(cpuOf(serverPID) - before), prober: per(selfCPU() - self)}, float64(sent) / elapsed.Seconds(), nil
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

// probeOnlyServer is ovsgate's probe listener alone, run as a child
// process: the same handler, ready, behind the same server settings
// (timeouts, header limit), with nothing else of the daemon around it.
// Set beside the bare server and serve itself, it splits what a /readyz
// costs over the floor into the listener's part and the rest of serve's.
func probeOnlyServer(addr string) error {
	p := probe.NewProbe(nil)
	p.Update(gate.Status{Ready: true, Checks: []gate.Check{{Name: "gate", OK: true}}})
	ln, err := probe.Listen(addr)
	if err != nil {
		return err
	}
	return probe.NewServer(p, nil).Serve(ln)
}

// handlerCost is the /readyz handler's own time and allocations per
// request, with no connection and no server: what the probe adds to a
// request before anything reaches the network.
func handlerCost() (time.Duration, int64) {
	p := probe.NewProbe(nil)
	p.Update(gate.Status{Ready: true, Checks: []gate.Check{{Name: "gate", OK: true}}})
	req := httptest.NewRequest(http.MethodGet, "/readyz", nil)
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		w := &discardWriter{h: http.Header{}}
		for b.Loop() {
			clear(w.h)
			p.ServeHTTP(w, req)
		}
	})
	return time.Duration(r.NsPerOp()), r.AllocsPerOp()
}

// discardWriter is an http.ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// startServer runs a server, name with args and then a free address to
// listen on, waits until it answers, and returns the process, its address
// and a function that stops it.
func startServer(name string, args ...string) (*exec.Cmd, string, func(), error) {
	addr := freeAddr()
	cmd := exec.Command(name, append(args, addr)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	if !poll(10*time.Second, func() bool { return readyAt(addr) }) {
		stop()
		return nil, "", nil, fmt.Errorf("%s %s never answered on %s", name, strings.Join(args, " "), addr)
	}
	return cmd, addr, stop, nil
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
	noise      float64       // the same for a second bare server: the ratio's resolution here
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
	// Two bare servers: the second, measured like the first, says how far
	// apart two identical servers come out on this machine.
	bare, bareAddr, stopBare, err := startServer(self, "-bare-server")
	if err != nil {
		return res, err
	}
	defer stopBare()
	bare2, bare2Addr, stopBare2, err := startServer(self, "-bare-server")
	if err != nil {
		return res, err
	}
	defer stopBare2()
	only, onlyAddr, stopOnly, err := startServer(self, "-probe-only-server")
	if err != nil {
		return res, err
	}
	defer stopOnly()

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
		servers := []func() (measured, error){measure(e.serve.Process.Pid, ours), measure(bare.Process.Pid, floor)}
		if m.backToBack {
			servers = append(servers, measure(bare2.Process.Pid, "http://"+bare2Addr+"/readyz"), measure(only.Process.Pid, "http://"+onlyAddr+"/readyz"))
		}
		all, err := rotate(m.rounds, servers...)
		if err != nil {
			return res, err
		}
		gs, bs := all[0], all[1]
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
			cpus := func(ms []measured) []time.Duration {
				var d []time.Duration
				for _, x := range ms {
					d = append(d, x.cpu)
				}
				return d
			}
			b2CPU, onlyCPU := cpus(all[2]), cpus(all[3])
			if res.noise, err = medianRatio(b2CPU, bCPU); err != nil {
				return res, err
			}
			onlyRatio, err := medianRatio(onlyCPU, bCPU)
			if err != nil {
				return res, err
			}
			hNs, hAllocs := handlerCost()
			res.rows = append(res.rows, fmt.Sprintf("| probe cost, back to back: where a `/readyz` goes beyond bare net/http | the handler alone %d ns and %d allocations per request (no connection); ovsgate's probe listener alone (its handler and server settings in a process that does nothing else) %s, %.2fx the bare server; serve %s, %.2fx | a second bare server, measured alike: %s, %.2fx the first | | |",
				hNs.Nanoseconds(), hAllocs, us(pct(onlyCPU, 50)), onlyRatio, us(g), res.ratio, us(pct(b2CPU, 50)), res.noise))
		} else {
			res.note = fmt.Sprintf("Left out of the ratios, the prober's own CPU per probe at that pace: %s for a Go HTTP client, %s to fork, exec and reap `ovs-appctl`.",
				us(pct(gProber, 50)), us(a.prober))
		}
	}
	return res, nil
}
