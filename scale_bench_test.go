package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

const (
	// scaleRuns is how many times each client is started per port count;
	// with 10,000 ports ovs-vswitchd and ovsdb-server spend long stretches
	// on statistics, so single start-up times vary and the median is kept.
	scaleRuns = 7
	checkRuns = 31 // `ovsgate check` runs per port count: a 12 ms process is noisy
)

// BenchmarkScale grows the gated bridge to many ports and measures, where
// asked, "start/ports=N": what ovsgate serve and a generic all-columns
// OVSDB client (hack/bench/allcolumns) cost at start: the bytes each reads
// from OVSDB until ready (counted by a proxy in front of ovsdb-server,
// the same way for both), the median time from process start to ready, and
// RSS 1 s after ready; and how long one `ovs-appctl dpif/show-dp-features`
// takes there, since ovsgate's ready waits for ovs-vswitchd's answers.
// "check/ports=N": the CPU (user+system, from its rusage) of `ovsgate check`
// and of `ovsgate version` run beside it, in turn before and after it, and
// the median of their ratios: version pays the same start of the same
// binary and no OVS work, so the ratio holds still while the machine as a
// whole runs faster or slower (which moved the median of 15 checks by 30%
// within a minute in trials).
func BenchmarkScale(b *testing.B) {
	s := ovstest.Start(b, "br-int")
	bin := buildStatic(b, ".", "ovsgate")
	all := buildStatic(b, "./hack/bench/allcolumns", "allcolumns")
	have := 0
	for _, step := range []struct {
		ports        int
		start, check bool
	}{{0, true, true}, {1000, true, false}, {5000, false, true}, {10000, true, false}} {
		addPorts(b, s, have, step.ports)
		have = step.ports
		if step.start {
			b.Run(fmt.Sprintf("start/ports=%d", step.ports), func(b *testing.B) {
				for b.Loop() {
					reportStarts(b, s, "", func(sock string) client { return startServeAt(b, s, bin, sock) })
					reportStarts(b, s, "all-", func(sock string) client { return startAllColumns(b, all, sock) })
					var wall []time.Duration
					for range 5 {
						start := time.Now()
						if err := exec.Command("ovs-appctl", "-t", filepath.Join(s.RunDir(), fmt.Sprintf("ovs-vswitchd.%d.ctl", s.VSwitchdPID())),
							"dpif/show-dp-features", "br-int").Run(); err != nil {
							b.Fatal(err)
						}
						wall = append(wall, time.Since(start))
					}
					b.ReportMetric(float64(median(wall))/1e6, "appctl-ms")
				}
			})
		}
		if step.check {
			b.Run(fmt.Sprintf("check/ports=%d", step.ports), func(b *testing.B) {
				for b.Loop() {
					var check, version []time.Duration
					for i := range checkRuns {
						if i%2 == 0 {
							version = append(version, cpuOfRun(b, bin, "version"))
						}
						check = append(check, cpuOfRun(b, bin, "check", "--ovsdb", s.Endpoint(), "--ovs-rundir", s.RunDir()))
						if i%2 == 1 {
							version = append(version, cpuOfRun(b, bin, "version"))
						}
					}
					b.ReportMetric(float64(median(check))/1e6, "cpu-ms")
					b.ReportMetric(float64(median(version))/1e6, "version-cpu-ms")
					b.ReportMetric(medianRatio(check, version), "check/version")
					b.ReportMetric(checkRuns, "runs")
				}
			})
		}
	}
}

// cpuOfRun runs bin with args to a successful end and returns its CPU
// (user+system, from its rusage).
func cpuOfRun(b *testing.B, bin string, args ...string) time.Duration {
	cmd := exec.Command(bin, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %s: %v: %s", bin, args[0], err, out)
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// addPorts makes the gated bridge carry ports p1..pn where it carried
// p1..phave. They are written in transactions of 1,000 without waiting for
// ovs-vswitchd (one huge ovs-vsctl command is much slower); then a
// transaction that changes something waits until ovs-vswitchd has caught
// up with every change before it, which takes minutes at 10,000 ports on a
// loaded machine.
func addPorts(b *testing.B, s *ovstest.Sandbox, have, n int) {
	vsctl := func(args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		args = append([]string{"--db=" + s.Endpoint(), "--timeout=600"}, args...)
		if out, err := exec.CommandContext(ctx, "ovs-vsctl", args...).CombinedOutput(); err != nil {
			b.Fatalf("ovs-vsctl (%d ports): %v: %s", n, err, out)
		}
	}
	for ; have < n; have = min(have+1000, n) {
		args := []string{"--no-wait"}
		for i := have + 1; i <= min(have+1000, n); i++ {
			args = append(args, "--", "--may-exist", "add-port", "br-int", "p"+strconv.Itoa(i))
		}
		vsctl(args...)
	}
	vsctl("set", "Open_vSwitch", ".", "external_ids:ovsgate-bench-ports="+strconv.Itoa(n))
}

// client is a client process a benchmark started: its pid, and a function
// that stops it and waits for its end.
type client struct {
	pid  int
	stop func()
}

// reportStarts starts a client scaleRuns times, each behind a new counting
// proxy, and reports the bytes it read until ready, the median time from
// its start to ready and its RSS 1 s after ready. start starts the client
// on a socket and returns once it is ready.
func reportStarts(b *testing.B, s *ovstest.Sandbox, prefix string, start func(sock string) client) {
	var took []time.Duration
	var bytes int64
	var rss int
	dir := testutil.ShortTempDir(b, "count")
	for i := range scaleRuns {
		c := newByteCounter(b, filepath.Join(dir, strconv.Itoa(i)+".sock"), s.DBSocket())
		t0 := time.Now()
		cl := start(c.path)
		took = append(took, time.Since(t0))
		bytes = c.read.Load()
		time.Sleep(time.Second) // the protocol: RSS 1 s after ready
		rss = procKiB(b, cl.pid)["VmRSS"]
		cl.stop()
		c.close()
	}
	b.ReportMetric(float64(bytes), prefix+"bytes")
	b.ReportMetric(float64(median(took))/1e6, prefix+"ready-ms")
	b.ReportMetric(float64(rss), prefix+"rss-KiB")
	b.ReportMetric(scaleRuns, prefix+"runs")
}

// startServeAt starts bin's `serve` on the OVSDB socket sock and returns it
// once its status file and /readyz say ready.
func startServeAt(b *testing.B, s *ovstest.Sandbox, bin, sock string) client {
	file := shmStatusFile(b)
	w := watchStatus(b, file, "")
	d := testutil.StartOvsgate(b, bin, nil, "serve", "--ovsdb", "unix:"+sock, "--ovs-rundir", s.RunDir(),
		"--status-file", file, "--health-probe-bind-address", testutil.AnyPort, "--metrics-bind-address", testutil.AnyPort)
	probe, _ := d.Addrs(b)
	w.readyz = "http://" + probe + "/readyz"
	w.await(b, isReady(true), http.StatusOK)
	return client{pid: d.Cmd.Process.Pid, stop: func() { _ = d.Stop() }}
}

// startAllColumns starts the all-columns client on sock and returns it once
// it holds the tables; it stops when its stdin closes.
func startAllColumns(b *testing.B, bin, sock string) client {
	cmd := exec.Command(bin, sock)
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	stop := sync.OnceFunc(func() { _ = stdin.Close(); _ = cmd.Wait() })
	b.Cleanup(stop)
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("all-columns client: %q: %v", line, err)
	}
	return client{pid: cmd.Process.Pid, stop: stop}
}

// byteCounter is a unix-socket proxy in front of ovsdb-server that counts
// the bytes the server sends, so that both clients are measured alike.
type byteCounter struct {
	ln   net.Listener
	path string
	read atomic.Int64
	wg   sync.WaitGroup
}

func newByteCounter(t testing.TB, path, upstream string) *byteCounter {
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	c := &byteCounter{ln: ln, path: path}
	c.wg.Go(func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", upstream)
			if err != nil {
				down.Close()
				continue
			}
			c.wg.Go(func() { _, _ = io.Copy(up, down); up.Close() })
			c.wg.Go(func() { _, _ = io.Copy(countingWriter{down, &c.read}, up); down.Close() })
		}
	})
	t.Cleanup(c.close)
	return c
}

// close stops the proxy once its clients are gone.
func (c *byteCounter) close() {
	c.ln.Close()
	c.wg.Wait()
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (cw countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n.Add(int64(n))
	return n, err
}

// The proxy must count what the server sends and nothing the client sends,
// or the scale figures compare the wrong bytes.
func TestByteCounterCountsServerBytesOnly(t *testing.T) {
	dir := t.TempDir()
	upstream := filepath.Join(dir, "up.sock")
	testutil.ServeUnix(t, upstream, func(conn net.Conn) {
		if _, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
			_, _ = conn.Write(make([]byte, 1000))
		}
	})
	c := newByteCounter(t, filepath.Join(dir, "count.sock"), upstream)
	conn, err := net.Dial("unix", c.path)
	require.NoError(t, err)
	_, err = conn.Write([]byte("a request of some length\n"))
	require.NoError(t, err)
	got, err := io.ReadAll(conn)
	require.NoError(t, err)
	conn.Close()
	c.close()

	assert.Len(t, got, 1000)
	assert.EqualValues(t, 1000, c.read.Load())
}
