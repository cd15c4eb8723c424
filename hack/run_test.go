package hack

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

// runSh is one hack/run.sh (make run) started by a test.
type runSh struct {
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan struct{} // closed once it exited; then err is its Wait error
	err  error
}

type runEnv struct {
	bin, sandbox, rundir, probe, metrics string
}

func (e runEnv) command() *exec.Cmd {
	cmd := exec.Command("./run.sh")
	cmd.Env = append(os.Environ(), "SANDBOX="+e.sandbox, "RUN_DIR="+e.rundir,
		"PROBE_ADDR="+e.probe, "METRICS_ADDR="+e.metrics, "OVSGATE="+e.bin)
	return cmd
}

// startRun starts run.sh; when the test ends it is stopped as Ctrl-C would
// (SIGTERM to the process the test spawned) if it still runs.
func startRun(t *testing.T, e runEnv) *runSh {
	t.Helper()
	return startCmd(t, e.command())
}

// startCmd starts cmd, a run.sh, and stops it as startRun does.
func startCmd(t *testing.T, cmd *exec.Cmd) *runSh {
	t.Helper()
	r := &runSh{cmd: cmd, out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	require.NoError(t, r.cmd.Start())
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
			return
		default:
		}
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

func (r *runSh) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// wait returns run.sh's exit status once it exited, failing the test after d.
func (r *runSh) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(d):
		t.Fatalf("run.sh still runs after %s:\n%s", d, r.out)
	}
	var exit *exec.ExitError
	if errors.As(r.err, &exit) {
		return exit.ExitCode()
	}
	require.NoError(t, r.err)
	return 0
}

// probeClient keeps no idle connection (and so no goroutine) after a test.
var probeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func readyz(addr string) int {
	resp, err := probeClient.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// awaitReady reads the probe address ovsgate got from its start line, then
// polls /readyz until it answers 200; run.sh must not exit first. It returns
// the probe address.
func awaitReady(t *testing.T, r *runSh) (addr string) {
	t.Helper()
	addr, _ = testutil.ServeAddrs(t, r.out, r.done)
	ok := ovstest.Poll(2*time.Minute, func() bool {
		if r.exited() {
			return true
		}
		return readyz(addr) == http.StatusOK
	})
	require.False(t, r.exited(), "run.sh exited before ovsgate was ready:\n%s", r.out)
	require.True(t, ok, "/readyz never answered 200:\n%s", r.out)
	return addr
}

// buildOvsgate builds the binary run.sh runs, once for all of TestRun.
func buildOvsgate(t *testing.T) string {
	t.Helper()
	bin, err := testutil.BuildOvsgate(t.TempDir(), "")
	require.NoError(t, err)
	return bin
}

func TestRun(t *testing.T) {
	ovstest.Require(t)
	bin := buildOvsgate(t)
	newEnv := func(t *testing.T) runEnv {
		dir := testutil.ShortTempDir(t, "sb")
		// Whatever happens, the sandbox the test made run.sh start is stopped.
		t.Cleanup(func() {
			if r := sandbox(t, "stop", dir); r.code != 0 {
				t.Errorf("cleanup: ovs-sandbox.sh stop %s: %s", dir, r)
			}
		})
		return runEnv{bin: bin, sandbox: dir, rundir: t.TempDir(),
			probe: testutil.AnyPort, metrics: testutil.AnyPort}
	}

	t.Run("a second run is refused, Ctrl-C stops the first and its sandbox", func(t *testing.T) {
		e := newEnv(t)
		first := startRun(t, e)
		probe := awaitReady(t, first)

		// The lock refuses at once; wait's minute only bounds a hang.
		second := startRun(t, e)
		code := second.wait(t, time.Minute)
		assert.NotZero(t, code, "the second run.sh exited 0:\n%s", second.out)
		assert.Contains(t, second.out.String(), "another make run (hack/run.sh) is running with the sandbox "+e.sandbox)
		assert.NotContains(t, second.out.String(), "ovsgate serve is starting")
		assert.NotContains(t, second.out.String(), "OVS sandbox in")

		assert.Equal(t, http.StatusOK, readyz(probe), "the first run no longer ready:\n%s", first.out)
		r := sandbox(t, "status", e.sandbox)
		assert.Zero(t, r.code, "the sandbox of the first run: %s", r)

		require.NoError(t, first.cmd.Process.Signal(syscall.SIGINT))
		assert.Zero(t, first.wait(t, time.Minute), "%s", first.out)
		assert.Contains(t, first.out.String(), "run.sh: stopping ovsgate, then the sandbox in "+e.sandbox+"\n")
		r = sandbox(t, "status", e.sandbox)
		assert.Equal(t, 3, r.code, "%s", r)
		assert.Equal(t, "ovsdb-server: stopped\novs-vswitchd: stopped\n", r.stdout)
		assert.Empty(t, processesIn(e.sandbox), "processes left after Ctrl-C")
		assert.Zero(t, readyz(probe), "ovsgate still answers")
	})

	t.Run("a sandbox started by hand stays running", func(t *testing.T) {
		e := newEnv(t)
		mustSandbox(t, "start", e.sandbox, "br-int")
		vs, db := readOwner(t, e.sandbox, "ovs-vswitchd"), readOwner(t, e.sandbox, "ovsdb-server")
		run := startRun(t, e)
		awaitReady(t, run)

		require.NoError(t, run.cmd.Process.Signal(syscall.SIGINT))
		assert.Zero(t, run.wait(t, time.Minute), "%s", run.out)
		assert.Contains(t, run.out.String(), "run.sh: stopping ovsgate\n")
		assert.Contains(t, run.out.String(), "run.sh: leaving the sandbox in "+e.sandbox+" running")
		assert.Equal(t, vs, readOwner(t, e.sandbox, "ovs-vswitchd"))
		assert.Equal(t, db, readOwner(t, e.sandbox, "ovsdb-server"))
		assert.True(t, running(vs.pid) && running(db.pid), "run.sh stopped a sandbox it did not start")
	})

	t.Run("a port in use is refused before anything starts", func(t *testing.T) {
		e := newEnv(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		e.metrics = ln.Addr().String()

		run := startRun(t, e)
		assert.Equal(t, 1, run.wait(t, time.Minute), "%s", run.out)
		assert.Contains(t, run.out.String(), "the metrics address "+e.metrics+" is in use")
		assert.NoFileExists(t, filepath.Join(e.sandbox, ".ovsdb-server.owner"), "a sandbox was started")
		assert.Empty(t, processesIn(e.sandbox))
	})

	t.Run("ovsgate's failure is run.sh's", func(t *testing.T) {
		e := newEnv(t)
		e.bin = "/bin/false"
		run := startRun(t, e)
		assert.Equal(t, 1, run.wait(t, 2*time.Minute), "%s", run.out)
		assert.Contains(t, run.out.String(), "run.sh: ovsgate serve exited with status 1; stopping the sandbox in "+e.sandbox)
		assert.Empty(t, processesIn(e.sandbox), "processes left after ovsgate failed")
	})
}
