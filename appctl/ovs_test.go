package appctl_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

func connect(t testing.TB, s *ovstest.Sandbox) (appctl.Target, *appctl.Conn) {
	t.Helper()
	target, err := appctl.Discover(s.RunDir())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := appctl.Dial(ctx, target.Socket)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return target, c
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// installedVersion is what `ovs-vswitchd --version` prints: "3.1.0".
func installedVersion(t *testing.T) string {
	out, err := exec.Command("ovs-vswitchd", "--version").Output()
	require.NoError(t, err)
	line, _, _ := strings.Cut(string(out), "\n")
	fields := strings.Fields(line)
	require.NotEmpty(t, fields)
	return fields[len(fields)-1]
}

func TestRealVSwitchd(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	target, c := connect(t, s)
	assert.Equal(t, s.VSwitchdPID(), target.PID)
	assert.Equal(t, filepath.Join(s.RunDir(), "ovs-vswitchd."+strconv.Itoa(target.PID)+".ctl"), target.Socket)

	v, err := c.Version(callCtx(t))
	require.NoError(t, err)
	assert.Equal(t, installedVersion(t), v)

	fs, err := c.DPFeatures(callCtx(t), "br-int")
	require.NoError(t, err)
	recirc, ok := fs.Get("Recirc")
	require.True(t, ok)
	assert.Equal(t, true, recirc.Value)
	for _, name := range []string{"Max MPLS depth", "Max VLAN headers", "Sample nesting", "Max dp_hash algorithm"} {
		f, ok := fs.Get(name)
		require.True(t, ok, name)
		assert.IsType(t, int64(0), f.Value, name)
	}
	vlan, _ := fs.Get("max vlan headers")
	assert.Equal(t, int64(1), vlan.Value, "the dummy datapath's figure")

	_, err = c.DPFeatures(callCtx(t), "br-nope")
	assert.ErrorIs(t, err, appctl.ErrNoSuchBridge)
	var se *appctl.ServerError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "no such bridge", se.Text)

	_, err = c.Call(callCtx(t), "no/such-command")
	assert.ErrorIs(t, err, appctl.ErrNotRegistered)
	_, err = c.Call(callCtx(t), "dpif/show-dp-features")
	require.ErrorAs(t, err, &se)
	assert.Contains(t, se.Text, "requires at least 1 arguments")
	assert.NotErrorIs(t, err, appctl.ErrNotRegistered)

	// The connection survived the error replies.
	_, err = c.Version(callCtx(t))
	assert.NoError(t, err)
	select {
	case <-c.Done():
		t.Fatalf("connection lost: %v", c.Err())
	default:
	}
}

// A live OVS prints the titles of its release's fixture, in its order: the
// fixtures of the other releases, derived from their sources, are checked
// against the one release at hand.
func TestRealVSwitchdMatchesFixture(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	_, c := connect(t, s)
	v, err := c.Version(callCtx(t))
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join("testdata", "ovs-"+v+".txt"))
	if err != nil {
		testutil.SkipUnlessCI(t, "no fixture for the installed OVS %s: %v", v, err)
	}
	fs, err := c.DPFeatures(callCtx(t), "br-int")
	require.NoError(t, err)
	var want, got []string
	for line := range strings.Lines(string(b)) {
		name, _, _ := strings.Cut(line, ": ")
		want = append(want, name)
	}
	for _, f := range fs {
		got = append(got, f.Name)
	}
	assert.Equal(t, want, got)
}

func TestHeldConnectionSeesExit(t *testing.T) {
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		for _, tt := range []struct {
			name string
			stop func(*ovstest.Sandbox)
			// What a look at the run directory finds of the old instance:
			// a clean exit removes the pidfile and socket, SIGKILL leaves
			// both behind, and nobody listens on that socket any more.
			kind error
		}{
			{"StopVSwitchd", (*ovstest.Sandbox).StopVSwitchd, appctl.ErrNoPidfile},
			{"ExitVSwitchd", (*ovstest.Sandbox).ExitVSwitchd, appctl.ErrNoPidfile},
			{"KillVSwitchd", (*ovstest.Sandbox).KillVSwitchd, appctl.ErrRefused},
		} {
			t.Run(tt.name, func(t *testing.T) {
				s := ovstest.StartIn(t, mode, "br-int")
				old, c := connect(t, s)
				assert.Equal(t, s.VSwitchdHostPID(), c.PeerPID(), "the kernel names ovs-vswitchd's pid in our namespace")
				_, err := c.DPFeatures(callCtx(t), "br-int")
				require.NoError(t, err)

				tt.stop(s) // the connection is idle: no call in flight
				select {
				case <-c.Done():
				case <-time.After(10 * time.Second):
					t.Fatal("held connection did not see ovs-vswitchd exit")
				}
				assert.ErrorIs(t, c.Err(), appctl.ErrClosed)
				_, err = c.Version(callCtx(t))
				assert.ErrorIs(t, err, appctl.ErrUnreachable)

				target, err := appctl.Discover(s.RunDir())
				if err == nil {
					_, err = appctl.Dial(callCtx(t), target.Socket)
				}
				assert.ErrorIs(t, err, tt.kind)

				newPID := s.StartVSwitchd()
				if mode == ovstest.PidNS {
					assert.Equal(t, old.PID, newPID, "a pid namespace of its own: the same pid again")
				} else {
					assert.NotEqual(t, old.PID, newPID)
				}
				target, c2 := connect(t, s)
				assert.Equal(t, newPID, target.PID, "Discover names the new instance")
				assert.Equal(t, s.VSwitchdHostPID(), c2.PeerPID())
				s.Eventually(10*time.Second, "new instance answers", func() bool {
					_, err := c2.DPFeatures(callCtx(t), "br-int")
					return err == nil
				})
			})
		}
	})
}

// peerSocketEnv names the socket that this test binary, started again in a
// pid namespace of its own, connects to.
const peerSocketEnv = "APPCTL_TEST_PEER_SOCKET"

// Seen from a pid namespace that is neither ovs-vswitchd's nor an ancestor
// of it (ovsgate in its own container, sharing only the run directory), the
// kernel cannot name the peer: PeerPID is 0, and the socket still answers.
// The test binary runs this test again under unshare, where it dials.
func TestPeerInvisibleFromAnotherNamespace(t *testing.T) {
	if socket := os.Getenv(peerSocketEnv); socket != "" {
		c, err := appctl.Dial(callCtx(t), socket)
		require.NoError(t, err)
		defer c.Close()
		assert.Zero(t, c.PeerPID(), "a peer outside our pid namespace has no pid here")
		v, err := c.Version(callCtx(t))
		require.NoError(t, err)
		assert.Equal(t, installedVersion(t), v)
		return
	}
	ovstest.RequireMode(t, ovstest.PidNS)
	s := ovstest.StartIn(t, ovstest.PidNS, "br-int")
	self, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
		self, "-test.run=^TestPeerInvisibleFromAnotherNamespace$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), peerSocketEnv+"="+filepath.Join(s.RunDir(), "ovs-vswitchd.1.ctl"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "--- PASS: TestPeerInvisibleFromAnotherNamespace", "%s", out)
}

func TestRestartGivesNewPID(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	old, _ := connect(t, s)
	newPID := s.RestartVSwitchd()
	target, err := appctl.Discover(s.RunDir())
	require.NoError(t, err)
	assert.Equal(t, newPID, target.PID)
	assert.NotEqual(t, old.PID, target.PID)
	assert.NotEqual(t, old.Socket, target.Socket)
}

// Right after ovs-vswitchd starts, dp-features is not registered yet (or the
// bridge not configured, or the socket not there): each early answer must be
// one of the "not yet" classes, and a later call succeeds.
func TestStartupRace(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T) *ovstest.Sandbox // returns with ovs-vswitchd stopped and br-int configured
	}{
		{"bridge configured before the first start", func(t *testing.T) *ovstest.Sandbox {
			s := ovstest.New(t)
			s.StartOVSDB()
			s.VsctlNoWait("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
			return s
		}},
		{"restart of a configured instance", func(t *testing.T) *ovstest.Sandbox {
			s := ovstest.Start(t, "br-int")
			s.StopVSwitchd()
			return s
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.prepare(t)
			// The window in which the command is not registered yet lasts
			// until ovs-vswitchd has read its configuration: a few
			// milliseconds, which a query may miss. ovsdb-server, stopped
			// (SIGSTOP), holds it open until ovs-vswitchd has answered a
			// first query; then the race runs its course.
			ovsdb := s.OVSDBPID()
			require.NoError(t, syscall.Kill(ovsdb, syscall.SIGSTOP))
			resume := sync.OnceFunc(func() { assert.NoError(t, syscall.Kill(ovsdb, syscall.SIGCONT)) })
			t.Cleanup(resume)
			pid := s.StartVSwitchdNoWait()
			seen := map[string]int{}
			var unexpected []error
			// No pause between attempts.
			ok := false
			for deadline := time.Now().Add(time.Minute); !ok && time.Now().Before(deadline); {
				err := queryOnce(t, s, pid)
				switch {
				case err == nil:
					ok = true
				case errors.Is(err, appctl.ErrNotRegistered):
					seen["not registered"]++
					resume()
				case errors.Is(err, appctl.ErrNoSuchBridge):
					seen["no such bridge"]++
					resume()
				case errors.Is(err, appctl.ErrUnreachable):
					seen["unreachable"]++
				default:
					unexpected = append(unexpected, err)
					resume()
				}
			}
			t.Logf("answers before the first success: %v", seen)
			assert.Empty(t, unexpected, "every early answer means 'not yet'")
			require.True(t, ok, "dp-features never answered")
			assert.Positive(t, seen["not registered"], "the first answer of ovs-vswitchd, before its configuration, is 'not registered'")
		})
	}
}

// queryOnce does what a gate does on each attempt: Discover, Dial,
// DPFeatures. A pidfile that does not name pid yet counts as unreachable.
func queryOnce(t *testing.T, s *ovstest.Sandbox, pid int) error {
	target, err := appctl.Discover(s.RunDir())
	if err != nil {
		return err
	}
	if target.PID != pid {
		return appctl.ErrUnreachable
	}
	c, err := appctl.Dial(callCtx(t), target.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.DPFeatures(callCtx(t), "br-int")
	return err
}

// The same race held still: with OVSDB away, a new ovs-vswitchd has its
// control socket but no configuration, so dp-features is not registered yet;
// once OVSDB is back, the same question on the same connection succeeds.
func TestStartupRaceHeldOpen(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	s.StopVSwitchd()
	s.StopOVSDB()
	pid := s.StartVSwitchd()

	var c *appctl.Conn
	s.Eventually(10*time.Second, "control socket", func() bool {
		target, err := appctl.Discover(s.RunDir())
		if err != nil || target.PID != pid {
			return false
		}
		c, err = appctl.Dial(callCtx(t), target.Socket)
		return err == nil
	})
	t.Cleanup(func() { c.Close() })
	_, err := c.DPFeatures(callCtx(t), "br-int")
	assert.ErrorIs(t, err, appctl.ErrNotRegistered)
	var se *appctl.ServerError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, `"dpif/show-dp-features" is not a valid command (use "list-commands" to see a list of valid commands)`, se.Text)
	v, err := c.Version(callCtx(t))
	require.NoError(t, err, "version is registered from the start")
	assert.NotEmpty(t, v)

	s.StartOVSDB()
	seen := map[string]int{}
	s.Eventually(20*time.Second, "dp-features once configured", func() bool {
		_, err := c.DPFeatures(callCtx(t), "br-int")
		switch {
		case err == nil:
			return true
		case errors.Is(err, appctl.ErrNotRegistered):
			seen["not registered"]++
		case errors.Is(err, appctl.ErrNoSuchBridge):
			seen["no such bridge"]++
		default:
			t.Fatalf("unexpected answer: %v", err)
		}
		return false
	})
	t.Logf("answers before the first success: %v", seen)
}

// BenchmarkCall times one round trip on a held connection to a real
// ovs-vswitchd.
func BenchmarkCall(b *testing.B) {
	for _, call := range []struct {
		name string
		do   func(context.Context, *appctl.Conn) error
	}{
		{"DPFeatures", func(ctx context.Context, c *appctl.Conn) error { _, err := c.DPFeatures(ctx, "br-int"); return err }},
		{"Version", func(ctx context.Context, c *appctl.Conn) error { _, err := c.Version(ctx); return err }},
	} {
		b.Run(call.name, func(b *testing.B) {
			s := ovstest.Start(b, "br-int")
			_, c := connect(b, s)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b.ReportAllocs()
			for b.Loop() {
				if err := call.do(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestBatchRealVSwitchd(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	_, c := connect(t, s)
	res := c.Batch(callCtx(t),
		appctl.Request{Method: "version"},
		appctl.Request{Method: "dpif/show-dp-features", Args: []string{"br-missing"}},
		appctl.Request{Method: "dpif/show-dp-features", Args: []string{"br-int"}},
	)
	require.Len(t, res, 3)
	require.NoError(t, res[0].Err)
	assert.Contains(t, res[0].Text, installedVersion(t))
	assert.ErrorIs(t, res[1].Err, appctl.ErrNoSuchBridge)
	require.NoError(t, res[2].Err)
	fs, err := appctl.ParseDPFeatures(res[2].Text)
	require.NoError(t, err)
	assert.NotEmpty(t, fs)
	v, err := c.Version(callCtx(t))
	require.NoError(t, err, "the connection serves calls after a batch")
	assert.Equal(t, installedVersion(t), v)
}
