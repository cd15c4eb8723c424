package gate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/unixctltest"
)

// notRegisteredVSwitchd answers "version" like ovs-vswitchd and every other
// method as a freshly started one does before it has registered it.
var notRegisteredVSwitchd = unixctltest.VersionThen(func(req request, c *fakeCtl) { c.NotValid(req) })

// The bug this gate exists for, in the shape a container gives it: after a
// crash, a new ovs-vswitchd with the same pid number and socket name answers
// "version" but has not registered dp-features yet. What the old instance
// answered must not count: not ready until the new one answers for itself.
func TestNewInstanceWithTheSamePidIsNotTrusted(t *testing.T) {
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		s := ovstest.StartIn(t, mode, "br-int")
		h := startGate(t, Config{OVSDB: s.Endpoint(), RunDir: s.RunDir(), Bridges: []string{"br-int"}, RetryMax: 20 * time.Millisecond})
		first := h.waitFor(10*time.Second, "ready", readyOn(s.VSwitchdPID()))
		pid := first.VSwitchd.PID

		s.KillVSwitchd() // the pidfile stays, naming pid
		socket := filepath.Join(s.RunDir(), fmt.Sprintf("ovs-vswitchd.%d.ctl", pid))
		require.NoError(t, os.Remove(socket))
		t.Run("impostor", func(t *testing.T) {
			unixctltest.Serve(t, socket, notRegisteredVSwitchd)
			st := h.waitFor(5*time.Second, "the new instance's own answer", func(st State) bool {
				return st.Restarts == 1 && strings.Contains(st.Reason, "has not registered")
			})
			assert.Equal(t, fmt.Sprintf("bridge br-int: ovs-vswitchd (pid %d) has not registered dpif/show-dp-features yet", pid), st.Reason)
			assert.Equal(t, pid, st.VSwitchd.PID)
			require.NotNil(t, st.VSwitchd.Since)
			assert.True(t, st.VSwitchd.Since.After(first.VSwitchd.Since.Time), "since names the new instance")
			assert.True(t, checkOf(t, st, CheckVSwitchd).OK, "the new instance answers")
			assert.False(t, checkOf(t, st, DatapathCheck("br-int")).OK)
			// Retried for a while: never ready.
			retried := h.g.progress.Load()
			require.True(t, ovstest.Poll(5*time.Second, func() bool { return h.g.progress.Load() > retried+int64(200*time.Millisecond) }))
		})
		for _, st := range h.published() {
			if st.Ready {
				assert.Equal(t, first.VSwitchd.Since, st.VSwitchd.Since, "ready on the answers of an exited instance")
			}
		}

		s.StartVSwitchd()
		st := h.waitFor(10*time.Second, "ready on the real new instance", readyOnNewInstance(first))
		assert.Equal(t, uint64(2), st.Restarts)
	})
}

// controlledCPU is a main thread whose CPU time the test sets going or
// stops; it counts as a process started at tick 42.
type controlledCPU struct {
	mu      sync.Mutex
	used    time.Duration
	running bool
	since   time.Time
	fail    bool
}

func (c *controlledCPU) read(int) (time.Duration, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return 0, 0, errors.New("no such process")
	}
	used := c.used
	if c.running {
		used += time.Since(c.since)
	}
	return used, 42, nil
}

func (c *controlledCPU) set(running bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		c.used += time.Since(c.since)
	}
	c.running, c.since = running, time.Now()
}

// stallingVSwitchd answers like ovs-vswitchd while it is open and holds
// every request unanswered while it is not, then answers them in order.
type stallingVSwitchd struct {
	mu   sync.Mutex
	open chan struct{} // closed while open
}

func newStallingVSwitchd() *stallingVSwitchd {
	f := &stallingVSwitchd{open: make(chan struct{})}
	close(f.open)
	return f
}

func (f *stallingVSwitchd) setOpen(open bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.open:
		if !open {
			f.open = make(chan struct{})
		}
	default:
		if open {
			close(f.open)
		}
	}
}

func (f *stallingVSwitchd) serve(req request, c *fakeCtl) {
	f.mu.Lock()
	open := f.open
	f.mu.Unlock()
	select {
	case <-open:
		unixctltest.VSwitchd(req, c)
	case <-c.Done():
	}
}

// An unanswered call turns the gate not ready after the call timeout, with
// a reason that says whether ovs-vswitchd's main thread works (busy) or not
// (hung), or that it cannot be seen; the verdict follows the CPU as it
// changes, and an answer at last makes the same instance ready again.
func TestStalledVSwitchdBusyOrHung(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	s.Eventually(10*time.Second, "datapath ID", func() bool { return s.DatapathID("br-int") != "" })
	fake := newStallingVSwitchd()
	dir := unixctltest.RunDir(t, 2001, fake.serve)
	cpu := &controlledCPU{}
	h := startGate(t, Config{OVSDB: s.Endpoint(), RunDir: dir, Bridges: []string{"br-int"},
		CallTimeout: 300 * time.Millisecond, PingInterval: 20 * time.Millisecond}, withCPU(cpu.read))
	first := h.waitFor(10*time.Second, "ready on the fake", readyOn(2001))

	cpu.set(true)
	fake.setOpen(false)
	st := h.waitFor(5*time.Second, "busy", func(st State) bool { return st.Cause == CauseVSwitchdBusy })
	assert.Equal(t, "ovs-vswitchd (pid 2001) is busy: not answering within 300ms while its main thread uses CPU", st.Reason)
	assert.False(t, st.Ready)
	assert.Equal(t, first.VSwitchd.Since, st.VSwitchd.Since)

	cpu.set(false)
	st = h.waitFor(5*time.Second, "hung once the CPU stands still", func(st State) bool { return st.Cause == CauseVSwitchdNotAnswering })
	assert.Equal(t, "ovs-vswitchd (pid 2001) is hung: not answering within 300ms, and its main thread uses no CPU (stopped or deadlocked)", st.Reason)

	cpu.mu.Lock()
	cpu.fail = true
	cpu.mu.Unlock()
	st = h.waitFor(5*time.Second, "unknown once the CPU cannot be read", func(st State) bool { return strings.Contains(st.Reason, "cannot be seen") })
	assert.Equal(t, "ovs-vswitchd (pid 2001) is not answering within 300ms (busy or hung: its CPU time cannot be seen from here)", st.Reason)
	assert.Equal(t, CauseVSwitchdNotAnswering, st.Cause)

	fake.setOpen(true)
	st = h.waitFor(5*time.Second, "ready again on the same instance", ready)
	assert.Equal(t, first.VSwitchd.Since, st.VSwitchd.Since, "the held connection lived through the stall")
	assert.Zero(t, st.Restarts)
}

// A real busy ovs-vswitchd: 1,500 internal ports added in one transaction
// keep its main loop away from unixctl for a few seconds, while it burns
// CPU; then it answers again by itself. The stall must outlast the first
// verdict by a whole CPU sample (1 s): on a loaded machine the main thread
// may get no CPU tick in the first 100 ms window and read as hung, and
// only the next sample shows it busy.
func TestGateVSwitchdBusy(t *testing.T) {
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		s := ovstest.StartIn(t, mode, "br-int")
		h := startGate(t, Config{OVSDB: s.Endpoint(), RunDir: s.RunDir(), Bridges: []string{"br-int"},
			CallTimeout: 100 * time.Millisecond, PingInterval: 10 * time.Millisecond})
		first := h.waitFor(10*time.Second, "ready", ready)

		args := []string{}
		for i := range 1500 {
			name := fmt.Sprintf("p%d", i)
			args = append(args, "--", "add-port", "br-int", name, "--", "set", "interface", name, "type=internal")
		}
		s.VsctlNoWait(args...)
		st := h.waitFor(20*time.Second, "busy", func(st State) bool { return st.Cause == CauseVSwitchdBusy })
		assert.Equal(t, fmt.Sprintf("ovs-vswitchd (pid %d) is busy: not answering within 100ms while its main thread uses CPU", first.VSwitchd.PID), st.Reason)
		st = h.waitFor(60*time.Second, "ready after the stall", ready)
		assert.Equal(t, first.VSwitchd.Since, st.VSwitchd.Since)
		// With a 100ms window and CPU time counted in 10ms ticks, a
		// loaded machine may starve the main thread for a whole window;
		// with the default 5s that cannot happen. Say it if it did.
		var stalled time.Time
		for _, p := range h.published() {
			if p.Cause == CauseVSwitchdNotAnswering {
				t.Logf("read as hung for a moment: %s", p.Reason)
			}
			if !p.Ready && stalled.IsZero() && p.Updated.After(first.Updated.Time) {
				stalled = p.Updated.Time
			}
		}
		t.Logf("not ready for %s", st.Updated.Sub(stalled).Round(time.Millisecond))
	})
}

// A lost instance leaves a zero instance: nothing it said or was asked
// carries over to the next one, whatever fields instance gains. What
// outlives it is kept beside it, and the loss is the reason.
func TestLostInstanceIsZero(t *testing.T) {
	socket := unixctltest.Start(t, unixctltest.VSwitchd)
	conn, err := appctl.Dial(context.Background(), socket)
	require.NoError(t, err)
	cfg := Config{RunDir: filepath.Dir(socket)}
	cfg.setDefaults()
	v := newVSwitchd(&cfg)
	now := time.Now()
	v.serial, v.answered, v.tried = 3, 2, true
	v.cur = instance{conn: conn, serial: 3, pid: 7, peer: 70, peerStart: 9, version: "3.1.0", since: now, lastAnswer: now,
		op: &op{kind: opPing}, stall: stall{kind: stallHung, seen: true}}

	v.lose(now, appctl.ErrClosed)
	assert.Equal(t, instance{}, v.cur)
	assert.Equal(t, uint64(3), v.serial)
	assert.Equal(t, uint64(1), v.restarts())
	assert.True(t, v.tried)
	assert.Equal(t, absence{pid: 7, err: appctl.ErrClosed}, v.down)
	assert.Equal(t, v.down, v.gone)
	assert.Equal(t, now, v.nextLook, "an exit is looked after at once")
	select {
	case <-conn.Done():
	default:
		t.Fatal("the lost connection is still open")
	}
	vw := v.view(now)
	assert.False(t, vw.connected || vw.answering)
	assert.Equal(t, "ovs-vswitchd (pid 7) exited", vswitchdCheck(cfg.CallTimeout)(&inputs{vswitchd: vw}).msg)
}
