package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

// binary is the ovsgate binary built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) { os.Exit(testutil.MainWithOvsgate(m, &binary, "", nil)) }

// ovsgate runs the built binary with env as its environment.
func ovsgate(t *testing.T, env []string, args ...string) testutil.Result {
	t.Helper()
	return testutil.RunOvsgate(t, binary, env, args...)
}

// cleanEnv is the environment of a binary started by hand: PATH alone, so
// that no OVSGATE_* variable of the test runner's own leaks in.
func cleanEnv() []string { return []string{"PATH=" + os.Getenv("PATH")} }

func sandboxArgs(s *ovstest.Sandbox) []string {
	return []string{"--ovsdb", s.Endpoint(), "--ovs-rundir", s.RunDir()}
}

func TestVersion(t *testing.T) {
	r := ovsgate(t, nil, "version")
	assert.Equal(t, 0, r.Code)
	assert.Regexp(t, `^ovsgate \S+\ncommit: \S+\ngo: go1\.\S+ linux/\S+\n$`, r.Stdout)
}

func TestBadInputIsOneLineAndExit2(t *testing.T) {
	tests := [][]string{
		{"check", "--bridge", ""},
		{"check", "--bridge", "br-int,"},
		{"wait", "--bridge", "br int"},
		{"serve", "--bridge", ""},
		{"check", "--ovsdb", "foo"},
		{"check", "--ovsdb", "tcp:host"},
		{"wait", "--ovsdb", "unix:"},
		{"serve", "--ovsdb", "ssl:1.2.3.4:6640"},
		{"check", "--require-feature", "Max VLAN headers>=two"},
		{"wait", "--require-feature", ">=2"},
		{"serve", "--require-feature", "Recirc=>1"},
		{"check", "--nope"},
		{"serve", "--nope"},
		{"check", "-o", "yaml"},
		{"check", "--timeout", "-1s"},
		{"wait", "--timeout", "soon"},
		{"serve", "--health-probe-bind-address", "nonsense"},
		{"serve", "--metrics-bind-address", ":99999"},
		{"serve", "--health-probe-bind-address", "127.0.0.1:9476", "--metrics-bind-address", "127.0.0.1:9476"},
		{"check", "extra-arg"},
		{"bogus-command"},
		{"serve", "--node-condition", "ovsgate.io/OVSReady"},
		{"serve", "--node-condition", "not a type", "--node-name", "n1", "--kubeconfig", "/dev/null"},
		{"serve", "--node-condition", "Ready", "--node-name", "n1", "--kubeconfig", "/dev/null"},
		{"serve", "--node-condition", "ovsgate.io/OVSReady", "--node-name", "Not_A_Node", "--kubeconfig", "/dev/null"},
		{"serve", "--node-condition", "ovsgate.io/OVSReady", "--node-name", "n1"},
		{"serve", "--node-condition", "ovsgate.io/OVSReady", "--node-name", "n1", "--kubeconfig", "/nonexistent"},
		{"serve", "--node-condition", "ovsgate.io/OVSReady", "--node-name", "n1", "--node-condition-heartbeat", "0s"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := ovsgate(t, nil, args...)
			assert.Equal(t, 2, r.Code, "stderr: %s", r.Stderr)
			assert.Empty(t, r.Stdout)
			lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
			assert.Len(t, lines, 1, "one clear line, got %q", r.Stderr)
			assert.True(t, strings.HasPrefix(lines[0], "ovsgate: "), lines[0])
		})
	}
}

// A value from the environment is reported under the variable's name,
// whatever is wrong with it; the same value on the command line names the
// flag.
func TestBadEnvironmentIsExit2(t *testing.T) {
	for _, tt := range []struct {
		env, cmd, want string
	}{
		{"OVSGATE_OVSDB=nonsense", "check", `ovsgate: invalid OVSGATE_OVSDB="nonsense": want unix:PATH or tcp:HOST:PORT`},
		{"OVSGATE_TIMEOUT=soon", "check", `ovsgate: invalid OVSGATE_TIMEOUT="soon": time: invalid duration "soon"`},
		{"OVSGATE_TIMEOUT=-1s", "wait", `ovsgate: invalid OVSGATE_TIMEOUT="-1s": must not be negative`},
		{"OVSGATE_BRIDGE=", "check", `ovsgate: invalid OVSGATE_BRIDGE="": bridge name must not be empty`},
		{"OVSGATE_BRIDGE=br-int,br int", "check", `ovsgate: invalid OVSGATE_BRIDGE="br-int,br int": names have no spaces or slashes`},
		{"OVSGATE_REQUIRE_FEATURE=Recirc>=x", "check", `ovsgate: invalid OVSGATE_REQUIRE_FEATURE="Recirc>=x": "x" is not an integer`},
		{"OVSGATE_OUTPUT=yaml", "check", `ovsgate: invalid OVSGATE_OUTPUT="yaml": want table or json`},
		{"OVSGATE_HEALTH_PROBE_BIND_ADDRESS=x", "serve", `ovsgate: invalid OVSGATE_HEALTH_PROBE_BIND_ADDRESS="x": want HOST:PORT or :PORT`},
		{"OVSGATE_NODE_CONDITION=Ready", "serve", `ovsgate: invalid OVSGATE_NODE_CONDITION="Ready": owned by Kubernetes; use a type of your own such as ovsgate.io/OVSReady`},
	} {
		t.Run(tt.env, func(t *testing.T) {
			r := ovsgate(t, []string{tt.env}, tt.cmd)
			assert.Equal(t, 2, r.Code)
			assert.Equal(t, tt.want+"\n", r.Stderr)
		})
	}
	r := ovsgate(t, nil, "check", "--timeout", "-1s")
	assert.Equal(t, "ovsgate: invalid --timeout \"-1s\": must not be negative\n", r.Stderr)
}

// A set OVSGATE_* variable that configures no flag is a typo worth a line.
func TestUnknownVariableWarns(t *testing.T) {
	dir := t.TempDir()
	r := ovsgate(t, []string{"OVSGATE_BRIDGES=br-ex", "OVSGATE_OUTPUT=json"}, "check", "--timeout", "1ms",
		"--ovsdb", "unix:"+dir+"/db.sock", "--ovs-rundir", dir)
	assert.Equal(t, 1, r.Code)
	assert.Equal(t, "ovsgate: warning: OVSGATE_BRIDGES configures no flag of ovsgate; ignored\n", r.Stderr,
		"OVSGATE_OUTPUT is check's --output: no warning")
	var st gate.Status
	assert.NoError(t, json.Unmarshal([]byte(r.Stdout), &st), "OVSGATE_OUTPUT=json applied")
}

// serve --timeout warns, at warning level, once.
func TestServeTimeoutWarns(t *testing.T) {
	const timeout = 200 * time.Millisecond
	dir := t.TempDir()
	// -v=4 logs each OVSDB reconnect attempt (at least every 2 s): lines
	// that show how far serve's own clock has gone.
	d := testutil.StartOvsgate(t, binary, nil, "serve", "--timeout", timeout.String(), "--ovsdb", "unix:"+dir+"/db.sock", "--ovs-rundir", dir,
		"--status-file", "", "--health-probe-bind-address", testutil.AnyPort, "--metrics-bind-address", "0", "-v=4")
	warnings := func() (lines []string) {
		for _, line := range d.Stderr.Lines() {
			if strings.Contains(line, "Still not ready") {
				lines = append(lines, line)
			}
		}
		return lines
	}
	require.True(t, testutil.Poll(time.Minute, func() bool { return len(warnings()) > 0 }), "no warning: %s", d.Stderr.String())
	first := warnings()[0]
	assert.True(t, strings.HasPrefix(first, "W"), "a warning: %s", first)
	assert.Contains(t, first, "Still not ready after 200ms: OVSDB: not connected")
	// Once serve has logged a line ten timeouts after its warning, a warning
	// repeated after each timeout would be in the log.
	warned, ok := klogTime(first)
	require.True(t, ok, "not a klog line: %q", first)
	require.True(t, testutil.Poll(time.Minute, func() bool {
		lines := d.Stderr.Lines()
		last, ok := klogTime(lines[len(lines)-1])
		return ok && last.Sub(warned) >= 10*timeout
	}), "serve logged nothing ten timeouts after its warning: %s", d.Stderr.String())
	assert.Len(t, warnings(), 1, "once: %s", d.Stderr.String())
}

// klogTime is the time in the header of a klog line, "W1203 12:34:56.789012";
// ok is false for any other line.
func klogTime(line string) (ts time.Time, ok bool) {
	if len(line) < 21 {
		return time.Time{}, false
	}
	ts, err := time.Parse("0102 15:04:05.000000", line[1:21])
	return ts, err == nil
}

func TestCheck(t *testing.T) {
	s := ovstest.Start(t, "br-int")

	r := ovsgate(t, nil, append([]string{"check"}, sandboxArgs(s)...)...)
	assert.Equal(t, 0, r.Code, r.Stderr)
	assert.True(t, strings.HasPrefix(r.Stdout, "READY\n"), r.Stdout)
	assert.Contains(t, r.Stdout, s.DatapathID("br-int"))
	assert.Contains(t, r.Stdout, "FEATURES OF br-int")
	assert.Empty(t, r.Stderr, "no log lines at the default verbosity")

	r = ovsgate(t, nil, append([]string{"check", "-o", "json"}, sandboxArgs(s)...)...)
	assert.Equal(t, 0, r.Code, r.Stderr)
	var st gate.Status
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &st), r.Stdout)
	assert.True(t, st.Ready)
	assert.Equal(t, "", st.Reason)
	assert.Equal(t, s.VSwitchdPID(), st.VSwitchd.PID)
	assert.Equal(t, s.Endpoint(), st.OVSDB.Endpoint)
	require.Len(t, st.Bridges, 1)
	assert.Equal(t, float64(3), st.Bridges[0].Features["Max MPLS depth"])
	assert.Equal(t, true, st.Bridges[0].Features["Recirc"])

	r = ovsgate(t, nil, append([]string{"check", "--bridge", "br-int", "--bridge", "br-missing"}, sandboxArgs(s)...)...)
	assert.Equal(t, 1, r.Code)
	assert.Contains(t, r.Stdout, "NOT READY: bridge br-missing: bridge does not exist in OVSDB")

	r = ovsgate(t, nil, append([]string{"check", "--require-feature", "Max VLAN headers>=2", "-o", "json"}, sandboxArgs(s)...)...)
	assert.Equal(t, 1, r.Code)
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &st))
	assert.Equal(t, `bridge br-int: feature "Max VLAN headers" is 1, want >= 2`, st.Reason)

	r = ovsgate(t, nil, append([]string{"check", "--require-feature", "recirc,max vlan headers>=1"}, sandboxArgs(s)...)...)
	assert.Equal(t, 0, r.Code, r.Stdout)
}

// An absent OVS is an answer, not a wait: check returns long before its
// --timeout (RunOvsgate gives it a minute); BenchmarkCommands times it.
func TestCheckWithoutOVS(t *testing.T) {
	dir := t.TempDir()
	r := ovsgate(t, nil, "check", "--timeout", "1h", "--ovsdb", "unix:"+dir+"/db.sock", "--ovs-rundir", dir, "-o", "json")
	assert.Equal(t, 1, r.Code)
	var st gate.Status
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &st))
	assert.False(t, st.OVSDB.Connected)
	assert.Contains(t, st.Reason, "OVSDB: not connected to unix:"+dir+"/db.sock")
	c, ok := st.Check("vswitchd")
	require.True(t, ok)
	assert.Contains(t, c.Message, "no pidfile")
}

func TestEnvironment(t *testing.T) {
	s := ovstest.Start(t, "br-int", "br-ex")
	env := []string{"OVSGATE_OVSDB=" + s.Endpoint(), "OVSGATE_OVS_RUNDIR=" + s.RunDir(), "OVSGATE_BRIDGE=br-int,br-ex"}
	r := ovsgate(t, env, "check", "-o", "json")
	assert.Equal(t, 0, r.Code, r.Stderr)
	var st gate.Status
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &st))
	require.Len(t, st.Bridges, 2)
	assert.Equal(t, "br-ex", st.Bridges[1].Name)

	// A flag on the command line wins over the environment.
	r = ovsgate(t, env, "check", "-o", "json", "--bridge", "br-nope")
	assert.Equal(t, 1, r.Code)
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &st))
	require.Len(t, st.Bridges, 1)
	assert.Equal(t, "br-nope", st.Bridges[0].Name)

	r = ovsgate(t, append(env, "OVSGATE_REQUIRE_FEATURE=Max VLAN headers>=5"), "check")
	assert.Equal(t, 1, r.Code)
	assert.Contains(t, r.Stdout, `"Max VLAN headers" is 1, want >= 5`)

	dir := t.TempDir()
	r = ovsgate(t, append(env, "OVSGATE_STATUS_FILE="+dir+"/s.json"), "check")
	assert.Equal(t, 0, r.Code)
	assert.FileExists(t, dir+"/s.json")
}

func TestWaitSucceedsOnceBridgeAppears(t *testing.T) {
	s := ovstest.Start(t)
	statusFile := filepath.Join(t.TempDir(), "run", "status.json")
	d := testutil.StartOvsgate(t, binary, nil, append([]string{"wait", "--status-file", statusFile, "--timeout", "60s"}, sandboxArgs(s)...)...)

	s.Eventually(10*time.Second, "progress line", func() bool {
		return strings.Contains(d.Stderr.String(), "not ready: bridge br-int: bridge does not exist in OVSDB")
	})
	s.AddBridge("br-int")
	if !testutil.Poll(20*time.Second, func() bool { return !d.Running() }) {
		d.Kill()
		t.Fatalf("wait did not return: %s", d.Stderr.String())
	}
	require.NoError(t, d.Err(), d.Stderr.String())
	lines := strings.Split(strings.TrimSpace(d.Stderr.String()), "\n")
	// Between "does not exist" and ready, OVSDB may show the row before its
	// datapath ID, and the features may be in flight for a moment: each is
	// one more state, one more line, never a repeated one.
	assert.GreaterOrEqual(t, len(lines), 2)
	assert.LessOrEqual(t, len(lines), 4, "one line per state change, then the last line: %q", lines)
	for i := 1; i < len(lines); i++ {
		assert.NotEqual(t, lines[i-1], lines[i], "a line repeated without a state change")
	}
	assert.Regexp(t, `^ovsgate: ready after \S+ \(ovs-vswitchd pid \d+\)$`, lines[len(lines)-1])

	var st gate.Status
	b, err := os.ReadFile(statusFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &st))
	assert.True(t, st.Ready)
}

func TestWaitTimesOut(t *testing.T) {
	s := ovstest.Start(t)
	start := time.Now()
	r := ovsgate(t, nil, append([]string{"wait", "--timeout", "500ms", "--bridge", "br-late"}, sandboxArgs(s)...)...)
	assert.Equal(t, 1, r.Code)
	assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "wait gave up before its --timeout")
	assert.Contains(t, r.Stderr, "ovsgate: timed out after 500ms: bridge br-late: bridge does not exist in OVSDB")
}

// daemon is an `ovsgate serve` against a sandbox, on loopback ports the
// kernel chose as it bound them.
type daemon struct {
	*testutil.Daemon
	probe      string
	metrics    string
	statusFile string
}

func startServe(t *testing.T, s *ovstest.Sandbox, extra ...string) *daemon {
	t.Helper()
	d := &daemon{statusFile: filepath.Join(t.TempDir(), "ovsgate", "status.json")}
	args := append([]string{"serve", "--health-probe-bind-address", testutil.AnyPort, "--metrics-bind-address", testutil.AnyPort,
		"--status-file", d.statusFile}, sandboxArgs(s)...)
	d.Daemon = testutil.StartOvsgate(t, binary, nil, append(args, extra...)...)
	d.probe, d.metrics = d.Addrs(t)
	return d
}

func (d *daemon) get(_ *testing.T, url string) (int, string) { return testutil.Get(url) }

func (d *daemon) readFile(t *testing.T) (gate.Status, bool) {
	b, err := os.ReadFile(d.statusFile)
	if err != nil {
		return gate.Status{}, false
	}
	var st gate.Status
	require.NoError(t, json.Unmarshal(b, &st), "status file must never be half-written: %q", b)
	return st, true
}

// TestServeEndToEnd runs the binary the way kubelet (HTTP) and a CNI agent
// (the status file) use it, with ovs-vswitchd on the host and in a pid
// namespace of its own.
func TestServeEndToEnd(t *testing.T) {
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		s := ovstest.StartIn(t, mode, "br-int")
		d := startServe(t, s)
		pid := s.VSwitchdPID()

		s.Eventually(10*time.Second, "/readyz 200", func() bool {
			code, _ := d.get(t, "http://"+d.probe+"/readyz")
			return code == 200
		})
		var first gate.Status
		s.Eventually(5*time.Second, "status file ready", func() bool {
			var ok bool
			first, ok = d.readFile(t)
			return ok && first.Ready && first.VSwitchd.PID == pid
		})
		require.NotNil(t, first.VSwitchd.Since, "vswitchd.since names the instance")
		code, body := d.get(t, "http://"+d.probe+"/livez")
		assert.Equal(t, 200, code)
		assert.Equal(t, "ok\n", body)
		code, body = d.get(t, "http://"+d.probe+"/readyz?verbose")
		assert.Equal(t, 200, code)
		assert.Equal(t, "[+]ovsdb ok\n[+]vswitchd ok\n[+]datapath/br-int ok\n[+]features/br-int ok\nreadyz check passed\n", body)
		code, body = d.get(t, "http://"+d.probe+"/status")
		assert.Equal(t, 200, code)
		var st gate.Status
		require.NoError(t, json.Unmarshal([]byte(body), &st))
		assert.True(t, st.Ready)
		var raw struct {
			VSwitchd map[string]any `json:"vswitchd"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &raw))
		since, _ := raw.VSwitchd["since"].(string)
		_, err := time.Parse(time.RFC3339, since)
		assert.NoError(t, err, "since is RFC 3339: %q", since)
		assert.True(t, strings.HasSuffix(since, "Z"), "since is UTC: %q", since)
		code, body = d.get(t, "http://"+d.metrics+"/metrics")
		assert.Equal(t, 200, code)
		assert.Contains(t, body, "\novsgate_ready 1\n")
		assert.Contains(t, body, `ovsgate_bridge_ready{bridge="br-int"} 1`)
		assert.Contains(t, body, "ovsgate_appctl_request_duration_seconds_bucket")
		assert.Contains(t, body, "\novsgate_vswitchd_busy 0\n")
		assert.Contains(t, body, "\novsgate_vswitchd_hung 0\n")
		assert.Contains(t, body, "go_goroutines")

		// At once, the README says; the gate's benchmarks measure it. The
		// deadlines here only bound a wait that holds on a loaded machine.
		s.KillVSwitchd()
		s.Eventually(20*time.Second, "/readyz 503 after ovs-vswitchd died", func() bool {
			code, _ := d.get(t, "http://"+d.probe+"/readyz")
			return code == 503
		})
		s.Eventually(20*time.Second, "status file not ready", func() bool {
			st, ok := d.readFile(t)
			return ok && !st.Ready
		})
		code, body = d.get(t, "http://"+d.probe+"/readyz/vswitchd")
		assert.Equal(t, 503, code)
		assert.Equal(t, fmt.Sprintf("[-]vswitchd failed: ovs-vswitchd (pid %d) exited\n", pid), body)

		newPID := s.StartVSwitchd()
		s.Eventually(10*time.Second, "ready on the new instance", func() bool {
			st, ok := d.readFile(t)
			return ok && st.Ready && st.VSwitchd.PID == newPID && st.VSwitchd.Since != nil && st.VSwitchd.Since.After(first.VSwitchd.Since.Time)
		})
		_, body = d.get(t, "http://"+d.metrics+"/metrics")
		assert.Contains(t, body, "\novsgate_vswitchd_restarts_total 1\n")
		// Counted from the first settled status (ready): -> not ready -> ready.
		assert.Contains(t, body, "\novsgate_transitions_total 2\n")

		require.NoError(t, d.Stop(), "exit 0 after SIGTERM; stderr: %s", d.Stderr.String())
		st, ok := d.readFile(t)
		require.True(t, ok)
		assert.False(t, st.Ready, "SIGTERM must leave ready: false")
		assert.Equal(t, "ovsgate stopped", st.Reason)
	})
}

// A stopped ovs-vswitchd must not hide anything else: OVSDB shows connected
// at once, and check names ovs-vswitchd as the one not answering, every
// time, within its --timeout.
func TestCheckAndServeWithStoppedVSwitchd(t *testing.T) {
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		s := ovstest.StartIn(t, mode, "br-int")
		pid := s.VSwitchdPID()
		s.SignalVSwitchd(syscall.SIGSTOP)
		t.Cleanup(func() { s.SignalVSwitchd(syscall.SIGCONT) })

		// Within its --timeout: past it, check would say "evaluation
		// incomplete after 2s" instead of naming the hang. BenchmarkCommands
		// times it.
		for i := 0; i < 3; i++ {
			r := ovsgate(t, nil, append([]string{"check", "--timeout", "2s", "-o", "json"}, sandboxArgs(s)...)...)
			assert.Equal(t, 1, r.Code, r.Stderr)
			var st gate.Status
			require.NoError(t, json.Unmarshal([]byte(r.Stdout), &st), r.Stdout)
			assert.True(t, st.OVSDB.Connected)
			c, _ := st.Check("ovsdb")
			assert.True(t, c.OK)
			assert.Equal(t, fmt.Sprintf("ovs-vswitchd (pid %d) is hung: not answering within 1s, and its main thread uses no CPU (stopped or deadlocked)", pid), st.Reason)
		}

		d := startServe(t, s)
		s.Eventually(20*time.Second, "[+]ovsdb while ovs-vswitchd is stopped", func() bool {
			_, body := d.get(t, "http://"+d.probe+"/readyz?verbose")
			return strings.Contains(body, "[+]ovsdb ok\n") && strings.Contains(body, "[-]vswitchd failed: ")
		})
		s.Eventually(10*time.Second, "hung, in the metrics", func() bool {
			_, body := d.get(t, "http://"+d.metrics+"/metrics")
			return strings.Contains(body, "\novsgate_vswitchd_hung 1\n")
		})
		s.SignalVSwitchd(syscall.SIGCONT)
		s.Eventually(10*time.Second, "ready once it runs again", func() bool {
			code, _ := d.get(t, "http://"+d.probe+"/readyz")
			return code == 200
		})
	})
}

func TestServeMetricsDisabled(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	d := startServe(t, s, "--metrics-bind-address=0")
	assert.Empty(t, d.metrics, "the start line says metrics=\"disabled\"")
	s.Eventually(10*time.Second, "/readyz 200", func() bool {
		code, _ := d.get(t, "http://"+d.probe+"/readyz")
		return code == 200
	})
	_, probePort, err := net.SplitHostPort(d.probe)
	require.NoError(t, err)
	assert.Equal(t, []string{probePort}, testutil.ListeningPorts(t, d.Cmd.Process.Pid), "the probe listener alone")
}

func TestServePortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	dir := t.TempDir()
	r := ovsgate(t, nil, "serve", "--health-probe-bind-address", ln.Addr().String(), "--metrics-bind-address", "0",
		"--ovsdb", "unix:"+dir+"/db.sock", "--ovs-rundir", dir, "--status-file", "")
	assert.Equal(t, 1, r.Code)
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	assert.Len(t, lines, 1, r.Stderr)
	assert.Equal(t, "ovsgate: listen on "+ln.Addr().String()+": address already in use", lines[0])
}

// An unwritable status directory does not stop serve: probes answer
// truthfully and the problem is logged once, not once per status.
func TestServeStatusFileUnwritable(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	require.NoError(t, os.WriteFile(blocker, nil, 0o644))
	d := startServe(t, s)
	d.Kill()
	d = startServe(t, s, "--status-file", filepath.Join(blocker, "status.json"))
	s.Eventually(10*time.Second, "/readyz 200", func() bool {
		code, _ := d.get(t, "http://"+d.probe+"/readyz")
		return code == 200
	})
	s.KillVSwitchd()
	s.Eventually(5*time.Second, "/readyz 503", func() bool {
		code, _ := d.get(t, "http://"+d.probe+"/readyz")
		return code == 503
	})
	assert.Equal(t, 1, strings.Count(d.Stderr.String(), "Cannot write the status file"), d.Stderr.String())
}

// A control socket ovsgate may not open gives a truthful reason, not a hang.
func TestCheckSocketWithoutPermission(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run the check as another user")
	}
	s := ovstest.Start(t, "br-int")
	require.NoError(t, os.Chmod(s.RunDir(), 0o755)) // the run dir is readable, the sockets are not
	require.NoError(t, os.Chmod(filepath.Join(s.RunDir(), fmt.Sprintf("ovs-vswitchd.%d.ctl", s.VSwitchdPID())), 0o700))
	require.NoError(t, os.Chmod(filepath.Dir(binary), 0o755))
	cmd := exec.Command(binary, append([]string{"check", "-o", "json"}, sandboxArgs(s)...)...)
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())
	var st gate.Status
	require.NoError(t, json.Unmarshal(out, &st), string(out))
	assert.False(t, st.Ready)
	c, ok := st.Check("vswitchd")
	require.True(t, ok)
	assert.Contains(t, c.Message, "permission denied")
}
