package testutil

import (
	"regexp"
	"testing"
	"time"
)

// AnyPort is the listener address a test gives `ovsgate serve`: loopback,
// port 0. The kernel picks a free port as serve binds it, so no port is
// chosen before the daemon holds it; ServeAddrs reads which one it got.
// serve accepts AnyPort for both listeners: each gets a port of its own.
const AnyPort = "127.0.0.1:0"

// serveStartTimeout bounds the wait for serve's start line: a build of the
// gate and two binds, on a loaded machine.
const serveStartTimeout = time.Minute

var (
	startLine = regexp.MustCompile(`"Starting ovsgate".*`)
	probeKey  = regexp.MustCompile(`\bprobe="([^"]*)"`)
	metricKey = regexp.MustCompile(`\bmetrics="([^"]*)"`)
)

// ServeAddrs waits for the line `ovsgate serve` logs once both of its
// listeners are bound ("Starting ovsgate" ... probe="ADDR" metrics="ADDR")
// in log, and returns the addresses the listeners got; metrics is "" when
// the metrics listener is off. It fails the test if exited closes first
// (serve ended before it listened) or no such line comes within a minute.
func ServeAddrs(t testing.TB, log *SyncBuffer, exited <-chan struct{}) (probe, metrics string) {
	t.Helper()
	var line string
	ok := Poll(serveStartTimeout, func() bool {
		line = startLine.FindString(log.String())
		if line != "" {
			return true
		}
		select {
		case <-exited:
			return true
		default:
			return false
		}
	})
	switch {
	case !ok:
		t.Fatalf("serve logged no start line within %s:\n%s", serveStartTimeout, log.String())
	case line == "":
		t.Fatalf("serve exited before it listened:\n%s", log.String())
	}
	p := probeKey.FindStringSubmatch(line)
	m := metricKey.FindStringSubmatch(line)
	if p == nil || m == nil {
		t.Fatalf("serve's start line names no probe or metrics address: %s", line)
	}
	if m[1] == "disabled" {
		m[1] = ""
	}
	return p[1], m[1]
}

// Addrs is ServeAddrs for a daemon started with StartOvsgate.
func (d *Daemon) Addrs(t testing.TB) (probe, metrics string) {
	t.Helper()
	return ServeAddrs(t, d.Stderr, d.exited)
}
