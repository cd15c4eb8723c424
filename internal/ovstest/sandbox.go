package ovstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

// schemaPath is where Debian's openvswitch-common installs the OVSDB schema.
const schemaPath = "/usr/share/openvswitch/vswitch.ovsschema"

// maxSocketPath is the longest path a unix socket can bind to (sun_path).
const maxSocketPath = 107

// Mode says where ovs-vswitchd runs.
type Mode int

const (
	// Host runs ovs-vswitchd in the test's own pid namespace, as on a host
	// or under systemd: its pidfile names it, and each start has a new pid.
	Host Mode = iota
	// PidNS runs ovs-vswitchd in a pid namespace of its own (`unshare --pid
	// --fork --mount-proc`), as in a container: it is pid 1 there, so its
	// pidfile says 1 and its socket is ovs-vswitchd.1.ctl on every start. In
	// the test's namespace, 1 names another process (init): tests must never
	// signal the pidfile's pid, only what the sandbox spawned.
	PidNS
)

// Modes lists every mode; restart tests run in each.
var Modes = []Mode{Host, PidNS}

func (m Mode) String() string {
	if m == PidNS {
		return "pidns"
	}
	return "host"
}

// ForEachMode runs f as a subtest in each mode.
func ForEachMode(t *testing.T, f func(t *testing.T, mode Mode)) {
	t.Helper()
	for _, m := range Modes {
		t.Run(m.String(), func(t *testing.T) { f(t, m) })
	}
}

// Sandbox is one test's private Open vSwitch.
type Sandbox struct {
	t    testing.TB
	Dir  string
	mode Mode
	// owner, when set, is the user the daemons run as (see StartOwnedBy).
	owner *Owner

	mu       sync.Mutex
	ovsdb    *proc
	vswitchd *proc
	// died lists the daemons that exited on their own and were replaced
	// since: stopAll reports them with the ones it finds dead.
	died []string
}

// proc is a daemon this sandbox started and therefore may stop. For an
// ovs-vswitchd in its own pid namespace, cmd is the unshare process and
// child the ovs-vswitchd it forked (its pid in the test's namespace).
type proc struct {
	name   string
	cmd    *exec.Cmd
	child  int
	exited chan struct{}
	err    error // cmd.Wait's result, set before exited is closed
	// ended is set before the sandbox signals the daemon to end it (stop,
	// a fatal SignalVSwitchd) or asks it to exit (ExitVSwitchd): an exit
	// without it is a crash, which fails the test.
	ended atomic.Bool
}

// target is the process signals go to: ovs-vswitchd itself.
func (p *proc) target() int {
	if p.child != 0 {
		return p.child
	}
	return p.cmd.Process.Pid
}

// diedOnItsOwn describes the daemon's exit if it exited without being told
// to; else "".
func (p *proc) diedOnItsOwn() string {
	if p == nil || p.alive() || p.ended.Load() {
		return ""
	}
	exit := "exit status 0"
	if p.err != nil {
		exit = p.err.Error()
	}
	return fmt.Sprintf("%s (pid %d) exited on its own: %s", p.name, p.target(), exit)
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
			testutil.SkipUnlessCI(t, "%s not found: install Open vSwitch (hack/install-ovs.sh or make test) to run this test", bin)
		}
	}
	if _, err := os.Stat(schemaPath); err != nil {
		t.Fatalf("OVSDB schema: %v", err)
	}
}

// RequireMode is Require, plus what the mode needs: a pid namespace takes
// root (CAP_SYS_ADMIN) and unshare(1).
func RequireMode(t testing.TB, mode Mode) {
	t.Helper()
	Require(t)
	if mode != PidNS {
		return
	}
	why := ""
	if _, err := exec.LookPath("unshare"); err != nil {
		why = "unshare(1) not found (util-linux)"
	} else if os.Geteuid() != 0 {
		why = "a pid namespace needs root"
	}
	if why != "" {
		testutil.SkipUnlessCI(t, "%s: skipping the pid-namespace mode", why)
	}
}

// New starts nothing yet: it prepares an empty sandbox folder, with
// ovs-vswitchd to run in the test's pid namespace. Most tests want Start
// instead.
func New(t testing.TB) *Sandbox {
	t.Helper()
	return NewIn(t, Host)
}

// NewIn is New with ovs-vswitchd to run in mode.
func NewIn(t testing.TB, mode Mode) *Sandbox {
	t.Helper()
	RequireMode(t, mode)
	// ovs-vswitchd.<pid>.ctl must fit in sun_path; t.TempDir can be long.
	dir := testutil.ShortTempDir(t, "ovs")
	s := &Sandbox{t: t, Dir: dir, mode: mode}
	t.Cleanup(s.stopAll)
	s.run("ovsdb-tool", "create", s.path("conf.db"), schemaPath)
	return s
}

// Start returns a sandbox with ovsdb-server and ovs-vswitchd running and the
// given netdev bridges configured.
func Start(t testing.TB, bridges ...string) *Sandbox {
	t.Helper()
	return StartIn(t, Host, bridges...)
}

// StartIn is Start with ovs-vswitchd running in mode.
func StartIn(t testing.TB, mode Mode, bridges ...string) *Sandbox {
	t.Helper()
	s := NewIn(t, mode)
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

// notRunning fails the test if the daemon *pp is running.
func (s *Sandbox) notRunning(pp **proc, name string) {
	s.t.Helper()
	s.mu.Lock()
	running := *pp != nil && (*pp).alive()
	s.mu.Unlock()
	if running {
		s.t.Fatal(name + " already running")
	}
}

// StartOVSDB starts ovsdb-server on the sandbox database and waits until it
// accepts clients.
func (s *Sandbox) StartOVSDB() {
	s.t.Helper()
	s.notRunning(&s.ovsdb, "ovsdb-server")
	p := s.spawn("ovsdb-server", "ovsdb-server", s.path("conf.db"),
		"--remote=punix:"+s.DBSocket(),
		"--unixctl="+s.path("ovsdb-server.ctl"),
		"--pidfile="+s.path("ovsdb-server.pid"),
		"--log-file="+s.path("ovsdb-server.log"),
		"-vconsole:off", "--no-chdir")
	s.mu.Lock()
	s.replace(&s.ovsdb, p)
	s.mu.Unlock()
	s.Eventually(10*time.Second, "ovsdb-server answers", func() bool {
		return exec.Command("ovs-vsctl", "--db=unix:"+s.DBSocket(), "--no-wait", "--timeout=1", "init").Run() == nil
	})
}

// Mode is where this sandbox runs ovs-vswitchd.
func (s *Sandbox) Mode() Mode { return s.mode }

// StartVSwitchd starts ovs-vswitchd and waits until it answers on the control
// socket its pidfile names (not merely until the socket file exists: it is
// bound before it listens, and a connection in between is refused). It
// returns the pid the pidfile holds, which is 1 in PidNS mode. Bridges may not
// be configured yet when it returns.
func (s *Sandbox) StartVSwitchd() int {
	s.t.Helper()
	s.StartVSwitchdNoWait()
	var pid int
	s.Eventually(20*time.Second, "the new ovs-vswitchd answering on its control socket", func() bool {
		pid = s.answeringPID()
		return pid != 0
	})
	return pid
}

// answeringPID returns the pidfile's pid once the process this sandbox
// started last answers "version" on the socket that pid names; else 0.
func (s *Sandbox) answeringPID() int {
	s.mu.Lock()
	p := s.vswitchd
	s.mu.Unlock()
	if p == nil || !p.alive() {
		return 0
	}
	if s.mode == PidNS && p.child == 0 {
		p.child = childOf(p.cmd.Process.Pid)
		if p.child == 0 {
			return 0
		}
	}
	b, err := os.ReadFile(s.path("ovs-vswitchd.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	if answersVersion(s.path("ovs-vswitchd."+strconv.Itoa(pid)+".ctl"), p.target()) {
		return pid
	}
	return 0
}

// childOf returns the first child of pid, or 0.
func childOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	c, _ := strconv.Atoi(f[0])
	return c
}

// answersVersion reports whether the process hostPID (in this pid
// namespace) listens on socket and answers a unixctl "version" request there.
func answersVersion(socket string, hostPID int) bool {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil || int(cred.Pid) != hostPID {
		return false
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(`{"id":0,"method":"version","params":[]}`)); err != nil {
		return false
	}
	var reply struct {
		Result *string `json:"result"`
	}
	return json.NewDecoder(c).Decode(&reply) == nil && reply.Result != nil
}

// StartVSwitchdNoWait starts ovs-vswitchd and returns at once, for tests of
// what happens while it starts, with the pid its pidfile will hold (1 in
// PidNS mode).
func (s *Sandbox) StartVSwitchdNoWait() int {
	s.t.Helper()
	s.notRunning(&s.vswitchd, "ovs-vswitchd")
	args := []string{"unix:" + s.DBSocket(),
		"--enable-dummy=override", "--disable-system",
		"--pidfile=" + s.path("ovs-vswitchd.pid"),
		"--log-file=" + s.path("ovs-vswitchd.log"),
		"-vconsole:off", "--no-chdir"}
	name := "ovs-vswitchd"
	if s.mode == PidNS {
		// --kill-child: ovs-vswitchd dies with unshare, so nothing outlives
		// the sandbox's cleanup.
		args = append([]string{"--pid", "--fork", "--mount-proc", "--kill-child", name}, args...)
		name = "unshare"
	}
	p := s.spawn("ovs-vswitchd", name, args...)
	s.mu.Lock()
	s.replace(&s.vswitchd, p)
	s.mu.Unlock()
	if s.mode == PidNS {
		return 1
	}
	return p.cmd.Process.Pid
}

// VSwitchdPID is the pid that the pidfile of the running ovs-vswitchd holds
// (1 in PidNS mode), or 0 when none runs. Never signal it: in PidNS mode it
// names another process in the test's namespace.
func (s *Sandbox) VSwitchdPID() int {
	if s.VSwitchdHostPID() == 0 {
		return 0
	}
	if s.mode == PidNS {
		return 1
	}
	return s.VSwitchdHostPID()
}

// VSwitchdHostPID is the pid, in the test's pid namespace, of the running
// ovs-vswitchd that this sandbox started, or 0.
func (s *Sandbox) VSwitchdHostPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.vswitchd
	if p == nil || !p.alive() {
		return 0
	}
	if s.mode == PidNS && p.child == 0 {
		p.child = childOf(p.cmd.Process.Pid)
	}
	if s.mode == PidNS {
		return p.child
	}
	return p.cmd.Process.Pid
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

// ExitVSwitchd asks ovs-vswitchd to exit over its control socket
// (`ovs-appctl exit`) and waits for it to exit.
func (s *Sandbox) ExitVSwitchd() {
	s.t.Helper()
	s.mu.Lock()
	p := s.vswitchd
	s.mu.Unlock()
	if p == nil || !p.alive() {
		s.t.Fatal("ovs-vswitchd is not running")
	}
	socket := s.path("ovs-vswitchd." + strconv.Itoa(s.VSwitchdPID()) + ".ctl")
	p.ended.Store(true)
	s.run("ovs-appctl", "-t", socket, "exit")
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		s.t.Fatal("ovs-vswitchd did not exit after ovs-appctl exit")
	}
}

// StopOVSDB stops ovsdb-server (SIGTERM) and waits for it to exit.
func (s *Sandbox) StopOVSDB() { s.stop(&s.ovsdb, syscall.SIGTERM) }

// KillOVSDB SIGKILLs ovsdb-server and waits for it to exit.
func (s *Sandbox) KillOVSDB() { s.stop(&s.ovsdb, syscall.SIGKILL) }

// RestartVSwitchd stops ovs-vswitchd and starts a new one; it returns the
// new pidfile pid (the same 1 again in PidNS mode).
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
	if s.mode == PidNS && s.VSwitchdHostPID() == 0 {
		s.t.Fatal("ovs-vswitchd's process in its pid namespace is not known yet")
	}
	if sig != syscall.SIGSTOP && sig != syscall.SIGCONT {
		p.ended.Store(true) // whatever follows, the test asked for it
	}
	if err := syscall.Kill(p.target(), sig); err != nil {
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
func Poll(d time.Duration, cond func() bool) bool { return testutil.Poll(d, cond) }

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

// spawn starts bin with args as the daemon called name.
func (s *Sandbox) spawn(name, bin string, args ...string) *proc {
	s.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = s.Env()
	cmd.Dir = s.Dir
	// Own process group, so a signal meant for the test runner does not reach it
	// and it cannot outlive cleanup unnoticed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s.runAsOwner(cmd)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p
}

// replace makes p the daemon *pp, remembering the one it replaces if that
// one died on its own. s.mu must be held.
func (s *Sandbox) replace(pp **proc, p *proc) {
	if why := (*pp).diedOnItsOwn(); why != "" {
		s.died = append(s.died, why)
	}
	*pp = p
}

func (s *Sandbox) stop(pp **proc, sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	p := *pp
	s.mu.Unlock()
	if p == nil || !p.alive() {
		return
	}
	p.ended.Store(true)
	if p.cmd.Args[0] == "unshare" && p.child == 0 {
		p.child = childOf(p.cmd.Process.Pid)
	}
	// Signals go to the process this sandbox spawned (for a pid namespace,
	// the ovs-vswitchd that unshare forked, checked to be its child), never
	// to a pid read from a pidfile.
	target := p.target()
	_ = syscall.Kill(target, syscall.SIGCONT) // a stopped process cannot act on SIGTERM
	_ = syscall.Kill(target, sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		// The whole process group: unshare and what it forked.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// stopAll stops whatever this sandbox still runs, by pid, and fails the test
// for each daemon that had exited without being told to (a crash the test
// may not have noticed), with the logs' tails.
func (s *Sandbox) stopAll() {
	s.mu.Lock()
	died := s.died
	for _, p := range []*proc{s.vswitchd, s.ovsdb} {
		if why := p.diedOnItsOwn(); why != "" {
			died = append(died, why)
		}
	}
	s.mu.Unlock()
	s.stop(&s.vswitchd, syscall.SIGTERM)
	s.stop(&s.ovsdb, syscall.SIGTERM)
	for _, why := range died {
		s.t.Errorf("%s: %s", s.Dir, why)
	}
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
	return fmt.Sprintf("ovs sandbox %s (%s mode, ovsdb-server %d, ovs-vswitchd %d)", s.Dir, s.mode, s.OVSDBPID(), s.VSwitchdHostPID())
}
