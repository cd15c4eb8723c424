package gate

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/internal/unixctltest"
)

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

// settle waits for goroutines and descriptors of finished work to go away,
// then reports the counts.
func settleCounts(t *testing.T, maxG, maxFD int) (int, int) {
	var g, fd int
	ovstest.Poll(5*time.Second, func() bool {
		runtime.GC()
		g, fd = runtime.NumGoroutine(), openFDs(t)
		return g <= maxG && fd <= maxFD
	})
	return g, fd
}

// Restarts of every kind in a row: the gate ends ready on the last
// instance, and holds no more goroutines or descriptors than after the first.
func TestFaultRestartLoop(t *testing.T) {
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		s := ovstest.StartIn(t, mode, "br-int")
		h := startGate(t, Config{OVSDB: s.Endpoint(), RunDir: s.RunDir(), Bridges: []string{"br-int"},
			RetryMax: 50 * time.Millisecond, CallTimeout: 300 * time.Millisecond, PingInterval: 100 * time.Millisecond})
		last := h.waitFor(10*time.Second, "ready", readyOn(s.VSwitchdPID()))
		g0, fd0 := runtime.NumGoroutine(), openFDs(t)

		const rounds = 30
		start := time.Now()
		for i := 0; i < rounds; i++ {
			switch i % 4 {
			case 0:
				s.StopVSwitchd()
			case 1:
				s.KillVSwitchd()
			case 2:
				s.SignalVSwitchd(syscall.SIGSTOP)
				h.waitFor(5*time.Second, "not ready while stopped", notReady)
				s.KillVSwitchd()
			case 3:
				s.ExitVSwitchd()
			}
			h.waitFor(5*time.Second, "not ready after exit", notReady)
			pid := s.StartVSwitchd()
			last = h.waitFor(10*time.Second, fmt.Sprintf("ready on pid %d (round %d)", pid, i), readyOnNewInstance(last))
			assert.Equal(t, pid, last.VSwitchd.PID)
		}
		t.Logf("%d restarts in %s (%s per cycle)", rounds, time.Since(start).Round(time.Millisecond), (time.Since(start) / rounds).Round(time.Millisecond))
		assert.Equal(t, uint64(rounds), last.Restarts)
		g1, fd1 := settleCounts(t, g0, fd0)
		assert.LessOrEqual(t, g1, g0, "goroutines grew over the restarts")
		assert.LessOrEqual(t, fd1, fd0, "descriptors grew over the restarts")
	})
}

func TestFaultOVSDBRestartedTwentyTimes(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	h := startGate(t, sandboxConfig(s, "br-int"))
	h.waitFor(10*time.Second, "ready", ready)
	g0, fd0 := runtime.NumGoroutine(), openFDs(t)
	for i := 0; i < 20; i++ {
		if i%2 == 0 {
			s.StopOVSDB()
		} else {
			s.KillOVSDB()
		}
		h.waitFor(5*time.Second, "not ready without OVSDB", func(st State) bool { return !st.Ready && !st.OVSDB.Connected })
		s.StartOVSDB()
		// ovs-vswitchd itself takes seconds to reconnect and rewrite the
		// ephemeral datapath_id; the gate's own part is the OVSDB check.
		h.waitFor(10*time.Second, fmt.Sprintf("OVSDB check passes again (round %d)", i), func(st State) bool {
			c, _ := st.Check(CheckOVSDB)
			return c.OK && st.OVSDB.Connected
		})
	}
	h.waitFor(30*time.Second, "ready after the last restart", ready)
	g1, fd1 := settleCounts(t, g0, fd0)
	assert.LessOrEqual(t, g1, g0)
	assert.LessOrEqual(t, fd1, fd0)
}

type (
	request = unixctltest.Request
	fakeCtl = unixctltest.Conn
)

// Hostile or broken ovs-vswitchd control sockets: each yields a truthful
// not-ready reason within the deadline; nothing hangs or crashes.
func TestFaultHostileVSwitchd(t *testing.T) {
	s := ovstest.Start(t, "br-int") // a real OVSDB with the bridge and its datapath ID
	s.Eventually(10*time.Second, "datapath ID", func() bool { return s.DatapathID("br-int") != "" })
	huge := strings.Repeat("x", 100<<20)
	tests := []struct {
		name   string
		rundir func(t *testing.T) string
		reason string
	}{
		{"never answers", func(t *testing.T) string {
			// Reads requests and never answers, until cleanup closes the connection.
			return unixctltest.RunDir(t, 1111, func(request, *fakeCtl) {})
		}, "ovs-vswitchd (pid 1111) is hung: not answering within 300ms, and its main thread uses no CPU (stopped or deadlocked)"},
		{"garbage", func(t *testing.T) string {
			return unixctltest.RunDir(t, 1112, unixctltest.VersionThen(func(_ request, c *fakeCtl) { c.Raw("\x00\x01garbage") }))
		}, "malformed reply"},
		{"closes mid-reply", func(t *testing.T) string {
			return unixctltest.RunDir(t, 1113, unixctltest.VersionThen(func(req request, c *fakeCtl) {
				c.Raw(fmt.Sprintf(`{"id":%d,"result":"Recirc: Y`, req.ID))
				c.Close()
			}))
		}, "truncated reply"},
		{"100 MiB answer", func(t *testing.T) string {
			return unixctltest.RunDir(t, 1114, unixctltest.VersionThen(func(req request, c *fakeCtl) {
				c.Raw(fmt.Sprintf(`{"id":%d,"result":"%s","error":null}`, req.ID, huge))
			}))
		}, "reply too large"},
		{"wrong id", func(t *testing.T) string {
			return unixctltest.RunDir(t, 1115, unixctltest.VersionThen(func(req request, c *fakeCtl) {
				c.Reply(req.ID+1, "Recirc: Yes")
			}))
		}, "does not match request id"},
		{"pidfile garbage", func(t *testing.T) string {
			dir := unixctltest.RunDir(t, 1, nil)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "ovs-vswitchd.pid"), []byte("\xff\xfegarbage"), 0o644))
			return dir
		}, "not a pid"},
		{"stale pid, no socket", func(t *testing.T) string { return unixctltest.RunDir(t, 99999, nil) }, "stale pidfile"},
		{"stale socket", func(t *testing.T) string {
			dir := unixctltest.RunDir(t, 1116, nil)
			ln, err := net.Listen("unix", filepath.Join(dir, "ovs-vswitchd.1116.ctl"))
			require.NoError(t, err)
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close()
			return dir
		}, "stale pidfile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			callTimeout := 300 * time.Millisecond
			if tt.name == "100 MiB answer" {
				callTimeout = 10 * time.Second // reading up to the 16 MiB cap under -race takes a while
			}
			h := startGate(t, Config{OVSDB: s.Endpoint(), RunDir: tt.rundir(t), Bridges: []string{"br-int"},
				CallTimeout: callTimeout, RetryMax: 100 * time.Millisecond}, withCPU(stoppedCPU))
			// Three times what it takes on an idle machine: the bound holds under load.
			st := h.waitFor(3*(5*time.Second+callTimeout), "a reason naming the fault", func(st State) bool {
				return !st.Ready && strings.Contains(st.Reason, tt.reason)
			})
			t.Logf("reason: %s", st.Reason)
			assert.Less(t, len(st.Reason), 400, "a reason is a line, not a dump")
			assert.NoError(t, h.g.Alive(5*time.Second), "the loop keeps going")
		})
	}
}

// brokenOVSDB is an OVSDB socket at dir/db.sock that closes every
// connection at once; it counts them.
func brokenOVSDB(t *testing.T, dir string) *atomic.Int64 {
	var n atomic.Int64
	testutil.ServeUnix(t, filepath.Join(dir, "db.sock"), func(net.Conn) { n.Add(1) })
	return &n
}

// With OVSDB failing for hundreds of attempts (a minute's worth and more
// with the default backoff), the default verbosity shows a handful of lines.
func TestFaultLogVolumeWhileOVSDBAway(t *testing.T) {
	buf, _ := testutil.CaptureKlog(t)
	dir := unixctltest.RunDir(t, 1, nil)
	attempts := brokenOVSDB(t, dir)
	startGate(t, Config{OVSDB: "unix:" + dir + "/db.sock", RunDir: dir, Bridges: []string{"br-int"},
		OVSDBBackoffMin: time.Millisecond, OVSDBBackoffMax: 2 * time.Millisecond, RetryMax: 2 * time.Millisecond})
	require.True(t, ovstest.Poll(10*time.Second, func() bool { return attempts.Load() >= 300 }),
		"reconnect attempts go on")
	klog.Flush()
	lines := buf.Lines()
	assert.LessOrEqual(t, len(lines), 3, "log lines:\n%s", strings.Join(lines, "\n"))
}

// With ovs-vswitchd restarting again and again, each log line is a state
// change: never the same line twice in a row, a few per restart.
func TestFaultLogVolumeWhileVSwitchdRestarts(t *testing.T) {
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		s := ovstest.StartIn(t, mode, "br-int")
		buf, _ := testutil.CaptureKlog(t)
		h := startGate(t, Config{OVSDB: s.Endpoint(), RunDir: s.RunDir(), Bridges: []string{"br-int"}, RetryMax: 20 * time.Millisecond})
		last := h.waitFor(10*time.Second, "ready", ready)
		const restarts = 10
		for i := 0; i < restarts; i++ {
			s.KillVSwitchd()
			h.waitFor(5*time.Second, "not ready", notReady)
			s.StartVSwitchd()
			last = h.waitFor(10*time.Second, "ready", readyOnNewInstance(last))
		}
		klog.Flush()
		lines := buf.Lines()
		assert.LessOrEqual(t, len(lines), 2+restarts*5, "log lines:\n%s", strings.Join(lines, "\n"))
		for i := 1; i < len(lines); i++ {
			assert.NotEqual(t, msgOf(lines[i-1]), msgOf(lines[i]), "a line repeated without a state change")
		}
	})
}

// msgOf drops klog's header (severity, time, pid, file) from a line.
func msgOf(line string) string {
	if i := strings.Index(line, "] "); i >= 0 {
		return line[i+2:]
	}
	return line
}

// An ovs-vswitchd that starts while OVSDB is away answers "not a valid
// command" to dpif/show-dp-features for as long as OVSDB stays away (it
// registers the dpif commands after its first copy of the database): the
// gate waits, never ready meanwhile, and becomes ready by itself once OVSDB
// is back. The gate itself does not ask meanwhile: OVSDB shows it no
// datapath to ask about, and after OVSDB's restart the datapath ID is only
// there once the new instance has configured the bridge.
func TestFaultNotRegisteredUntilOVSDBReturns(t *testing.T) {
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		s := ovstest.StartIn(t, mode, "br-int")
		h := startGate(t, sandboxConfig(s, "br-int"))
		first := h.waitFor(10*time.Second, "ready", ready)
		s.StopVSwitchd()
		s.StopOVSDB()
		pid := s.StartVSwitchd()
		h.waitFor(10*time.Second, "not ready", notReady)

		target, err := appctl.Discover(s.RunDir())
		require.NoError(t, err)
		conn, err := appctl.Dial(context.Background(), target.Socket)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = appctl.DPFeatures("br-int").Read(conn.Batch(ctx, appctl.DPFeatures("br-int").Request)[0])
		conn.Close()
		require.ErrorIs(t, err, appctl.ErrNotRegistered, "the new instance, without OVSDB")

		s.StartOVSDB()
		st := h.waitFor(15*time.Second, "ready on the new instance", readyOnNewInstance(first))
		assert.Equal(t, pid, st.VSwitchd.PID)
		exited := false
		for _, p := range h.published() {
			exited = exited || p.Updated.After(first.Updated.Time) && p.VSwitchd.Since == nil
			if p.Ready && exited {
				assert.True(t, p.VSwitchd.Since.After(first.VSwitchd.Since.Time), "ready before the new instance answered for itself")
			}
		}
		assert.True(t, exited, "the exit was seen")
	})
}

// Nothing in the OVSDB path gives up: the watcher's backoff is capped and
// never ends, so there is no elapsed-time limit whose expiry could panic.
func TestFaultOVSDBBackoffNeverGivesUp(t *testing.T) {
	dir := unixctltest.RunDir(t, 1, nil)
	attempts := brokenOVSDB(t, dir)
	h := startGate(t, Config{OVSDB: "unix:" + dir + "/db.sock", RunDir: dir, Bridges: []string{"br-int"},
		OVSDBBackoffMin: time.Microsecond, OVSDBBackoffMax: time.Microsecond})
	require.True(t, ovstest.Poll(20*time.Second, func() bool { return attempts.Load() >= 2000 }))
	st := h.g.State()
	assert.False(t, st.Ready)
	assert.Contains(t, st.Reason, "OVSDB: not connected")
}

// batchOnlyVSwitchd answers nothing until two requests have arrived on a
// connection, then answers each like ovs-vswitchd.
func batchOnlyVSwitchd(req request, c *fakeCtl) {
	if len(c.Held) < 2 {
		c.Held = append(c.Held, req)
		if len(c.Held) == 2 {
			for _, r := range c.Held {
				unixctltest.VSwitchd(r, c)
			}
		}
		return
	}
	unixctltest.VSwitchd(req, c)
}

// A new ovs-vswitchd is asked for its version and for the features of a
// bridge that already has a datapath in one batch. The fake answers nothing
// until both requests have arrived, so a gate that waited for the version
// before asking for features would never be ready.
func TestNewInstanceAskedInOneBatch(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	s.Eventually(10*time.Second, "datapath ID", func() bool { return s.DatapathID("br-int") != "" })
	dir := unixctltest.RunDir(t, 1117, batchOnlyVSwitchd)
	// Hide the instance until the gate knows the datapath from OVSDB.
	pidfile := filepath.Join(dir, "ovs-vswitchd.pid")
	pid, err := os.ReadFile(pidfile)
	require.NoError(t, err)
	require.NoError(t, os.Remove(pidfile))

	h := startGate(t, Config{OVSDB: s.Endpoint(), RunDir: dir, Bridges: []string{"br-int"}, CallTimeout: 30 * time.Second})
	h.waitFor(10*time.Second, "the datapath ID from OVSDB", func(st State) bool {
		return len(st.Bridges) == 1 && st.Bridges[0].DatapathID != ""
	})
	require.NoError(t, os.WriteFile(pidfile, pid, 0o644))
	st := h.waitFor(10*time.Second, "ready on the fake ovs-vswitchd", readyOn(1117))
	assert.Equal(t, map[string]any{"Recirc": true}, st.Bridges[0].Features)
}

// At start, the pidfile is there at once but OVSDB takes a moment: the gate
// waits for OVSDB's first attempt before its first contact with
// ovs-vswitchd, so that contact carries the features too. A gate that asked
// for the version alone would get no answer from this fake.
func TestFirstContactWaitsForOVSDB(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	s.Eventually(10*time.Second, "datapath ID", func() bool { return s.DatapathID("br-int") != "" })
	dir := unixctltest.RunDir(t, 1118, batchOnlyVSwitchd)
	h := startGate(t, Config{OVSDB: s.Endpoint(), RunDir: dir, Bridges: []string{"br-int"}, CallTimeout: 30 * time.Second})
	h.waitFor(10*time.Second, "ready on the fake ovs-vswitchd", readyOn(1118))
}

// The log shows times as RFC 3339 in UTC, as the status file does, without
// Go's monotonic clock reading.
func TestLogTimesAreRFC3339UTC(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	buf, _ := testutil.CaptureKlog(t)
	h := startGate(t, sandboxConfig(s, "br-int"))
	st := h.waitFor(10*time.Second, "ready", ready)
	klog.Flush()
	var line string
	for _, l := range buf.Lines() {
		if strings.Contains(l, `"Ready"`) {
			line = l
		}
	}
	require.NotEmpty(t, line, "a Ready line among:\n%s", strings.Join(buf.Lines(), "\n"))
	assert.Contains(t, line, `vswitchdSince="`+st.VSwitchd.Since.UTC().Format(time.RFC3339Nano)+`"`, line)
	assert.Regexp(t, `vswitchdSince="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"`, line)
	assert.NotContains(t, line, "m=+", line)
}
