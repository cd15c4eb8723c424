package appctl_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/internal/ovstest"
)

func connect(t testing.TB, s *ovstest.Sandbox) (appctl.Target, *appctl.Conn) {
	t.Helper()
	target, err := appctl.Discover(s.RunDir())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := appctl.Dial(ctx, target.Socket)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return target, c
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRealVSwitchd(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	target, c := connect(t, s)
	assert.Equal(t, s.VSwitchdPID(), target.PID)

	v, err := c.Version(callCtx(t))
	require.NoError(t, err)
	assert.Regexp(t, `^\d+\.\d+\.\d+$`, v)

	fs, err := c.DPFeatures(callCtx(t), "br-int")
	require.NoError(t, err)
	recirc, ok := fs.Get("Recirc")
	require.True(t, ok)
	assert.Equal(t, true, recirc.Value)
	mpls, ok := fs.Get("Max MPLS depth")
	require.True(t, ok)
	assert.IsType(t, int64(0), mpls.Value)
	assert.Greater(t, len(fs), 20)

	_, err = c.DPFeatures(callCtx(t), "br-nope")
	assert.ErrorIs(t, err, appctl.ErrNoSuchBridge)
	_, err = c.Call(callCtx(t), "no/such-command")
	assert.ErrorIs(t, err, appctl.ErrNotRegistered)

	// The connection survived error replies.
	_, err = c.Version(callCtx(t))
	assert.NoError(t, err)
}

func TestHeldConnectionSeesExit(t *testing.T) {
	for _, tt := range []struct {
		name string
		stop func(*ovstest.Sandbox)
	}{
		{"SIGTERM", (*ovstest.Sandbox).StopVSwitchd},
		{"SIGKILL", (*ovstest.Sandbox).KillVSwitchd},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := ovstest.Start(t, "br-int")
			old, c := connect(t, s)
			tt.stop(s)
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("held connection did not see ovs-vswitchd exit")
			}
			assert.ErrorIs(t, c.Err(), appctl.ErrUnreachable)

			// After a crash the pidfile and socket stay: Dial is what tells.
			if target, err := appctl.Discover(s.RunDir()); err == nil {
				_, err = appctl.Dial(callCtx(t), target.Socket)
				assert.ErrorIs(t, err, appctl.ErrUnreachable)
			}

			newPID := s.StartVSwitchd()
			s.Eventually(10*time.Second, "new instance discovered", func() bool {
				target, err := appctl.Discover(s.RunDir())
				return err == nil && target.PID == newPID
			})
			assert.NotEqual(t, old.PID, newPID)
		})
	}
}

// Right after ovs-vswitchd starts, dp-features is not registered yet (or the
// bridge not configured, or the socket not there): each early answer must be
// one of the "not yet" classes, and a later call succeeds.
func TestStartupRace(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	s.StopVSwitchd()
	pid := s.StartVSwitchdNoWait()
	seen := map[string]int{}
	ok := ovstest.Poll(20*time.Second, func() bool {
		target, err := appctl.Discover(s.RunDir())
		if err == nil && target.PID != pid {
			err = appctl.ErrUnreachable // the old pidfile, not yet replaced
		}
		if err == nil {
			var c *appctl.Conn
			if c, err = appctl.Dial(callCtx(t), target.Socket); err == nil {
				_, err = c.DPFeatures(callCtx(t), "br-int")
				c.Close()
			}
		}
		switch {
		case err == nil:
			return true
		case errors.Is(err, appctl.ErrNotRegistered):
			seen["not registered"]++
		case errors.Is(err, appctl.ErrNoSuchBridge):
			seen["no such bridge"]++
		case errors.Is(err, appctl.ErrUnreachable):
			seen["unreachable"]++
		default:
			t.Fatalf("early answer of an unexpected class: %v", err)
		}
		return false
	})
	require.True(t, ok, "dp-features never answered")
	t.Logf("early answers before success: %v", seen)
	assert.NotEmpty(t, seen, "queried from the first moment, some early answer must have been 'not yet'")
}

func BenchmarkDPFeatures(b *testing.B) {
	s := ovstest.Start(b, "br-int")
	_, c := connect(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.DPFeatures(ctx, "br-int"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVersion(b *testing.B) {
	s := ovstest.Start(b, "br-int")
	_, c := connect(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Version(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// The same race held open: with OVSDB away, a new ovs-vswitchd has its
// control socket but no configuration, so dp-features is not registered yet;
// once OVSDB is back, the same question succeeds.
func TestStartupRaceHeldOpen(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	s.StopVSwitchd()
	s.StopOVSDB()
	pid := s.StartVSwitchd()

	var early error
	s.Eventually(10*time.Second, "control socket", func() bool {
		target, err := appctl.Discover(s.RunDir())
		if err != nil || target.PID != pid {
			return false
		}
		c, err := appctl.Dial(callCtx(t), target.Socket)
		if err != nil {
			return false
		}
		defer c.Close()
		_, early = c.DPFeatures(callCtx(t), "br-int")
		return true
	})
	assert.ErrorIs(t, early, appctl.ErrNotRegistered)
	var se *appctl.ServerError
	require.ErrorAs(t, early, &se)
	assert.Contains(t, se.Text, `"dpif/show-dp-features" is not a valid command`)

	s.StartOVSDB()
	_, c := connect(t, s)
	s.Eventually(10*time.Second, "dp-features once configured", func() bool {
		_, err := c.DPFeatures(callCtx(t), "br-int")
		return err == nil
	})
}
