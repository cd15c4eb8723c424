package main

import (
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
)

var ovsgate string

func TestMain(m *testing.M) { os.Exit(testutil.MainWithOvsgate(m, &ovsgate, "", nil)) }

// buildAgent builds the example into the test's temporary directory.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "agent")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "build the agent: %s", out)
	return bin
}

// waitLines bounds the wait for the agent to log: it reacts within
// milliseconds; the rest is for a loaded machine.
const waitLines = 60 * time.Second

func count(out *testutil.SyncBuffer, sub string) int { return strings.Count(out.String(), sub) }

// TestAgent runs the example against a real serve and a sandbox OVS
// restarted in both process shapes: it replays its flows once per restart.
func TestAgent(t *testing.T) {
	agent := buildAgent(t)
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		s := ovstest.StartIn(t, mode, "br-int")
		path := filepath.Join(t.TempDir(), "run", "status.json")

		out := &testutil.SyncBuffer{}
		cmd := exec.Command(agent, "-status-file", path)
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				assert.NoError(t, err, "the agent's exit")
			case <-time.After(waitLines):
				_ = cmd.Process.Kill()
				<-exited
				t.Error("the agent did not stop on SIGTERM")
			}
			if t.Failed() {
				t.Logf("agent output:\n%s", out.String())
			}
		})
		require.True(t, testutil.Poll(waitLines, func() bool { return count(out, "waiting for Open vSwitch") == 1 }))

		d := testutil.StartOvsgate(t, ovsgate, nil, "serve", "--ovsdb", s.Endpoint(), "--ovs-rundir", s.RunDir(),
			"--status-file", path, "--health-probe-bind-address", "127.0.0.1:0", "--metrics-bind-address", "0")
		require.True(t, testutil.Poll(waitLines, func() bool { return count(out, "installing flows") == 1 }),
			"the agent saw ready")

		const restarts = 3
		for i := 1; i <= restarts; i++ {
			s.RestartVSwitchd()
			require.True(t, testutil.Poll(waitLines, func() bool { return count(out, "replaying flows") == i }),
				"restart %d replayed once", i)
		}
		require.NoError(t, d.Stop())
		require.True(t, testutil.Poll(waitLines, func() bool { return count(out, "ovsgate stopped") == 1 }))
		assert.Equal(t, restarts, count(out, "replaying flows"))
	})
}
