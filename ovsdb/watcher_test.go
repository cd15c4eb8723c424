package ovsdb

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/internal/ovstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, network, address, err string
	}{
		{in: "unix:/var/run/openvswitch/db.sock", network: "unix", address: "/var/run/openvswitch/db.sock"},
		{in: "unix:db.sock", network: "unix", address: "db.sock"},
		{in: "tcp:127.0.0.1:6640", network: "tcp", address: "127.0.0.1:6640"},
		{in: "tcp:[::1]:6640", network: "tcp", address: "[::1]:6640"},
		{in: "tcp:ovsdb.example:6641", network: "tcp", address: "ovsdb.example:6641"},
		{in: "", err: "want unix:PATH or tcp:HOST:PORT"},
		{in: "/var/run/openvswitch/db.sock", err: "want unix:PATH or tcp:HOST:PORT"},
		{in: "unix:", err: "needs a socket path"},
		{in: "tcp:host", err: "want tcp:HOST:PORT"},
		{in: "tcp::80", err: "needs a host"},
		{in: "tcp:h:0", err: "port must be a number from 1 to 65535"},
		{in: "tcp:h:99999", err: "port must be a number from 1 to 65535"},
		{in: "tcp:h:http", err: "port must be a number"},
		{in: "ssl:127.0.0.1:6640", err: "not supported"},
		{in: "punix:/x", err: "want unix:PATH or tcp:HOST:PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			network, address, err := ParseEndpoint(tt.in)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				assert.Contains(t, err.Error(), fmt.Sprintf("%q", tt.in), "the error names the value")
				assert.NotContains(t, err.Error(), "\n")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.network, network)
			assert.Equal(t, tt.address, address)
		})
	}
}

func TestNewWatcherRejectsBadInput(t *testing.T) {
	_, err := NewWatcher("bogus", []string{"br-int"})
	assert.Error(t, err)
	_, err = NewWatcher("unix:/x", nil)
	assert.Error(t, err)
	_, err = NewWatcher("unix:/x", []string{""})
	assert.Error(t, err)
}

// run starts w and stops it at cleanup, failing if Run does not return.
func run(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func waitSnapshot(t *testing.T, w *Watcher, what string, cond func(Snapshot) bool) Snapshot {
	t.Helper()
	var s Snapshot
	if !ovstest.Poll(10*time.Second, func() bool { s = w.Snapshot(); return cond(s) }) {
		t.Fatalf("timed out waiting for %s; last snapshot %+v", what, s)
	}
	return s
}

func TestWatcherBridgeLifecycle(t *testing.T) {
	s := ovstest.Start(t, "br-other")
	w, err := NewWatcher(s.Endpoint(), []string{"br-int", "br-ex"}, WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	require.NoError(t, err)
	run(t, w)

	snap := waitSnapshot(t, w, "connected", func(s Snapshot) bool { return s.Connected })
	assert.Empty(t, snap.Err)
	assert.Equal(t, s.Endpoint(), snap.Endpoint)
	assert.Len(t, snap.Bridges, 2, "only gated bridges, never br-other")
	assert.False(t, snap.Bridges["br-int"].Exists)

	drain(w)
	added := time.Now()
	s.AddBridge("br-int")
	select {
	case <-w.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("no change notification after add-br")
	}
	snap = waitSnapshot(t, w, "br-int with datapath ID", func(s Snapshot) bool { return s.Bridges["br-int"].DatapathID != "" })
	t.Logf("add-br returned -> datapath ID in snapshot: %s", time.Since(added))
	br := snap.Bridges["br-int"]
	assert.True(t, br.Exists)
	assert.Equal(t, s.DatapathID("br-int"), br.DatapathID)
	assert.Equal(t, "netdev", br.DatapathType)
	assert.False(t, snap.Bridges["br-ex"].Exists)

	s.AddBridge("br-ex")
	waitSnapshot(t, w, "both bridges", func(s Snapshot) bool { return s.Bridges["br-ex"].DatapathID != "" && s.Bridges["br-int"].Exists })

	s.DelBridge("br-int")
	snap = waitSnapshot(t, w, "br-int gone", func(s Snapshot) bool { return !s.Bridges["br-int"].Exists })
	assert.Empty(t, snap.Bridges["br-int"].DatapathID)
	assert.True(t, snap.Bridges["br-ex"].Exists)

	s.AddBridge("br-int")
	waitSnapshot(t, w, "br-int back", func(s Snapshot) bool { return s.Bridges["br-int"].DatapathID != "" })
}

func drain(w *Watcher) {
	select {
	case <-w.Changed():
	default:
	}
}

func TestWatcherOVSDBAbsentThenRestarted(t *testing.T) {
	s := ovstest.New(t)
	w, err := NewWatcher(s.Endpoint(), []string{"br-int"}, WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	require.NoError(t, err)
	run(t, w)

	snap := waitSnapshot(t, w, "a connection error", func(s Snapshot) bool { return s.Err != "" })
	assert.False(t, snap.Connected)
	assert.Contains(t, snap.Err, "connect")

	s.StartOVSDB()
	s.StartVSwitchd()
	s.AddBridge("br-int")
	waitSnapshot(t, w, "connected with the bridge", func(s Snapshot) bool { return s.Connected && s.Bridges["br-int"].DatapathID != "" })

	s.StopOVSDB()
	snap = waitSnapshot(t, w, "disconnected", func(s Snapshot) bool { return !s.Connected })
	assert.False(t, snap.Bridges["br-int"].Exists, "nothing is claimed while disconnected")
	assert.NotEmpty(t, snap.Err)

	// While OVSDB is away the bridge is deleted from the database file; after
	// the reconnect the fresh cache must not show it.
	s.StopVSwitchd() // or it would add the bridge back
	out, err := exec.Command("ovsdb-tool", "transact", filepath.Join(s.Dir, "conf.db"),
		`["Open_vSwitch",{"op":"update","table":"Open_vSwitch","where":[],"row":{"bridges":["set",[]]}}]`).CombinedOutput()
	require.NoError(t, err, string(out))
	s.StartOVSDB()
	snap = waitSnapshot(t, w, "reconnected", func(s Snapshot) bool { return s.Connected })
	assert.False(t, snap.Bridges["br-int"].Exists, "a row deleted during the outage lingers")
}

// The monitor must ask for the three modelled columns of the gated rows only:
// a thousand ports on the bridge must not reach the watcher.
func TestWatcherMonitorsOnlyModelledColumns(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	args := []string{}
	for i := 0; i < 1000; i++ {
		p := fmt.Sprintf("p%d", i)
		args = append(args, "--", "add-port", "br-int", p, "--", "set", "interface", p, "type=internal")
	}
	s.VsctlNoWait(args...)

	w, err := NewWatcher(s.Endpoint(), []string{"br-int"})
	require.NoError(t, err)
	proxy := newCountingProxy(t, s.DBSocket())
	w.endpoint = "unix:" + proxy.path
	run(t, w)
	waitSnapshot(t, w, "connected", func(s Snapshot) bool { return s.Connected && s.Bridges["br-int"].Exists })
	read := proxy.fromServer()
	t.Logf("bytes read from OVSDB at start with 1000 ports: %d", read)
	// The schema alone is ~30 KB; 1000 port UUIDs would add ~45 KB more.
	assert.Less(t, read, int64(40_000))
}

// With OVSDB away, attempts go on with backoff and nothing is logged per
// attempt at the default verbosity.
func TestWatcherQuietWhileAway(t *testing.T) {
	var buf bytes.Buffer
	captureKlog(t, &buf)
	dir := t.TempDir()
	w, err := NewWatcher("unix:"+dir+"/none.sock", []string{"br-int"}, WithBackoff(time.Millisecond, 5*time.Millisecond))
	require.NoError(t, err)
	run(t, w)
	require.True(t, ovstest.Poll(10*time.Second, func() bool { return w.attempts.Load() >= 100 }), "attempts go on")
	klog.Flush()
	lines := strings.Count(buf.String(), "\n")
	assert.LessOrEqual(t, lines, 2, "log lines while OVSDB is away:\n%s", buf.String())
}

func captureKlog(t *testing.T, buf *bytes.Buffer) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	require.NoError(t, fs.Set("logtostderr", "false"))
	klog.SetOutput(buf)
	t.Cleanup(func() {
		klog.Flush()
		require.NoError(t, fs.Set("logtostderr", "true"))
	})
}

// countingProxy forwards a unix socket and counts the bytes the server sends.
type countingProxy struct {
	path string
	ln   net.Listener
	n    chan int64
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "proxy")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &countingProxy{path: dir + "/p.sock", n: make(chan int64, 1)}
	p.ln, err = net.Listen("unix", p.path)
	require.NoError(t, err)
	p.n <- 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(s, c); s.Close() }()
			go func() { defer wg.Done(); p.copyCounting(c, s); c.Close() }()
		}
	}()
	// Registered before run's cleanup, so it runs after the watcher stopped.
	t.Cleanup(func() { p.ln.Close(); wg.Wait() })
	return p
}

func (p *countingProxy) copyCounting(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.n <- <-p.n + int64(n)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *countingProxy) fromServer() int64 {
	n := <-p.n
	p.n <- n
	return n
}
