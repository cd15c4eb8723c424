package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

// The latency benchmarks time what a reader of ovsgate sees, the status file
// replaced and /readyz, against a sandbox OVS and the built binary. Each
// iteration is one trial (run them with -benchtime 50x); ns/op is a whole
// trial, its untimed set-up included, and the figures are the pN-ms
// metrics: p50 and p99 for the tables, the other percentiles to draw the
// distribution (p0 is the fastest trial, p100 the slowest).
var latencyQuantiles = []int{0, 10, 25, 50, 75, 90, 99, 100}

// BenchmarkReaction times `ovs-vsctl add-br` returning until the bridge is
// seen ready: by ovsgate's readers (its status file replaced and /readyz
// 200; "decided" is when the gate itself turned ready, the status's
// `updated`, 0 if before add-br returned), by the best shell gate
// (`ovs-vsctl wait-until` the datapath ID, then `ovs-appctl
// dpif/show-dp-features` until it answers), and by a loop that checks once a
// second, like common CNI start scripts, started at a random phase.
func BenchmarkReaction(b *testing.B) {
	s := ovstest.Start(b, "br-int")
	w := latencyServe(b, s)
	ctl := filepath.Join(s.RunDir(), fmt.Sprintf("ovs-vswitchd.%d.ctl", s.VSwitchdPID()))
	features := func() bool {
		return exec.Command("ovs-appctl", "-t", ctl, "dpif/show-dp-features", "br-int").Run() == nil
	}
	// readd deletes the bridge, waits for ovsgate to see it gone, adds it
	// again and returns when add-br returned.
	readd := func(b *testing.B) time.Time {
		s.DelBridge("br-int")
		w.await(b, isReady(false), http.StatusServiceUnavailable)
		s.AddBridge("br-int")
		return time.Now()
	}
	b.Run("ovsgate", func(b *testing.B) {
		var took, decided []time.Duration
		for b.Loop() {
			start := readd(b)
			st := w.await(b, isReady(true), http.StatusOK)
			took = append(took, time.Since(start))
			decided = append(decided, max(0, st.Updated.Sub(start)))
		}
		reportLatencies(b, "", took, latencyQuantiles...)
		reportLatencies(b, "decided-", decided, 50, 99)
	})
	b.Run("shell-gate", func(b *testing.B) {
		var took []time.Duration
		for b.Loop() {
			start := readd(b)
			s.Vsctl("wait-until", "bridge", "br-int", `datapath_id!=""`)
			for !features() {
			}
			took = append(took, time.Since(start))
		}
		reportLatencies(b, "", took, latencyQuantiles...)
	})
	b.Run("poll-1s", func(b *testing.B) {
		var took []time.Duration
		for b.Loop() {
			start := readd(b)
			// The sleeps are the baseline's own schedule: its first check
			// comes at a random point of its second, the next a second on.
			time.Sleep(rand.N(time.Second))
			for s.DatapathID("br-int") == "" || !features() {
				time.Sleep(time.Second)
			}
			took = append(took, time.Since(start))
		}
		reportLatencies(b, "", took, latencyQuantiles...)
	})
}

// BenchmarkDetection times ovsgate's readers seeing ovs-vswitchd die and come
// back: "exit" from the SIGKILL until the status file and /readyz say not
// ready; "restart" from a new ovs-vswitchd having applied its configuration
// (when a start script returns) until both say ready on its pid, and its
// "outage" from the SIGKILL of the old one until then.
func BenchmarkDetection(b *testing.B) {
	s := ovstest.Start(b, "br-int")
	w := latencyServe(b, s)
	// start runs a new ovs-vswitchd and returns its pid once it has applied
	// the database: its first configuration sets cur_cfg to next_cfg, so
	// next_cfg is bumped first to tell that from the old instance's.
	start := func() int {
		next, err := strconv.Atoi(s.VsctlNoWait("get", "Open_vSwitch", ".", "next_cfg"))
		if err != nil {
			b.Fatal(err)
		}
		s.VsctlNoWait("set", "Open_vSwitch", ".", "next_cfg="+strconv.Itoa(next+1))
		pid := s.StartVSwitchd()
		s.VsctlNoWait("wait-until", "Open_vSwitch", ".", "cur_cfg>="+strconv.Itoa(next+1))
		return pid
	}
	readyOn := func(pid int) func(fileStatus) bool {
		return func(st fileStatus) bool { return st.Ready && st.VSwitchd.PID == pid }
	}
	b.Run("exit", func(b *testing.B) {
		var took []time.Duration
		for b.Loop() {
			killed := time.Now()
			s.SignalVSwitchd(syscall.SIGKILL)
			w.await(b, isReady(false), http.StatusServiceUnavailable)
			took = append(took, time.Since(killed))
			<-s.VSwitchdExited()
			w.await(b, readyOn(start()), http.StatusOK)
		}
		reportLatencies(b, "", took, latencyQuantiles...)
	})
	b.Run("restart", func(b *testing.B) {
		var took, outage []time.Duration
		for b.Loop() {
			killed := time.Now()
			s.KillVSwitchd()
			w.await(b, isReady(false), http.StatusServiceUnavailable)
			pid := start()
			started := time.Now()
			w.await(b, readyOn(pid), http.StatusOK)
			took = append(took, time.Since(started))
			outage = append(outage, time.Since(killed))
		}
		reportLatencies(b, "", took, latencyQuantiles...)
		reportLatencies(b, "outage-", outage, 50, 99)
	})
}

// reportLatencies reports the percentiles qs of d as "<prefix>pN-ms".
func reportLatencies(b *testing.B, prefix string, d []time.Duration, qs ...int) {
	if len(d) == 0 {
		return
	}
	s := slices.Sorted(slices.Values(d))
	for _, q := range qs {
		b.ReportMetric(float64(s[(len(s)-1)*q/100])/float64(time.Millisecond), fmt.Sprintf("%sp%d-ms", prefix, q))
	}
}

// fileStatus is what the latency benchmarks read of the status file.
type fileStatus struct {
	Ready    bool      `json:"ready"`
	Updated  time.Time `json:"updated"`
	VSwitchd struct {
		PID int `json:"pid"`
	} `json:"vswitchd"`
}

func isReady(want bool) func(fileStatus) bool {
	return func(st fileStatus) bool { return st.Ready == want }
}

// statusWatch tells when serve's status file is replaced, through inotify on
// its directory rather than polling: a loop reading it every 100 µs takes
// CPU the daemon needs on a 2-core machine, and shows up as latency.
type statusWatch struct {
	file, readyz string
	inotify      *os.File
	changed      chan struct{}
}

// latencyServe starts `ovsgate serve` against s and returns a watch on its
// status file.
func latencyServe(b *testing.B, s *ovstest.Sandbox) *statusWatch {
	sv := benchServe(b, s, binary)
	return watchStatus(b, sv.statusFile, "http://"+sv.probe+"/readyz")
}

func watchStatus(b *testing.B, file, readyz string) *statusWatch {
	// Non-blocking, so that Go's poller owns the descriptor and Close ends
	// the reader below at once.
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := syscall.InotifyAddWatch(fd, filepath.Dir(file), syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE); err != nil {
		_ = syscall.Close(fd)
		b.Fatal(err)
	}
	w := &statusWatch{file: file, readyz: readyz, inotify: os.NewFile(uintptr(fd), "inotify"), changed: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			if _, err := w.inotify.Read(buf); err != nil {
				return
			}
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
	}()
	b.Cleanup(func() { _ = w.inotify.Close(); <-done })
	return w
}

// await returns the status file once it satisfies want and /readyz answers
// code. It looks at once, at each change in the file's directory, and every
// 50 ms besides; once the file agrees it asks /readyz until it does too.
func (w *statusWatch) await(b *testing.B, want func(fileStatus) bool, code int) fileStatus {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var st fileStatus
		data, err := os.ReadFile(w.file)
		if err == nil && json.Unmarshal(data, &st) == nil && want(st) {
			for time.Now().Before(deadline) {
				if got, _ := testutil.Get(w.readyz); got == code {
					return st
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the status file and /readyz %d did not agree within 30s; the file reads %s", code, strings.TrimSpace(string(data)))
		}
		select {
		case <-w.changed:
		case <-tick.C:
		}
	}
}
