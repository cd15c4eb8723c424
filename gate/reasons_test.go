package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/internal/unixctltest"
)

// Reasons that a real ovs-vswitchd shows only in rare moments or never,
// each from a fake control socket that answers as that moment would, with
// a real OVSDB that has the bridge, its datapath and a port gw0.
func TestFakeVSwitchdReasons(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	s.Vsctl("add-port", "br-int", "gw0", "--", "set", "interface", "gw0", "type=internal")
	var ofport int
	s.Eventually(10*time.Second, "a datapath ID and gw0's port number", func() bool {
		_, err := fmt.Sscan(strings.TrimSpace(s.Vsctl("get", "interface", "gw0", "ofport")), &ofport)
		return err == nil && ofport > 0 && s.DatapathID("br-int") != ""
	})
	features := func(answer func(req request, c *fakeCtl)) unixctltest.Handler {
		return unixctltest.VersionThen(func(req request, c *fakeCtl) {
			if req.Method == "dpif/show-dp-features" {
				answer(req, c)
				return
			}
			unixctltest.VSwitchd(req, c)
		})
	}
	dpifShow := func(text string) unixctltest.Handler {
		return func(req request, c *fakeCtl) {
			if req.Method == "dpif/show" {
				c.Reply(req.ID, text)
				return
			}
			unixctltest.VSwitchd(req, c)
		}
	}
	tests := []struct {
		name    string
		pid     int
		serve   unixctltest.Handler
		ports   []string
		reason  string
		settled bool
	}{
		{"first answer on its way", 3001, func(request, *fakeCtl) {}, nil,
			"ovs-vswitchd (pid 3001) has not answered yet", false},
		{"bridge not configured yet", 3002, features(func(req request, c *fakeCtl) { c.Error(req.ID, "no such bridge") }), nil,
			"bridge br-int: ovs-vswitchd (pid 3002) has not configured the bridge yet", true},
		{"another error", 3003, features(func(req request, c *fakeCtl) { c.Error(req.ID, "datapath is being torn down") }), nil,
			"bridge br-int: dpif/show-dp-features failed: datapath is being torn down", true},
		{"features garbled", 3004, features(func(req request, c *fakeCtl) { c.Reply(req.ID, "Recirc Yes\n") }), nil,
			`bridge br-int: dpif/show-dp-features: malformed reply: feature line "Recirc Yes" is not "Name: value"`, true},
		{"version garbled", 3005, func(req request, c *fakeCtl) { c.Reply(req.ID, "\n") }, nil,
			"ovs-vswitchd (pid 3005): version: malformed reply: empty answer to version", true},
		{"port numbers differ", 3006, dpifShow("netdev@ovs-netdev: hit:0 missed:0\n  br-int:\n    br-int 65534/1: (dummy-internal)\n    gw0 99/2: (dummy-internal)\n"),
			[]string{"gw0"}, fmt.Sprintf("port gw0: ovs-vswitchd (pid 3006) has it as OpenFlow port 99, OVSDB says %d", ofport), true},
		{"opened ports unreadable", 3007, dpifShow("netdev@ovs-netdev: hit:0 missed:0\n  br-int:\n    gw0: (dummy-internal)\n"),
			[]string{"gw0"}, `port gw0: dpif/show: malformed reply: port line "gw0: (dummy-internal)" is not "NAME OFPORT/DPPORT: (TYPE)"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{OVSDB: s.Endpoint(), RunDir: unixctltest.RunDir(t, tt.pid, tt.serve), Bridges: []string{"br-int"},
				RequirePorts: tt.ports, CallTimeout: time.Minute, RetryMax: 50 * time.Millisecond}
			h := startGate(t, cfg)
			st := h.waitFor(20*time.Second, tt.reason, func(st State) bool { return st.Reason == tt.reason })
			assert.False(t, st.Ready)
			assert.Equal(t, tt.settled, st.Settled, "a definite answer, or one still on its way")
		})
	}
}

// silentOVSDB is an OVSDB socket at dir/db.sock that accepts connections
// and never answers.
func silentOVSDB(t *testing.T, dir string) string {
	testutil.ServeUnix(t, filepath.Join(dir, "db.sock"), func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	return "unix:" + dir + "/db.sock"
}

// An ovsdb-server that accepts connections and never answers (hung,
// stopped) is not answering once the connect timeout has passed; and check,
// given less time than that, says its evaluation was incomplete.
func TestOVSDBNotAnswering(t *testing.T) {
	t.Run("serve", func(t *testing.T) {
		dir := unixctltest.RunDir(t, 3101, unixctltest.VSwitchd)
		cfg := Config{OVSDB: silentOVSDB(t, dir), RunDir: dir, Bridges: []string{"br-int"}}
		h := startGate(t, cfg)
		want := "OVSDB: not answering within 5s at " + cfg.OVSDB
		// Three times the connect timeout: the bound holds on a loaded machine.
		st := h.waitFor(15*time.Second, want, func(st State) bool { return st.Reason == want })
		assert.Equal(t, CauseOVSDBUnreachable, st.Cause)
		assert.True(t, st.Settled, "a failed attempt is a definite answer")
	})
	t.Run("check", func(t *testing.T) {
		dir := unixctltest.RunDir(t, 3102, unixctltest.VSwitchd)
		cfg := Config{OVSDB: silentOVSDB(t, dir), RunDir: dir, Bridges: []string{"br-int"}}
		st, err := Evaluate(context.Background(), cfg, 300*time.Millisecond)
		require.NoError(t, err)
		seenReasons.record(t, st)
		assert.False(t, st.Settled)
		assert.False(t, st.Ready)
		assert.Equal(t, "evaluation incomplete after 300ms: OVSDB: connecting to "+cfg.OVSDB, st.Reason)
	})
}

// A bridge on the kernel datapath that an answering ovs-vswitchd has not
// made says what the kernel shows: here OVSDB has the bridge, a control
// socket answers and configures nothing, and the kernel's answer is the
// test's. Once no ovs-vswitchd answers, that alone is the reason.
func TestKernelDiagnosisInTheReason(t *testing.T) {
	s := ovstest.New(t)
	s.StartOVSDB()
	s.VsctlNoWait("add-br", "br-sys") // datapath_type "": the kernel's
	for _, tt := range []struct {
		name  string
		list  func() ([]string, error)
		shows string
	}{
		{"no module", noModule, "openvswitch kernel module not loaded"},
		{"no datapath", func() ([]string, error) { return []string{"other"}, nil }, "ovs-system datapath absent"},
		{"cannot ask", func() ([]string, error) { return nil, errors.New("operation not permitted") }, "cannot list datapaths: operation not permitted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{OVSDB: s.Endpoint(), RunDir: unixctltest.RunDir(t, 3201, unixctltest.VSwitchd), Bridges: []string{"br-sys"}}
			h := startGate(t, cfg, withKernel(tt.list))
			want := "waiting for datapath ID (kernel datapath: " + tt.shows + ")"
			st := h.waitFor(10*time.Second, want, func(st State) bool { return len(st.Bridges) == 1 && st.Bridges[0].Reason == want })
			assert.Equal(t, want, checkOf(t, st, DatapathCheck("br-sys")).Message)
		})
	}
	t.Run("no ovs-vswitchd", func(t *testing.T) {
		h := startGate(t, Config{OVSDB: s.Endpoint(), RunDir: t.TempDir(), Bridges: []string{"br-sys"}}, withKernel(noModule))
		h.waitFor(10*time.Second, "settled", func(st State) bool { return st.Settled })
		for _, st := range h.published() {
			assert.NotContains(t, checkOf(t, st, DatapathCheck("br-sys")).Message, "kernel", st.Reason)
		}
	})
}

// noModule lists the kernel's datapaths as a kernel without the
// openvswitch module does.
func noModule() ([]string, error) { return nil, os.ErrNotExist }

// A bridge added with a plain add-br (the kernel's datapath type) is ready
// on the sandbox; once its ovs-vswitchd is killed, the reason is that, and
// not the kernel module that the kernel lacks all along.
func TestKernelDiagnosisNotWhenVSwitchdIsGone(t *testing.T) {
	s := ovstest.Start(t)
	s.Vsctl("add-br", "br-sys")
	h := startGate(t, sandboxConfig(s, "br-sys"), withKernel(noModule))
	h.waitFor(20*time.Second, "ready", func(st State) bool { return st.Ready })
	pid := s.VSwitchdPID()
	s.KillVSwitchd()
	want := fmt.Sprintf("ovs-vswitchd (pid %d) exited", pid)
	st := h.waitFor(10*time.Second, want, func(st State) bool { return st.Reason == want })
	assert.Equal(t, "waiting for ovs-vswitchd", checkOf(t, st, DatapathCheck("br-sys")).Message)
	assert.Equal(t, "waiting for ovs-vswitchd", st.Bridges[0].Reason)
}

// permissionChildEnv names the run directory a child of this test binary
// gates on, as an unprivileged user; see TestVSwitchdPermissionDenied.
const permissionChildEnv = "OVSGATE_TEST_PERMISSION_CHILD"

// permissionChild evaluates a gate on dir and prints the reasons it gives,
// as JSON, on stdout.
func permissionChild(dir string) int {
	st, err := Evaluate(context.Background(), Config{OVSDB: "unix:" + dir + "/db.sock", RunDir: dir, Bridges: []string{"br-int"}}, 20*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, _ := st.Check(CheckVSwitchd)
	if err := json.NewEncoder(os.Stdout).Encode(map[string]string{"reason": st.Reason, "vswitchd": c.Message}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// A control socket that ovsgate's user may not open says so, and what to
// do. Root opens any socket, so the gate runs in a child process of this
// test binary as nobody.
func TestVSwitchdPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.SkipUnlessCI(t, "needs root to run the gate as another user")
	}
	dir, err := os.MkdirTemp("", "ovsgate-perm")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ovs-vswitchd.pid"), []byte("4242\n"), 0o644))
	socket := filepath.Join(dir, "ovs-vswitchd.4242.ctl")
	unixctltest.Serve(t, socket, unixctltest.VSwitchd)
	require.NoError(t, os.Chmod(socket, 0o600))
	// The test binary's own directory is root's alone: the child runs a copy.
	bin := filepath.Join(dir, "gate.test")
	b, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, b, 0o755))

	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = []string{permissionChildEnv + "=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "child: %s", stderr.String())
	var got struct{ Reason, VSwitchd string }
	require.NoError(t, json.Unmarshal(out, &got), "%s", out)
	assert.Equal(t, "ovs-vswitchd (pid 4242): permission denied on "+socket+" (run ovsgate as the socket's owner)", got.VSwitchd)
	seenReasons.record(t, State{Status: Status{Reason: got.Reason, Checks: []Check{{Name: CheckVSwitchd, Message: got.VSwitchd}}}})
}
