package status_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/status"
)

// binary is ovsgate built for the tests that read what a real serve writes.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testutil.MainWithOvsgate(m, &binary, "", func() error { return goleak.Find() }))
}

// eventTimeout bounds the wait for one event: a notification takes
// microseconds, the poll a second; the rest is room for a loaded machine.
const eventTimeout = 20 * time.Second

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func ts(sec int) *status.Timestamp {
	return &status.Timestamp{Time: t0.Add(time.Duration(sec) * time.Second)}
}

// sample is a status as serve writes it; since 0 means no instance answers.
func sample(ready bool, reason string, since int) status.Status {
	s := status.Status{
		Ready:   ready,
		Reason:  reason,
		Updated: status.Timestamp{Time: time.Now()},
		OVSDB:   status.OVSDB{Endpoint: "unix:/run/openvswitch/db.sock", Connected: true},
		Bridges: []status.Bridge{{Name: "br-int", Ready: ready, DatapathType: "netdev", Features: map[string]any{}}},
		Checks:  []status.Check{{Name: "ovsdb", OK: true}},
	}
	if since > 0 {
		s.VSwitchd = status.VSwitchd{PID: 1, Version: "3.1.0", Since: ts(since)}
	}
	return s
}

// replace writes s to path the way ovsgate does: a temp file in the same
// directory renamed over the target.
func replace(t testing.TB, path string, s status.Status) {
	t.Helper()
	b, err := json.MarshalIndent(s, "", "  ")
	require.NoError(t, err)
	replaceRaw(t, path, b)
}

func replaceRaw(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	require.NoError(t, os.WriteFile(tmp, b, 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "status.json")

	_, err := status.Read(path)
	require.ErrorIs(t, err, status.ErrMissing)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.Contains(t, err.Error(), "ovsgate has not written it")

	_, err = status.Read(filepath.Join(dir, "not-mounted", "status.json"))
	require.ErrorIs(t, err, status.ErrMissing)
	assert.Contains(t, err.Error(), "directory "+filepath.Join(dir, "not-mounted")+" does not exist")

	for name, body := range map[string][]byte{
		"garbage":      []byte("{\"ready\": tr"),
		"not a status": []byte("{}"),
		"too large":    []byte(`{"reason": "` + strings.Repeat("x", 2<<20) + `"}`),
	} {
		t.Run(name, func(t *testing.T) {
			replaceRaw(t, path, body)
			_, err := status.Read(path)
			assert.ErrorIs(t, err, status.ErrInvalid)
			assert.NotErrorIs(t, err, status.ErrMissing)
		})
	}

	want := sample(true, "", 5)
	replace(t, path, want)
	got, err := status.Read(path)
	require.NoError(t, err)
	assert.True(t, got.Ready)
	assert.True(t, want.VSwitchd.Since.Equal(got.VSwitchd.Since.Time))
	c, ok := got.Check("ovsdb")
	require.True(t, ok)
	assert.True(t, c.OK)
	_, ok = got.Check("vswitchd")
	assert.False(t, ok)
}

// TestReadWhileReplaced reads in a loop while the file is replaced 10,000
// times: every read must be one whole status.
func TestReadWhileReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	statuses := []status.Status{sample(true, "", 1), sample(false, "bridge br-int: waiting for datapath ID", 0)}
	replace(t, path, statuses[0])

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := range 10000 {
			b, _ := json.MarshalIndent(statuses[i%2], "", "  ")
			tmp := fmt.Sprintf("%s.%d.tmp", path, i)
			if os.WriteFile(tmp, b, 0o644) != nil || os.Rename(tmp, path) != nil {
				return
			}
		}
	}()
	defer wg.Wait()

	reads := 0
	for {
		s, err := status.Read(path)
		require.NoError(t, err)
		require.True(t, s.Ready == (s.Reason == ""), "a torn status: %+v", s)
		reads++
		select {
		case <-done:
			t.Logf("%d reads during 10,000 replacements, none torn or failed", reads)
			return
		default:
		}
	}
}

type watch struct {
	t  *testing.T
	ch <-chan status.Event
}

func startWatch(t *testing.T, path string) *watch {
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := status.Watch(ctx, path)
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		for range ch {
		}
	})
	return &watch{t: t, ch: ch}
}

// next returns the next event, failing the test when none comes in time.
func (w *watch) next() status.Event {
	w.t.Helper()
	select {
	case ev, ok := <-w.ch:
		require.True(w.t, ok, "the watch ended early")
		return ev
	case <-time.After(eventTimeout):
		w.t.Fatalf("no event within %s", eventTimeout)
		return status.Event{}
	}
}

func (w *watch) expect(typ status.EventType) status.Event {
	w.t.Helper()
	ev := w.next()
	require.Equal(w.t, typ, ev.Type, "event %+v", ev)
	return ev
}

func TestWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	w := startWatch(t, path)

	ev := w.expect(status.Missing)
	assert.ErrorIs(t, ev.Err, status.ErrMissing)

	replace(t, path, sample(false, "waiting for ovs-vswitchd", 0))
	assert.Equal(t, "waiting for ovs-vswitchd", w.expect(status.NotReady).Status.Reason)

	replace(t, path, sample(true, "", 1))
	assert.True(t, w.expect(status.Ready).Status.Ready)

	// ovs-vswitchd restarted between two writes: no not-ready status was
	// ever written, yet the new since says so.
	replace(t, path, sample(true, "", 2))
	assert.True(t, ts(2).Equal(w.expect(status.Restarted).Status.VSwitchd.Since.Time))

	// Lost, then a new instance: not ready, then the restart before ready.
	replace(t, path, sample(false, "ovs-vswitchd (pid 1) exited", 0))
	assert.Equal(t, "ovs-vswitchd (pid 1) exited", w.expect(status.NotReady).Status.Reason)
	replace(t, path, sample(true, "", 3))
	w.expect(status.Restarted)
	w.expect(status.Ready)

	// A file that is not a status is an error event, once; the watch goes on.
	replaceRaw(t, path, []byte("{\"ready\": tr"))
	assert.ErrorIs(t, w.expect(status.Error).Err, status.ErrInvalid)
	replaceRaw(t, path, []byte("{\"ready\": tr"))
	replace(t, path, sample(true, "", 3))
	// Still ready on the same instance: nothing to report; the next change is.
	stopped := sample(false, status.ReasonStopped, 3)
	replace(t, path, stopped)
	w.expect(status.Stopped)

	require.NoError(t, os.Remove(path))
	w.expect(status.Missing)
	replace(t, path, sample(true, "", 3))
	w.expect(status.Ready)
}

func TestWatchDirectoryLater(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "run", "ovsgate")
	path := filepath.Join(dir, "status.json")
	w := startWatch(t, path)
	ev := w.expect(status.Missing)
	assert.Contains(t, ev.Err.Error(), "directory "+dir+" does not exist")

	require.NoError(t, os.MkdirAll(dir, 0o755))
	replace(t, path, sample(true, "", 1))
	w.expect(status.Ready)

	// The directory removed and made again: the new one is watched.
	require.NoError(t, os.RemoveAll(dir))
	w.expect(status.Missing)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	replace(t, path, sample(false, "waiting for OVSDB", 0))
	w.expect(status.NotReady)
}

// TestWatchSlowReceiver replaces the file many times, each new instance
// shown by one write only, while nobody reads the events: every restart is
// reported when the receiver comes back.
func TestWatchSlowReceiver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	replace(t, path, sample(true, "", 1))
	reads := make(chan struct{}, 1)
	defer status.SetReadHook(func() {
		select {
		case reads <- struct{}{}:
		default:
		}
	})()
	w := startWatch(t, path)
	waitRead := func() {
		select {
		case <-reads:
		case <-time.After(eventTimeout):
			t.Fatal("the watch did not read the file")
		}
	}
	waitRead()
	const restarts = 200
	for i := 2; i <= restarts+1; i++ {
		replace(t, path, sample(true, "", i))
		// Pace by the watcher's reads, not by the receiver, which reads nothing yet.
		waitRead()
	}
	w.expect(status.Ready)
	for i := 2; i <= restarts+1; i++ {
		ev := w.expect(status.Restarted)
		require.True(t, ts(i).Equal(ev.Status.VSwitchd.Since.Time), "restart %d", i)
	}
}

func TestWait(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "status.json")

	replace(t, path, sample(true, "", 1))
	s, err := status.Wait(context.Background(), path)
	require.NoError(t, err)
	assert.True(t, s.Ready)

	replace(t, path, sample(false, "bridge br-int: waiting for datapath ID", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = status.Wait(ctx, path)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "not ready: bridge br-int: waiting for datapath ID")

	// Ready later, in a directory that does not exist yet.
	later := filepath.Join(dir, "later", "status.json")
	result := make(chan error, 1)
	go func() {
		_, err := status.Wait(context.Background(), later)
		result <- err
	}()
	require.NoError(t, os.MkdirAll(filepath.Dir(later), 0o755))
	replace(t, later, sample(false, "waiting for OVSDB", 0))
	replace(t, later, sample(true, "", 2))
	select {
	case err := <-result:
		require.NoError(t, err)
	case <-time.After(eventTimeout):
		t.Fatal("Wait did not return after the file said ready")
	}
}

// TestImports keeps the package light for the agents that link it: no
// OVSDB, Kubernetes, Prometheus or CLI library may come with it.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	allowed := []string{"github.com/ovsgate/ovsgate/status", "github.com/fsnotify/fsnotify", "golang.org/x/sys/"}
	var deps []string
	for _, p := range strings.Fields(string(out)) {
		deps = append(deps, p)
		ok := false
		for _, a := range allowed {
			ok = ok || p == a || strings.HasPrefix(p, a)
		}
		assert.True(t, ok, "the status package pulls in %s", p)
	}
	assert.Contains(t, deps, "github.com/fsnotify/fsnotify")
}

func TestEventTypeString(t *testing.T) {
	seen := map[string]bool{}
	for _, typ := range []status.EventType{status.Ready, status.NotReady, status.Restarted, status.Stopped, status.Missing, status.Error} {
		s := typ.String()
		assert.False(t, strings.HasPrefix(s, "EventType("), "%d has no name", typ)
		assert.False(t, seen[s], "%q twice", s)
		seen[s] = true
	}
	assert.Equal(t, "EventType(0)", status.EventType(0).String())
	assert.True(t, errors.Is(fmt.Errorf("x: %w", status.ErrDropped), status.ErrDropped))
}
