package ovsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// withTimeouts shortens the per-attempt connect timeout and the echo probe.
func withTimeouts(connect, probeInterval, probeTimeout time.Duration) Option {
	return func(o *options) {
		o.connectTimeout, o.probeInterval, o.probeTimeout = connect, probeInterval, probeTimeout
	}
}

// start runs w until the returned stop is called (or the test ends); stop
// cancels Run and fails the test if Run does not return nil promptly.
func start(t *testing.T, w *Watcher) (stop func()) {
	t.Helper()
	return testutil.RunUntilCleanup(t, 5*time.Second, w.Run)
}

func waitSnapshot(t *testing.T, w *Watcher, what string, cond func(Snapshot) bool) Snapshot {
	t.Helper()
	var s Snapshot
	if !ovstest.Poll(10*time.Second, func() bool { s = w.Snapshot(); return cond(s) }) {
		t.Fatalf("timed out waiting for %s; last snapshot %+v", what, s)
	}
	return s
}

func drain(w *Watcher) {
	select {
	case <-w.Changed():
	default:
	}
}

func requireChanged(t *testing.T, w *Watcher, after string) {
	t.Helper()
	select {
	case <-w.Changed():
	case <-time.After(5 * time.Second):
		t.Fatalf("no change notification after %s", after)
	}
}

func connected(s Snapshot) bool { return s.Connected }

// cachedNames lists the bridge rows OVSDB sent us.
func cachedNames(w *Watcher) []string {
	w.mu.Lock()
	rows := w.rows
	w.mu.Unlock()
	if rows == nil {
		return nil
	}
	var names []string
	for _, m := range rows.Table(bridgeTable).RowsShallow() {
		names = append(names, m.(*bridge).Name)
	}
	sort.Strings(names)
	return names
}

func TestWatcherBridgeLifecycle(t *testing.T) {
	s := ovstest.Start(t, "br-other")
	w, err := NewWatcher(s.Endpoint(), []string{"br-int", "br-ex"}, WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	require.NoError(t, err)
	start(t, w)

	requireChanged(t, w, "start")
	snap := waitSnapshot(t, w, "connected", connected)
	assert.NoError(t, snap.Err)
	assert.Equal(t, s.Endpoint(), snap.Endpoint)
	assert.Equal(t, map[string]BridgeInfo{"br-int": {Name: "br-int"}, "br-ex": {Name: "br-ex"}}, snap.Bridges,
		"gated bridges only, not there yet; never br-other")

	drain(w)
	s.AddBridge("br-int")
	requireChanged(t, w, "add-br")
	snap = waitSnapshot(t, w, "br-int with datapath ID", func(s Snapshot) bool { return s.Bridges["br-int"].DatapathID != "" })
	assert.Equal(t, BridgeInfo{Name: "br-int", Exists: true, DatapathID: s.DatapathID("br-int"), DatapathType: "netdev"}, snap.Bridges["br-int"])
	assert.False(t, snap.Bridges["br-ex"].Exists)

	s.AddBridge("br-ex")
	snap = waitSnapshot(t, w, "both bridges", func(s Snapshot) bool { return s.Bridges["br-ex"].DatapathID != "" })
	assert.True(t, snap.Bridges["br-int"].Exists)
	assert.NotEqual(t, snap.Bridges["br-int"].DatapathID, snap.Bridges["br-ex"].DatapathID)
	assert.Len(t, snap.Bridges, 2)
	// The condition keeps other bridges on the server side, not just out of the snapshot.
	assert.Equal(t, []string{"br-ex", "br-int"}, cachedNames(w))

	drain(w)
	s.DelBridge("br-int")
	requireChanged(t, w, "del-br")
	snap = waitSnapshot(t, w, "br-int gone", func(s Snapshot) bool { return !s.Bridges["br-int"].Exists })
	assert.Equal(t, BridgeInfo{Name: "br-int"}, snap.Bridges["br-int"])
	assert.True(t, snap.Bridges["br-ex"].Exists)

	s.AddBridge("br-int")
	waitSnapshot(t, w, "br-int back", func(s Snapshot) bool { return s.Bridges["br-int"].DatapathID != "" })
}

// BenchmarkWatcherAddBridge measures how long after ovs-vsctl add-br
// returns the snapshot shows the datapath ID (ms/add-br: median; max too),
// and how often it is there at the first read (at-return).
func BenchmarkWatcherAddBridge(b *testing.B) {
	s := ovstest.Start(b)
	w, err := NewWatcher(s.Endpoint(), []string{"br-int"})
	require.NoError(b, err)
	testutil.RunUntilCleanup(b, 5*time.Second, w.Run)
	require.True(b, ovstest.Poll(10*time.Second, func() bool { return w.Snapshot().Connected }), "never connected")

	var took []time.Duration
	atReturn := 0
	for b.Loop() {
		drain(w)
		s.AddBridge("br-int")
		added := time.Now()
		if w.Snapshot().Bridges["br-int"].DatapathID != "" {
			atReturn++
		}
		// Level-triggered: re-read after each kick; a kick after the read stays pending.
		for w.Snapshot().Bridges["br-int"].DatapathID == "" {
			select {
			case <-w.Changed():
			case <-time.After(time.Minute):
				b.Fatal("datapath ID never showed")
			}
		}
		took = append(took, time.Since(added))
		s.DelBridge("br-int")
		require.True(b, ovstest.Poll(time.Minute, func() bool { return !w.Snapshot().Bridges["br-int"].Exists }), "br-int never gone")
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms/add-br")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "ms-max/add-br")
	b.ReportMetric(float64(atReturn)/float64(len(took)), "at-return")
}

// BenchmarkWatcherNoticesOVSDB measures how long the snapshot takes to say
// disconnected (ms/notice) after ovsdb-server exits, and after it hangs
// (SIGSTOP) with a 100ms echo interval and a 300ms timeout.
func BenchmarkWatcherNoticesOVSDB(b *testing.B) {
	signal := func(sig syscall.Signal) func(*testing.B, *ovstest.Sandbox) {
		return func(b *testing.B, s *ovstest.Sandbox) { require.NoError(b, syscall.Kill(s.OVSDBPID(), sig)) }
	}
	for _, tt := range []struct {
		name         string
		opts         []Option
		break_, mend func(*testing.B, *ovstest.Sandbox)
	}{
		{"exit", nil,
			func(_ *testing.B, s *ovstest.Sandbox) { s.StopOVSDB() },
			func(_ *testing.B, s *ovstest.Sandbox) { s.StartOVSDB() }},
		{"hang", []Option{withTimeouts(500*time.Millisecond, 100*time.Millisecond, 300*time.Millisecond)},
			signal(syscall.SIGSTOP), signal(syscall.SIGCONT)},
	} {
		b.Run(tt.name, func(b *testing.B) {
			s := ovstest.Start(b, "br-int")
			w, err := NewWatcher(s.Endpoint(), []string{"br-int"}, append(tt.opts, WithBackoff(10*time.Millisecond, 100*time.Millisecond))...)
			require.NoError(b, err)
			testutil.RunUntilCleanup(b, 5*time.Second, w.Run)
			var took time.Duration
			for b.Loop() {
				require.True(b, ovstest.Poll(time.Minute, func() bool { return w.Snapshot().Connected }), "never connected")
				broken := time.Now()
				tt.break_(b, s)
				require.True(b, ovstest.Poll(time.Minute, func() bool { return !w.Snapshot().Connected }), "never disconnected")
				took += time.Since(broken)
				tt.mend(b, s)
			}
			b.ReportMetric(float64(took.Microseconds())/1000/float64(b.N), "ms/notice")
		})
	}
}

func TestWatcherOVSDBAbsentAtStart(t *testing.T) {
	s := ovstest.New(t)
	w, err := NewWatcher(s.Endpoint(), []string{"br-int"}, WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	require.NoError(t, err)
	start(t, w)

	requireChanged(t, w, "the first failed attempt")
	snap := waitSnapshot(t, w, "a connection error", func(s Snapshot) bool { return s.Err != nil })
	assert.False(t, snap.Connected)
	require.Error(t, snap.Err)
	assert.Equal(t, "connect: no such file or directory", snap.Err.Error())
	assert.False(t, snap.Bridges["br-int"].Exists)

	s.StartOVSDB()
	snap = waitSnapshot(t, w, "connected by itself", connected)
	assert.NoError(t, snap.Err)
	assert.False(t, snap.Bridges["br-int"].Exists)

	s.StartVSwitchd()
	s.AddBridge("br-int")
	waitSnapshot(t, w, "br-int with datapath ID", func(s Snapshot) bool { return s.Bridges["br-int"].DatapathID != "" })
}

func TestWatcherOVSDBRestart(t *testing.T) {
	s := ovstest.Start(t, "br-int", "br-ex")
	w, err := NewWatcher(s.Endpoint(), []string{"br-int", "br-ex"}, WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	require.NoError(t, err)
	start(t, w)
	waitSnapshot(t, w, "both bridges", func(s Snapshot) bool {
		return s.Connected && s.Bridges["br-int"].DatapathID != "" && s.Bridges["br-ex"].DatapathID != ""
	})

	// How promptly: BenchmarkWatcherNoticesOVSDB.
	drain(w)
	s.StopOVSDB()
	snap := waitSnapshot(t, w, "disconnected", func(s Snapshot) bool { return !s.Connected })
	requireChanged(t, w, "disconnect")
	assert.Error(t, snap.Err)
	assert.False(t, snap.Bridges["br-int"].Exists, "nothing is claimed while disconnected")

	s.StartOVSDB()
	waitSnapshot(t, w, "reconnected with both bridges", func(s Snapshot) bool {
		return s.Connected && s.Bridges["br-int"].Exists && s.Bridges["br-ex"].Exists
	})

	// Delete br-int from the database file while ovsdb-server is away (and
	// ovs-vswitchd, which would add it back). Nothing tells a client about
	// that deletion: the snapshot after the reconnect must come from a cache
	// filled afresh, not from the one of the previous connection.
	uuid := s.Vsctl("--no-wait", "get", "bridge", "br-int", "_uuid")
	s.StopVSwitchd()
	s.StopOVSDB()
	waitSnapshot(t, w, "disconnected", func(s Snapshot) bool { return !s.Connected })
	txn := fmt.Sprintf(`["Open_vSwitch",
		{"op":"mutate","table":"Open_vSwitch","where":[],"mutations":[["bridges","delete",["set",[["uuid",%q]]]]]},
		{"op":"delete","table":"Bridge","where":[["name","==","br-int"]]}]`, uuid)
	out, err := exec.Command("ovsdb-tool", "transact", filepath.Join(s.Dir, "conf.db"), txn).CombinedOutput()
	require.NoError(t, err, string(out))
	require.NotContains(t, string(out), "error", string(out))
	s.StartOVSDB()
	require.Equal(t, "br-ex", s.Vsctl("--no-wait", "list-br"), "br-int deleted during the outage")
	snap = waitSnapshot(t, w, "reconnected", connected)
	assert.False(t, snap.Bridges["br-int"].Exists, "a row deleted during the outage lingers")
	assert.True(t, snap.Bridges["br-ex"].Exists)
	assert.Equal(t, []string{"br-ex"}, cachedNames(w))
}

// The monitor asks for the three modelled columns of the gated rows only, so
// a thousand ports on the bridge never reach the watcher.
func TestWatcherMonitorsOnlyModelledColumns(t *testing.T) {
	s := ovstest.Start(t, "br-int", "br-other")
	var args []string
	for i := 0; i < 1000; i++ {
		p := fmt.Sprintf("p%d", i)
		args = append(args, "--", "add-port", "br-int", p, "--", "set", "interface", p, "type=internal")
	}
	s.VsctlNoWait(args...)

	p := newProxy(t, s.DBSocket(), false)
	w, err := NewWatcher(p.endpoint(), []string{"br-int", "br-ex"}, WithPorts([]string{"p5", "p-none"}))
	require.NoError(t, err)
	start(t, w)
	snap := waitSnapshot(t, w, "br-int and p5", func(s Snapshot) bool {
		return s.Connected && s.Bridges["br-int"].Exists && s.Ports["p5"].OFPort > 0
	})
	assert.Equal(t, PortInfo{Name: "p-none"}, snap.Ports["p-none"])
	assert.Empty(t, snap.Ports["p5"].Error)
	assert.True(t, snap.System.Known)
	assert.Empty(t, snap.System.OtherConfig["flow-restore-wait"])

	var monitors []rpcRequest
	for _, r := range p.requests(t) {
		if strings.HasPrefix(r.Method, "monitor") {
			monitors = append(monitors, r)
		}
	}
	require.Len(t, monitors, 1)
	assert.Equal(t, "monitor_cond", monitors[0].Method)
	require.Len(t, monitors[0].Params, 3)
	var reqs map[string]struct {
		Columns []string          `json:"columns"`
		Where   []json.RawMessage `json:"where"`
	}
	require.NoError(t, json.Unmarshal(monitors[0].Params[2], &reqs))
	require.Len(t, reqs, 3, "three tables: %s", monitors[0].Params[2])
	where := func(table string) []string {
		var w []string
		for _, c := range reqs[table].Where {
			w = append(w, string(c))
		}
		return w
	}
	assert.ElementsMatch(t, []string{"name", "datapath_id", "datapath_type"}, reqs["Bridge"].Columns)
	assert.ElementsMatch(t, []string{`["name","==","br-int"]`, `["name","==","br-ex"]`}, where("Bridge"))
	assert.ElementsMatch(t, []string{"other_config", "external_ids", "dpdk_initialized"}, reqs["Open_vSwitch"].Columns)
	assert.ElementsMatch(t, []string{"name", "ofport", "error"}, reqs["Interface"].Columns)
	assert.ElementsMatch(t, []string{`["name","==","p5"]`, `["name","==","p-none"]`}, where("Interface"))

	read := p.fromServer.Load()
	t.Logf("bytes from OVSDB up to the first snapshot, br-int with 1000 ports: %d", read)
	// Schema and rows come to ~15 KB; 1000 port UUIDs would add ~45 KB.
	assert.Less(t, read, int64(40_000))

	// Nor are port changes sent: Bridge.ports is not monitored, nor are
	// other interfaces.
	args = args[:0]
	for i := 1000; i < 1200; i++ {
		args = append(args, "--", "add-port", "br-int", fmt.Sprintf("p%d", i))
	}
	s.VsctlNoWait(args...)
	s.Vsctl("--no-wait", "set", "bridge", "br-int", "external_ids:x=1") // unmonitored too
	s.Vsctl("--no-wait", "set", "bridge", "br-other", "datapath_type=dummy")
	// A monitored change last: ovsdb-server sends the updates of one
	// connection in commit order, so once the watcher has this one, any
	// update for the changes above has come before it.
	s.Vsctl("--no-wait", "set", "open", ".", "other_config:flow-restore-wait=true")
	waitSnapshot(t, w, "flow-restore-wait", func(s Snapshot) bool { return s.System.OtherConfig["flow-restore-wait"] == "true" })
	var updates []string
	for _, m := range p.serverMessages(t) {
		if m.end > read && strings.HasPrefix(m.Method, "update") {
			updates = append(updates, string(m.raw))
		}
	}
	require.Len(t, updates, 1, "updates after 200 more ports: %s", updates)
	assert.Contains(t, updates[0], "flow-restore-wait")
	assert.NotContains(t, updates[0], `"Interface"`)
	assert.NotContains(t, updates[0], `"Bridge"`)
}

// With OVSDB away, attempts go on with backoff, one line says why at the
// default verbosity, and each retry is there at V(4).
func TestWatcherQuietWhileAway(t *testing.T) {
	logs, verbosity := testutil.CaptureKlog(t)
	endpoint := "unix:" + t.TempDir() + "/none.sock"
	w, err := NewWatcher(endpoint, []string{"br-int"}, WithBackoff(time.Millisecond, 5*time.Millisecond))
	require.NoError(t, err)
	start(t, w)
	require.True(t, ovstest.Poll(10*time.Second, func() bool { return w.attempts.Load() >= 200 }), "attempts go on")
	klog.Flush()
	lines := logs.Lines()
	require.Len(t, lines, 1, "log lines while OVSDB is away:\n%s", strings.Join(lines, "\n"))
	assert.Contains(t, lines[0], `"OVSDB not reachable yet, retrying"`)
	assert.Contains(t, lines[0], endpoint)
	assert.Contains(t, lines[0], "no such file or directory")

	verbosity("4")
	n := w.attempts.Load()
	require.True(t, ovstest.Poll(10*time.Second, func() bool { return w.attempts.Load() >= n+5 }))
	verbosity("0")
	klog.Flush()
	assert.Contains(t, strings.Join(logs.Lines(), "\n"), `"OVSDB reconnect scheduled"`, "retries show at -v=4")
}

// libovsdb drops a disconnect notification that finds no receiver. A
// connection cut right after the monitor reply must still be noticed, and a
// connection that keeps flapping must not flood the log.
func TestWatcherDropRightAfterMonitor(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	logs, _ := testutil.CaptureKlog(t)
	p := newProxy(t, s.DBSocket(), true)
	// The echo probe is long here: every cut must be seen through the notification.
	w, err := NewWatcher(p.endpoint(), []string{"br-int"}, WithBackoff(time.Millisecond, 2*time.Millisecond),
		withTimeouts(5*time.Second, time.Minute, time.Second))
	require.NoError(t, err)
	start(t, w)
	const cycles = 100
	ok := ovstest.Poll(10*time.Second, func() bool { return w.attempts.Load() >= cycles })
	require.True(t, ok, "stuck after %d attempts; snapshot %+v", w.attempts.Load(), w.Snapshot())
	monitors := 0
	for _, r := range p.requests(t) {
		if r.Method == "monitor_cond" {
			monitors++
		}
	}
	assert.GreaterOrEqual(t, monitors, cycles-1, "each attempt got as far as the monitor")
	klog.Flush()
	lines := logs.Lines()
	t.Logf("log lines over %d short connections:\n%s", w.attempts.Load(), strings.Join(lines, "\n"))
	assert.LessOrEqual(t, len(lines), 4, "log lines while flapping:\n%s", strings.Join(lines, "\n"))
}

// Snapshot is called while libovsdb tears connections down (it drops its
// cache before it tells us): it must neither panic nor race.
func TestWatcherSnapshotDuringReconnects(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	w, err := NewWatcher(s.Endpoint(), []string{"br-int"}, WithBackoff(time.Millisecond, 5*time.Millisecond))
	require.NoError(t, err)
	start(t, w)
	done := make(chan struct{})
	var wg sync.WaitGroup
	// Deferred: a t.Fatalf below must stop the readers too, before the test
	// ends (a t.Error after it would panic).
	defer func() {
		close(done)
		wg.Wait()
	}()
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
					snap := w.Snapshot()
					if !snap.Connected && snap.Bridges["br-int"].Exists {
						t.Error("a bridge claimed while disconnected")
						return
					}
				}
			}
		}()
	}
	for i := 0; i < 8; i++ {
		waitSnapshot(t, w, "connected", connected)
		s.KillOVSDB()
		waitSnapshot(t, w, "disconnected", func(s Snapshot) bool { return !s.Connected })
		s.StartOVSDB()
	}
	waitSnapshot(t, w, "br-int", func(s Snapshot) bool { return s.Connected && s.Bridges["br-int"].Exists })
}

// An ovsdb-server that hangs (here: SIGSTOP) keeps the socket open; only the
// echo probe tells.
func TestWatcherHungOVSDB(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	w, err := NewWatcher(s.Endpoint(), []string{"br-int"}, WithBackoff(10*time.Millisecond, 100*time.Millisecond),
		withTimeouts(500*time.Millisecond, 100*time.Millisecond, 300*time.Millisecond))
	require.NoError(t, err)
	start(t, w)
	waitSnapshot(t, w, "br-int", func(s Snapshot) bool { return s.Connected && s.Bridges["br-int"].Exists })

	pid := s.OVSDBPID()
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	// How promptly: BenchmarkWatcherNoticesOVSDB.
	snap := waitSnapshot(t, w, "disconnected", func(s Snapshot) bool { return !s.Connected })
	assert.ErrorIs(t, snap.Err, ErrNotAnswering)
	assert.Equal(t, "not answering within 300ms", snap.Err.Error())
	// Reconnecting to the hung server: the attempts time out, with the same words.
	waitSnapshot(t, w, "a timed-out connection attempt", func(s Snapshot) bool {
		return w.attempts.Load() >= 3 && s.Err != nil
	})
	snap = w.Snapshot()
	assert.ErrorIs(t, snap.Err, ErrNotAnswering)
	assert.Equal(t, "not answering within 500ms", snap.Err.Error())

	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	waitSnapshot(t, w, "br-int again", func(s Snapshot) bool { return s.Connected && s.Bridges["br-int"].Exists })
}

func TestWatcherTCP(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	out, err := exec.Command("ovs-appctl", "-t", filepath.Join(s.Dir, "ovsdb-server.ctl"),
		"ovsdb-server/add-remote", "ptcp:0:127.0.0.1").CombinedOutput()
	require.NoError(t, err, string(out))
	var port string
	listening := regexp.MustCompile(`listening on port (\d+)`)
	s.Eventually(5*time.Second, "ovsdb-server listens on TCP", func() bool {
		b, _ := os.ReadFile(filepath.Join(s.Dir, "ovsdb-server.log"))
		if m := listening.FindSubmatch(b); m != nil {
			port = string(m[1])
		}
		return port != ""
	})

	endpoint := "tcp:127.0.0.1:" + port
	w, err := NewWatcher(endpoint, []string{"br-int"})
	require.NoError(t, err)
	start(t, w)
	snap := waitSnapshot(t, w, "br-int over TCP", func(s Snapshot) bool { return s.Bridges["br-int"].DatapathID != "" })
	assert.True(t, snap.Connected)
	assert.Equal(t, endpoint, snap.Endpoint)
	assert.Equal(t, s.DatapathID("br-int"), snap.Bridges["br-int"].DatapathID)
}

// Run returns nil soon after its context ends, in whatever state it is, and
// leaves no goroutine behind.
func TestWatcherRunStops(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) (*Watcher, func(*testing.T, *Watcher))
	}{
		{"connected", func(t *testing.T) (*Watcher, func(*testing.T, *Watcher)) {
			s := ovstest.Start(t)
			w, err := NewWatcher(s.Endpoint(), []string{"br-int"})
			require.NoError(t, err)
			return w, func(t *testing.T, w *Watcher) { waitSnapshot(t, w, "connected", connected) }
		}},
		{"waiting to retry", func(t *testing.T) (*Watcher, func(*testing.T, *Watcher)) {
			w, err := NewWatcher("unix:"+t.TempDir()+"/none.sock", []string{"br-int"}, WithBackoff(time.Hour, time.Hour))
			require.NoError(t, err)
			return w, func(t *testing.T, w *Watcher) {
				waitSnapshot(t, w, "a failed attempt", func(s Snapshot) bool { return s.Err != nil })
			}
		}},
		{"connecting to a hung server", func(t *testing.T) (*Watcher, func(*testing.T, *Watcher)) {
			s := ovstest.Start(t)
			pid := s.OVSDBPID()
			require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
			w, err := NewWatcher(s.Endpoint(), []string{"br-int"}, withTimeouts(time.Minute, time.Minute, time.Minute))
			require.NoError(t, err)
			return w, func(t *testing.T, w *Watcher) {
				require.True(t, ovstest.Poll(5*time.Second, func() bool {
					buf := make([]byte, 1<<20)
					return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*ovsdbClient).listDbs")
				}), "Run waits for the server's first answer")
				assert.EqualValues(t, 1, w.attempts.Load())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, reach := tt.setup(t)
			ignore := goleak.IgnoreCurrent()
			stop := start(t, w)
			reach(t, w)

			err := w.Run(context.Background())
			assert.EqualError(t, err, "ovsdb watcher already running")

			stop() // fails the test unless Run returns nil within 5 s
			snap := w.Snapshot()
			assert.False(t, snap.Connected)
			require.Error(t, snap.Err)
			assert.Equal(t, "watcher stopped", snap.Err.Error())
			goleak.VerifyNone(t, ignore)
		})
	}
}

// The Open_vSwitch row's flags and the required ports' rows show in the
// snapshot as they change.
func TestWatcherSystemAndPorts(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	w, err := NewWatcher(s.Endpoint(), []string{"br-int"}, WithPorts([]string{"gw0", "patch0"}),
		WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	require.NoError(t, err)
	start(t, w)
	snap := waitSnapshot(t, w, "the Open_vSwitch row", func(s Snapshot) bool { return s.Connected && s.System.Known })
	assert.Empty(t, snap.System.OtherConfig)
	assert.False(t, snap.System.DPDKInitialized)
	assert.False(t, snap.Ports["gw0"].Exists)

	s.VsctlNoWait("set", "open", ".", "other_config:flow-restore-wait=True", "other_config:dpdk-init=try")
	snap = waitSnapshot(t, w, "flow-restore-wait", func(s Snapshot) bool { return s.System.OtherConfig["flow-restore-wait"] != "" })
	assert.Equal(t, map[string]string{"flow-restore-wait": "True", "dpdk-init": "try"}, snap.System.OtherConfig, "values as the row holds them")
	s.VsctlNoWait("set", "open", ".", "external_ids:ovn-managed-flow-restore-wait=true")
	waitSnapshot(t, w, "the external ID", func(s Snapshot) bool { return s.System.ExternalIDs["ovn-managed-flow-restore-wait"] == "true" })
	s.VsctlNoWait("remove", "open", ".", "other_config", "flow-restore-wait")
	waitSnapshot(t, w, "flow-restore-wait cleared", func(s Snapshot) bool {
		_, set := s.System.OtherConfig["flow-restore-wait"]
		return s.System.Known && !set
	})

	s.Vsctl("add-port", "br-int", "gw0", "--", "set", "interface", "gw0", "type=internal")
	snap = waitSnapshot(t, w, "gw0 with a port number", func(s Snapshot) bool { return s.Ports["gw0"].OFPort > 0 })
	assert.Empty(t, snap.Ports["gw0"].Error)
	// A patch port without a peer cannot be opened: ofport -1 and an error.
	s.VsctlNoWait("add-port", "br-int", "patch0", "--", "set", "interface", "patch0", "type=patch")
	snap = waitSnapshot(t, w, "patch0 failing", func(s Snapshot) bool { return s.Ports["patch0"].OFPort == -1 })
	assert.Contains(t, snap.Ports["patch0"].Error, "patch type requires valid 'peer' argument")
}
