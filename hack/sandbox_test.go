package hack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sandboxScript is run from this package's folder, where go test runs.
const sandboxScript = "./ovs-sandbox.sh"

// result is what one run of a script printed and how it ended.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runScript runs a script to its end (at most two minutes: the tests must
// hold on a loaded machine).
func runScript(t *testing.T, name string, args ...string) result {
	t.Helper()
	return runCmd(t, exec.Command(name, args...))
}

// runCmd runs cmd to its end, killing it after two minutes.
func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	timer := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	r := result{}
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
		}
		r.code = exit.ExitCode()
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

func sandbox(t *testing.T, args ...string) result {
	t.Helper()
	return runScript(t, sandboxScript, args...)
}

// mustSandbox runs ovs-sandbox.sh and fails the test unless it exits 0.
func mustSandbox(t *testing.T, args ...string) string {
	t.Helper()
	r := sandbox(t, args...)
	require.Zero(t, r.code, "ovs-sandbox.sh %s: %s", strings.Join(args, " "), r)
	return r.stdout
}

// startSandbox starts a sandbox in a new folder and stops it, through the
// script, when the test ends.
func startSandbox(t *testing.T, pidns bool, bridges ...string) string {
	t.Helper()
	dir := testutil.ShortTempDir(t, "sb")
	t.Cleanup(func() {
		if r := sandbox(t, "stop", dir); r.code != 0 {
			t.Errorf("cleanup: ovs-sandbox.sh stop %s: %s", dir, r)
		}
	})
	mustSandbox(t, append(startArgs(pidns, dir), bridges...)...)
	return dir
}

func startArgs(pidns bool, dir string) []string {
	if pidns {
		return []string{"start", "--pidns", dir}
	}
	return []string{"start", dir}
}

var modes = []struct {
	name  string
	pidns bool
}{
	{"host pid namespace", false},
	{"own pid namespace", true},
}

// owner is an ownership file: what the script spawned.
type owner struct {
	pid         int
	start, mode string
}

func readOwner(t *testing.T, dir, daemon string) owner {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "."+daemon+".owner"))
	require.NoError(t, err)
	f := strings.Fields(string(b))
	require.Len(t, f, 3, "ownership file of %s: %q", daemon, b)
	pid, err := strconv.Atoi(f[0])
	require.NoError(t, err)
	return owner{pid: pid, start: f[1], mode: f[2]}
}

func writeOwner(t *testing.T, dir, daemon, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "."+daemon+".owner"), []byte(content), 0o644))
}

// procStat is what /proc/PID/stat says of a process.
type procStat struct {
	state, start string
	pgrp         int
}

func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// Skip the command name, which may hold spaces and parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 20 {
		return procStat{}, false
	}
	pgrp, _ := strconv.Atoi(f[2])
	return procStat{state: f[0], pgrp: pgrp, start: f[19]}, true
}

// running reports whether pid is a live process (zombies are not).
func running(pid int) bool {
	s, ok := readProcStat(pid)
	return ok && s.state != "Z" && s.state != "X"
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// processesIn lists the live processes whose command line names dir: every
// daemon the script starts for dir does.
func processesIn(dir string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir+"/")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if running(pid) {
			found = append(found, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		}
	}
	return found
}

// initStart is the start time of this machine's pid 1, which nothing may touch.
func initStart(t *testing.T) string {
	t.Helper()
	s, ok := readProcStat(1)
	require.True(t, ok, "no pid 1")
	return s.start
}

func pidfile(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "ovs-vswitchd.pid"))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

func appctl(dir, pid string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ovs-appctl",
		append([]string{"--timeout=10", "-t", filepath.Join(dir, "ovs-vswitchd."+pid+".ctl")}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ovs-appctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// nsChild is the ovs-vswitchd that unshare forked into the new namespace.
func nsChild(t *testing.T, unsharePID int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", unsharePID, unsharePID))
	require.NoError(t, err)
	f := strings.Fields(string(b))
	require.Len(t, f, 1, "children of unshare")
	pid, err := strconv.Atoi(f[0])
	require.NoError(t, err)
	return pid
}

// nsPIDs is the NSpid line of /proc/PID/status: the pid in each namespace,
// outermost first.
func nsPIDs(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("no NSpid in /proc/%d/status", pid)
	return nil
}

func TestStartStatusStop(t *testing.T) {
	ovstest.Require(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			if m.pidns {
				ovstest.RequireMode(t, ovstest.PidNS)
			}
			t.Parallel()
			pid1 := initStart(t)
			dir := startSandbox(t, m.pidns, "br-int")

			vs, db := readOwner(t, dir, "ovs-vswitchd"), readOwner(t, dir, "ovsdb-server")
			for _, o := range []owner{vs, db} {
				st, ok := readProcStat(o.pid)
				require.True(t, ok)
				assert.Equal(t, o.start, st.start, "start time recorded for pid %d", o.pid)
				assert.Equal(t, o.pid, st.pgrp, "pid %d leads its own process group", o.pid)
			}
			assert.Equal(t, "ovsdb-server", comm(db.pid))
			ctlPID := strconv.Itoa(vs.pid)
			wantStatus := fmt.Sprintf("ovs-vswitchd: running, pid %d\n", vs.pid)
			if m.pidns {
				ctlPID = "1"
				wantStatus = fmt.Sprintf("ovs-vswitchd: running, pid %d (own pid namespace; pidfile says 1)\n", vs.pid)
				assert.Equal(t, "unshare", comm(vs.pid))
				child := nsChild(t, vs.pid)
				assert.Equal(t, "ovs-vswitchd", comm(child))
				assert.Equal(t, []string{strconv.Itoa(child), "1"}, nsPIDs(t, child))
				assert.Equal(t, "pidns", vs.mode)
			} else {
				assert.Equal(t, "ovs-vswitchd", comm(vs.pid))
			}
			assert.Equal(t, ctlPID, pidfile(t, dir))
			require.NoError(t, appctl(dir, ctlPID, "dpif/show-dp-features", "br-int"))

			r := sandbox(t, "status", dir)
			assert.Zero(t, r.code, "%s", r)
			assert.Equal(t, fmt.Sprintf("ovsdb-server: running, pid %d\n", db.pid)+wantStatus, r.stdout)

			// start reuses what runs, in the mode it runs in.
			out := mustSandbox(t, "start", dir, "br-int")
			assert.Contains(t, out, fmt.Sprintf("ovsdb-server: already running, pid %d", db.pid))
			assert.Contains(t, out, fmt.Sprintf("ovs-vswitchd: already running, pid %d", vs.pid))
			assert.Equal(t, vs, readOwner(t, dir, "ovs-vswitchd"))

			out = mustSandbox(t, "stop", dir)
			assert.Contains(t, out, fmt.Sprintf("ovs-vswitchd: stopped (pid %d)", vs.pid))
			assert.Contains(t, out, fmt.Sprintf("ovsdb-server: stopped (pid %d)", db.pid))
			assert.Empty(t, processesIn(dir), "processes left after stop")
			assert.NoFileExists(t, filepath.Join(dir, ".ovs-vswitchd.owner"))
			assert.NoFileExists(t, filepath.Join(dir, ".ovsdb-server.owner"))
			r = sandbox(t, "status", dir)
			assert.Equal(t, 3, r.code, "%s", r)
			assert.Equal(t, "ovsdb-server: stopped\novs-vswitchd: stopped\n", r.stdout)
			assert.Equal(t, pid1, initStart(t), "pid 1 was replaced")
		})
	}
}

// A crashed ovs-vswitchd (killed by the script or by hand) is replaced at
// once by start: a dying process must not pass for a running one.
func TestKillVSwitchdThenStart(t *testing.T) {
	ovstest.Require(t)
	for _, m := range modes {
		for _, byHand := range []bool{false, true} {
			name := m.name + "/kill-vswitchd"
			if byHand {
				name = m.name + "/SIGKILL by hand"
			}
			t.Run(name, func(t *testing.T) {
				if m.pidns {
					ovstest.RequireMode(t, ovstest.PidNS)
				}
				t.Parallel()
				dir := startSandbox(t, m.pidns, "br-int")
				old := readOwner(t, dir, "ovs-vswitchd")
				ctlPID := func(o owner) string {
					if m.pidns {
						return "1"
					}
					return strconv.Itoa(o.pid)
				}

				if byHand {
					st, ok := readProcStat(old.pid)
					require.True(t, ok)
					require.Equal(t, old.start, st.start, "pid %d is no longer the ovs-vswitchd the script started", old.pid)
					require.NoError(t, syscall.Kill(-old.pid, syscall.SIGKILL))
				} else {
					out := mustSandbox(t, "kill-vswitchd", dir)
					assert.Contains(t, out, fmt.Sprintf("ovs-vswitchd: SIGKILL sent to process group %d\n", old.pid))
					assert.Contains(t, out, fmt.Sprintf("ovs-vswitchd: pid %d gone", old.pid))
					assert.False(t, running(old.pid), "pid %d still runs", old.pid)
					// As after a crash, the pidfile and socket stay behind.
					assert.Equal(t, ctlPID(old), pidfile(t, dir))
					assert.FileExists(t, filepath.Join(dir, "ovs-vswitchd."+ctlPID(old)+".ctl"))
				}

				out := mustSandbox(t, "start", dir)
				assert.Contains(t, out, "ovs-vswitchd: started, pid")
				assert.False(t, running(old.pid), "pid %d still runs", old.pid)
				cur := readOwner(t, dir, "ovs-vswitchd")
				assert.NotEqual(t, old.pid, cur.pid)
				assert.True(t, running(cur.pid))
				assert.Equal(t, ctlPID(cur), pidfile(t, dir))
				require.NoError(t, appctl(dir, ctlPID(cur), "version"))
				require.NoError(t, appctl(dir, ctlPID(cur), "dpif/show-dp-features", "br-int"))
			})
		}
	}
}

// Each daemon can be stopped and started alone.
func TestOneDaemonAtATime(t *testing.T) {
	ovstest.Require(t)
	t.Parallel()
	dir := startSandbox(t, false, "br-int")
	vs, db := readOwner(t, dir, "ovs-vswitchd"), readOwner(t, dir, "ovsdb-server")

	mustSandbox(t, "stop-ovsdb", dir)
	assert.False(t, running(db.pid), "ovsdb-server still runs")
	assert.True(t, running(vs.pid), "stop-ovsdb stopped ovs-vswitchd")
	require.NoError(t, appctl(dir, strconv.Itoa(vs.pid), "version"))
	r := sandbox(t, "status", dir)
	assert.Equal(t, 3, r.code, "%s", r)
	assert.Equal(t, fmt.Sprintf("ovsdb-server: stopped\novs-vswitchd: running, pid %d\n", vs.pid), r.stdout)

	mustSandbox(t, "start-ovsdb", dir)
	mustSandbox(t, "restart-vswitchd", dir)
	cur := readOwner(t, dir, "ovs-vswitchd")
	assert.NotEqual(t, vs.pid, cur.pid)
	assert.False(t, running(vs.pid), "the old ovs-vswitchd still runs")
	// It reconfigures from the restarted ovsdb-server: add-br waits for it.
	mustSandbox(t, "start", dir, "br-ex")
	require.NoError(t, appctl(dir, strconv.Itoa(cur.pid), "dpif/show-dp-features", "br-ex"))

	mustSandbox(t, "restart-ovsdb", dir)
	assert.True(t, running(cur.pid), "restart-ovsdb stopped ovs-vswitchd")
	r = sandbox(t, "status", dir)
	assert.Zero(t, r.code, "%s", r)
}

// vswitchdState is the state letter of the ovs-vswitchd process itself (in
// its own pid namespace: the child of unshare, which the script started).
func vswitchdState(t *testing.T, o owner) string {
	t.Helper()
	pid := o.pid
	if o.mode == "pidns" {
		pid = nsChild(t, o.pid)
	}
	require.Equal(t, "ovs-vswitchd", comm(pid))
	st, ok := readProcStat(pid)
	require.True(t, ok, "ovs-vswitchd (pid %d) is gone", pid)
	return st.state
}

// pause-vswitchd makes ovs-vswitchd hung as ovsgate check sees it (alive,
// answering nothing, using no CPU), resume-vswitchd makes the same instance
// answer again; stop works on a paused one too.
func TestPauseResumeVSwitchd(t *testing.T) {
	ovstest.Require(t)
	bin := buildOvsgate(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			if m.pidns {
				ovstest.RequireMode(t, ovstest.PidNS)
			}
			dir := startSandbox(t, m.pidns, "br-int")
			vs := readOwner(t, dir, "ovs-vswitchd")
			ctlPID := pidfile(t, dir)
			check := func() testutil.Result {
				return testutil.RunOvsgate(t, bin, nil, "check", "--ovsdb", "unix:"+dir+"/db.sock", "--ovs-rundir", dir)
			}
			r := check()
			require.Zero(t, r.Code, "ready before the pause: %s%s", r.Stdout, r.Stderr)

			out := mustSandbox(t, "pause-vswitchd", dir)
			assert.Equal(t, fmt.Sprintf("ovs-vswitchd: paused (SIGSTOP to process group %d); hack/ovs-sandbox.sh resume-vswitchd %s continues it\n", vs.pid, dir), out)
			assert.Equal(t, "T", vswitchdState(t, vs), "ovs-vswitchd is stopped")
			assert.Equal(t, fmt.Sprintf("ovs-vswitchd: already paused (process group %d)\n", vs.pid), mustSandbox(t, "pause-vswitchd", dir))
			st := sandbox(t, "status", dir)
			assert.Zero(t, st.code, "a paused ovs-vswitchd still runs: %s", st)
			assert.Contains(t, st.stdout, ", paused (resume-vswitchd continues it)\n")

			hung := regexp.MustCompile(`(?m)^NOT READY: ovs-vswitchd \(pid ` + ctlPID + `\) is hung: `)
			ok := testutil.Poll(time.Minute, func() bool {
				r = check()
				return r.Code == 1 && hung.MatchString(r.Stdout)
			})
			require.True(t, ok, "check never called the paused ovs-vswitchd hung; last:\nexit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			t.Logf("paused: %s", strings.SplitN(r.Stdout, "\n", 2)[0])

			out = mustSandbox(t, "resume-vswitchd", dir)
			assert.Equal(t, fmt.Sprintf("ovs-vswitchd: resumed (SIGCONT to process group %d)\n", vs.pid), out)
			assert.NotEqual(t, "T", vswitchdState(t, vs), "ovs-vswitchd runs again")
			assert.Equal(t, fmt.Sprintf("ovs-vswitchd: not paused (process group %d)\n", vs.pid), mustSandbox(t, "resume-vswitchd", dir))
			ok = testutil.Poll(time.Minute, func() bool {
				r = check()
				return r.Code == 0
			})
			require.True(t, ok, "check never ready after resume-vswitchd; last:\nexit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			assert.True(t, strings.HasPrefix(r.Stdout, "READY\n"), r.Stdout)
			assert.Equal(t, vs, readOwner(t, dir, "ovs-vswitchd"), "the same instance")
			assert.Equal(t, ctlPID, pidfile(t, dir))

			// stop does not wait for a paused ovs-vswitchd to run again.
			mustSandbox(t, "pause-vswitchd", dir)
			out = mustSandbox(t, "stop", dir)
			assert.Contains(t, out, fmt.Sprintf("ovs-vswitchd: stopped (pid %d)\n", vs.pid))
			assert.Empty(t, processesIn(dir), "processes left after stop")
		})
	}
}

// sleeper starts a process the script has nothing to do with, ended when
// the test ends.
func sleeper(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// The script signals only what it spawned: never a pid read from a
// pidfile, never one its ownership file names but that is not its process.
func TestStopSignalsOnlyWhatItStarted(t *testing.T) {
	pid1 := initStart(t)
	for _, tc := range []struct {
		name  string
		owner func(victim int) string // the forged .ovs-vswitchd.owner; "" for none
		code  int
	}{
		{"pidfile only", func(int) string { return "" }, 0},
		{"wrong start time", func(victim int) string { return fmt.Sprintf("%d 1 host\n", victim) }, 1},
		{"not a process group leader", func(victim int) string {
			st, _ := readProcStat(victim)
			return fmt.Sprintf("%d %s host\n", victim, st.start)
		}, 1},
		{"pid 1", func(int) string { return "1 " + pid1 + " host\n" }, 1},
		{"garbage", func(int) string { return "-1\n" }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := testutil.ShortTempDir(t, "sb")
			victim := sleeper(t)
			for _, f := range []string{"ovs-vswitchd.pid", "ovsdb-server.pid"} {
				require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte(strconv.Itoa(victim)+"\n"), 0o644))
			}
			forged := tc.owner(victim)
			if forged != "" {
				writeOwner(t, dir, "ovs-vswitchd", forged)
			}

			for _, verb := range []string{"stop", "kill-vswitchd", "pause-vswitchd", "resume-vswitchd"} {
				r := sandbox(t, verb, dir)
				assert.True(t, running(victim), "%s signalled pid %d", verb, victim)
				st, _ := readProcStat(victim)
				assert.NotEqual(t, "T", st.state, "%s stopped pid %d", verb, victim)
				assert.Equal(t, pid1, initStart(t), "pid 1 was replaced")
				if verb == "stop" {
					assert.Equal(t, tc.code, r.code, "%s", r)
					if forged != "" {
						assert.Contains(t, r.stderr, "ovs-vswitchd: refusing to signal anything", "%s", r)
					}
				} else {
					assert.Equal(t, 1, r.code, "%s", r) // nothing of ours to signal
					if forged == "" {
						assert.Contains(t, r.stderr, "ovs-vswitchd: not running in "+dir, "%s", r)
					}
				}
				assert.NoFileExists(t, filepath.Join(dir, ".ovs-vswitchd.owner"), "stale ownership file kept")
			}
		})
	}

	// With the real daemons running too: they stop, the pidfiles' pid does not.
	t.Run("pidfiles overwritten", func(t *testing.T) {
		ovstest.Require(t)
		t.Parallel()
		dir := startSandbox(t, false, "br-int")
		victim := sleeper(t)
		for _, f := range []string{"ovs-vswitchd.pid", "ovsdb-server.pid"} {
			require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte(strconv.Itoa(victim)+"\n"), 0o644))
		}
		mustSandbox(t, "stop", dir)
		assert.True(t, running(victim), "stop signalled the pid in the pidfile")
		assert.Empty(t, processesIn(dir), "processes left after stop")
	})
}

func TestUsage(t *testing.T) {
	verbs := []string{"start", "stop", "start-vswitchd", "stop-vswitchd", "kill-vswitchd", "restart-vswitchd",
		"pause-vswitchd", "resume-vswitchd", "start-ovsdb", "stop-ovsdb", "restart-ovsdb", "status", "env"}
	for _, args := range [][]string{
		{"frobnicate"},
		{},
		{"start", "--bogus"},
		{"stop", "--pidns"},
		{"stop", "/tmp/sb-unused", "extra"},
	} {
		t.Run(strings.Join(append([]string{"args"}, args...), " "), func(t *testing.T) {
			t.Parallel()
			r := sandbox(t, args...)
			assert.Equal(t, 2, r.code, "%s", r)
			assert.Empty(t, r.stdout)
			assert.Contains(t, r.stderr, "usage: hack/ovs-sandbox.sh VERB")
			for _, v := range verbs {
				assert.Contains(t, r.stderr, "\n  "+v+" ", "usage lists %s", v)
			}
			assert.Contains(t, r.stderr, "--pidns runs ovs-vswitchd")
		})
	}
}

func TestRefusesTheSystemFolder(t *testing.T) {
	for _, dir := range []string{"/var/run/openvswitch", "/run/openvswitch/", "/run/../run/openvswitch"} {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			r := sandbox(t, "stop", dir)
			assert.Equal(t, 1, r.code, "%s", r)
			assert.Contains(t, r.stderr, "refusing to use the system OVS folder /run/openvswitch")
		})
	}
}
