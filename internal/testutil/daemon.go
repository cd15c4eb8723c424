package testutil

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// stopTimeout is how long a daemon gets between SIGTERM and SIGKILL.
const stopTimeout = 30 * time.Second

// Daemon is a long-running ovsgate command (serve, wait) a test started.
type Daemon struct {
	Cmd    *exec.Cmd
	Stderr *SyncBuffer // written by the process while the test reads it
	exited chan struct{}
	err    error       // Cmd.Wait's result, set before exited is closed
	seen   atomic.Bool // the test read the exit with Err
}

// StartOvsgate starts the binary bin with args and with env as its whole
// environment besides PATH. The test's cleanup stops it (SIGTERM, SIGKILL
// after 30 s), fails the test if it ended with an error the test did not
// read with Err, and shows its stderr if the test failed.
func StartOvsgate(t testing.TB, bin string, env []string, args ...string) *Daemon {
	t.Helper()
	d := &Daemon{Stderr: &SyncBuffer{}, exited: make(chan struct{})}
	d.Cmd = exec.Command(bin, args...)
	d.Cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	d.Cmd.Stderr = d.Stderr
	if err := d.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		d.err = d.Cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		if err := d.Stop(); err != nil && !isSignalled(err) && !d.seen.Load() {
			t.Errorf("%s %v: %v", bin, args, err)
		}
		if t.Failed() {
			t.Logf("%s %v stderr:\n%s", bin, args, d.Stderr.String())
		}
	})
	return d
}

func isSignalled(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && !ee.Exited()
}

// Exited is closed once the process has exited and been reaped.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Err is the process's exit (nil for 0); read it after Exited. An exit the
// test has read is the test's to judge, not the cleanup's.
func (d *Daemon) Err() error {
	d.seen.Store(true)
	return d.err
}

// Running reports whether the process has not exited yet.
func (d *Daemon) Running() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for the exit, killing the process after 30 s;
// it returns the exit (nil for 0). Stopping a stopped daemon returns its exit.
func (d *Daemon) Stop() error {
	if d.Running() {
		_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-d.exited:
		return d.err
	case <-time.After(stopTimeout):
		_ = d.Cmd.Process.Kill()
		<-d.exited
		return errors.New("no exit within 30s of SIGTERM")
	}
}

// Kill sends SIGKILL and waits for the exit.
func (d *Daemon) Kill() {
	_ = d.Cmd.Process.Kill()
	<-d.exited
}

var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// Get fetches url on a new connection, as kubelet's probes do; on failure
// the code is 0 and the body says why.
func Get(url string) (code int, body string) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(b)
}

// Metric sums the samples of the metric family name, on the metrics
// listener at addr, whose labels include match; ok is false when the
// family is absent.
func Metric(t testing.TB, addr, name string, match map[string]string) (sum float64, ok bool) {
	t.Helper()
	code, body := Get("http://" + addr + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		labels := make(map[string]string, len(m.GetLabel()))
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		matches := true
		for k, v := range match {
			matches = matches && labels[k] == v
		}
		if !matches {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum, true
}

// Poll calls cond until it returns true or d passes; it reports whether
// cond held. It is a polling loop, not a sleep: the answer comes as soon
// as the condition does.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}
