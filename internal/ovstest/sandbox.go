package ovstest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// schemaPath is where Debian's openvswitch-common installs the OVSDB schema.
const schemaPath = "/usr/share/openvswitch/vswitch.ovsschema"

// maxSocketPath is the longest path a unix socket can bind to (sun_path).
const maxSocketPath = 107

// Sandbox is one test's private Open vSwitch.
type Sandbox struct {
	t   testing.TB
	Dir string

	mu       sync.Mutex
	ovsdb    *proc
	vswitchd *proc
}

// proc is a daemon this sandbox started and therefore may stop.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Require fails the test when Open vSwitch is not installed and the test runs
// in CI; elsewhere it skips and says why.
func Require(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-vsctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found: CI must run the real-OVS tests (run hack/install-ovs.sh)", bin)
			}
			t.Skipf("%s not found: install Open vSwitch (hack/install-ovs.sh or make test) to run this test", bin)
		}
	}
	if _, err := os.Stat(schemaPath); err != nil {
		t.Fatalf("OVSDB schema: %v", err)
	}
}

// New starts nothing yet: it prepares an empty sandbox folder. Most tests want
// Start instead.
func New(t testing.TB) *Sandbox {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	// ovs-vswitchd.<pid>.ctl must fit in sun_path; t.TempDir can be long.
	if len(dir)+len("/ovs-vswitchd.4194304.ctl") > maxSocketPath {
		var err error
		dir, err = os.MkdirTemp("", "ovs")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	s := &Sandbox{t: t, Dir: dir}
	t.Cleanup(s.stopAll)
	s.run("ovsdb-tool", "create", s.path("conf.db"), schemaPath)
	return s
}

// Start returns a sandbox with ovsdb-server and ovs-vswitchd running and the
// given netdev bridges configured.
func Start(t testing.TB, bridges ...string) *Sandbox {
	t.Helper()
	s := New(t)
	s.StartOVSDB()
	s.StartVSwitchd()
	for _, br := range bridges {
		s.AddBridge(br)
	}
	return s
}

func (s *Sandbox) path(name string) string { return filepath.Join(s.Dir, name) }

// Endpoint is the OVSDB endpoint in ovsgate's --ovsdb syntax.
func (s *Sandbox) Endpoint() string { return "unix:" + s.path("db.sock") }

// DBSocket is the OVSDB socket path.
func (s *Sandbox) DBSocket() string { return s.path("db.sock") }

// RunDir holds ovs-vswitchd.pid and ovs-vswitchd.<pid>.ctl.
func (s *Sandbox) RunDir() string { return s.Dir }

// Env is the environment that points OVS tools at this sandbox.
func (s *Sandbox) Env() []string {
	env := os.Environ()
	for _, k := range []string{"OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"} {
		env = append(env, k+"="+s.Dir)
	}
	return env
}

// StartOVSDB starts ovsdb-server on the sandbox database and waits until it
// accepts clients.
func (s *Sandbox) StartOVSDB() {
	s.t.Helper()
	s.mu.Lock()
	if s.ovsdb != nil && s.ovsdb.alive() {
		s.mu.Unlock()
		s.t.Fatal("ovsdb-server already running")
	}
	s.mu.Unlock()
	p := s.spawn("ovsdb-server", s.path("conf.db"),
		"--remote=punix:"+s.DBSocket(),
		"--unixctl="+s.path("ovsdb-server.ctl"),
		"--pidfile="+s.path("ovsdb-server.pid"),
		"--log-file="+s.path("ovsdb-server.log"),
		"-vconsole:off", "--no-chdir")
	s.mu.Lock()
	s.ovsdb = p
	s.mu.Unlock()
	s.Eventually(10*time.Second, "ovsdb-server answers", func() bool {
		return exec.Command("ovs-vsctl", "--db=unix:"+s.DBSocket(), "--no-wait", "--timeout=1", "init").Run() == nil
	})
}

// StartVSwitchd starts ovs-vswitchd and waits until its pidfile names it. It
// returns the new pid. Bridges may not be configured yet when it returns.
func (s *Sandbox) StartVSwitchd() int {
	s.t.Helper()
	pid := s.StartVSwitchdNoWait()
	s.Eventually(10*time.Second, "ovs-vswitchd pidfile", func() bool {
		b, err := os.ReadFile(s.path("ovs-vswitchd.pid"))
		return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid)
	})
	return pid
}

// StartVSwitchdNoWait starts ovs-vswitchd and returns its pid at once, for
// tests of what happens while it starts.
func (s *Sandbox) StartVSwitchdNoWait() int {
	s.t.Helper()
	s.mu.Lock()
	if s.vswitchd != nil && s.vswitchd.alive() {
		s.mu.Unlock()
		s.t.Fatal("ovs-vswitchd already running")
	}
	s.mu.Unlock()
	p := s.spawn("ovs-vswitchd", "unix:"+s.DBSocket(),
		"--enable-dummy=override", "--disable-system",
		"--pidfile="+s.path("ovs-vswitchd.pid"),
		"--log-file="+s.path("ovs-vswitchd.log"),
		"-vconsole:off", "--no-chdir")
	s.mu.Lock()
	s.vswitchd = p
	s.mu.Unlock()
	return p.cmd.Process.Pid
}

// VSwitchdPID is the pid of the ovs-vswitchd this sandbox started last, or 0.
func (s *Sandbox) VSwitchdPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vswitchd == nil || !s.vswitchd.alive() {
		return 0
	}
	return s.vswitchd.cmd.Process.Pid
}

// OVSDBPID is the pid of the running ovsdb-server, or 0.
func (s *Sandbox) OVSDBPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ovsdb == nil || !s.ovsdb.alive() {
		return 0
	}
	return s.ovsdb.cmd.Process.Pid
}

// StopVSwitchd stops ovs-vswitchd gracefully (SIGTERM) and waits for it to exit.
func (s *Sandbox) StopVSwitchd() { s.stop(&s.vswitchd, syscall.SIGTERM) }

// KillVSwitchd SIGKILLs ovs-vswitchd, leaving its pidfile and socket behind as
// a crash would, and waits for it to exit.
func (s *Sandbox) KillVSwitchd() { s.stop(&s.vswitchd, syscall.SIGKILL) }

// StopOVSDB stops ovsdb-server (SIGTERM) and waits for it to exit.
func (s *Sandbox) StopOVSDB() { s.stop(&s.ovsdb, syscall.SIGTERM) }

// KillOVSDB SIGKILLs ovsdb-server and waits for it to exit.
func (s *Sandbox) KillOVSDB() { s.stop(&s.ovsdb, syscall.SIGKILL) }

// RestartVSwitchd stops ovs-vswitchd and starts a new one; it returns the new pid.
func (s *Sandbox) RestartVSwitchd() int {
	s.t.Helper()
	s.StopVSwitchd()
	return s.StartVSwitchd()
}

// SignalVSwitchd sends sig (SIGSTOP, SIGCONT, ...) to the running ovs-vswitchd.
func (s *Sandbox) SignalVSwitchd(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	p := s.vswitchd
	s.mu.Unlock()
	if p == nil || !p.alive() {
		s.t.Fatal("ovs-vswitchd is not running")
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal ovs-vswitchd: %v", err)
	}
}

// VSwitchdExited is closed when the ovs-vswitchd started last exits.
func (s *Sandbox) VSwitchdExited() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vswitchd == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return s.vswitchd.exited
}

// AddBridge adds a netdev bridge; ovs-vsctl returns once ovs-vswitchd applied it.
func (s *Sandbox) AddBridge(name string) {
	s.t.Helper()
	s.Vsctl("--may-exist", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev")
}

// DelBridge removes a bridge.
func (s *Sandbox) DelBridge(name string) {
	s.t.Helper()
	s.Vsctl("--if-exists", "del-br", name)
}

// Vsctl runs ovs-vsctl against the sandbox and returns its trimmed output.
func (s *Sandbox) Vsctl(args ...string) string {
	s.t.Helper()
	return s.run("ovs-vsctl", append([]string{"--db=unix:" + s.DBSocket(), "--timeout=20"}, args...)...)
}

// VsctlNoWait is Vsctl that does not wait for ovs-vswitchd to apply the change
// (for use while ovs-vswitchd is down).
func (s *Sandbox) VsctlNoWait(args ...string) string {
	s.t.Helper()
	return s.Vsctl(append([]string{"--no-wait"}, args...)...)
}

// DatapathID reads the bridge's datapath_id column ("" when unset).
func (s *Sandbox) DatapathID(bridge string) string {
	s.t.Helper()
	out := s.Vsctl("--no-wait", "get", "bridge", bridge, "datapath_id")
	out = strings.Trim(out, "\"")
	if out == "[]" {
		return ""
	}
	return out
}

// Eventually polls cond every few milliseconds until it holds or the deadline
// passes, then fails the test naming what did not happen.
func (s *Sandbox) Eventually(d time.Duration, what string, cond func() bool) {
	s.t.Helper()
	if !Poll(d, cond) {
		s.t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// Poll calls cond until it returns true or d passes; it reports whether cond held.
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

func (s *Sandbox) run(name string, args ...string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = s.Env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func (s *Sandbox) spawn(name string, args ...string) *proc {
	s.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = s.Env()
	cmd.Dir = s.Dir
	// Own process group, so a signal meant for the test runner does not reach it
	// and it cannot outlive cleanup unnoticed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p
}

func (s *Sandbox) stop(pp **proc, sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	p := *pp
	s.mu.Unlock()
	if p == nil || !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot act on SIGTERM
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// stopAll stops whatever this sandbox still runs, by pid, and reports a daemon
// that had crashed on its own with its log tail.
func (s *Sandbox) stopAll() {
	s.stop(&s.vswitchd, syscall.SIGTERM)
	s.stop(&s.ovsdb, syscall.SIGTERM)
	if s.t.Failed() {
		for _, log := range []string{"ovs-vswitchd.log", "ovsdb-server.log"} {
			if b, err := os.ReadFile(s.path(log)); err == nil {
				s.t.Logf("%s (tail):\n%s", log, tail(string(b), 20))
			}
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// String describes the sandbox for test logs.
func (s *Sandbox) String() string {
	return fmt.Sprintf("ovs sandbox %s (ovsdb-server %d, ovs-vswitchd %d)", s.Dir, s.OVSDBPID(), s.VSwitchdPID())
}
