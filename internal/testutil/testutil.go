package testutil

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer that a writer (a child process, a logger, a
// server's ErrorLog) and a polling test may use at the same time.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines splits what the buffer holds into lines; nil when it is empty.
func (b *SyncBuffer) Lines() []string {
	s := strings.TrimRight(b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// ShortTempDir returns a new temporary directory whose paths fit in a unix
// socket's sun_path (108 bytes), which t.TempDir's long names may not. It
// is removed when the test ends.
func ShortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// SkipUnlessCI skips the test, saying why, or fails it when the variable CI
// is set: a test that needs a real component (Open vSwitch, a pid
// namespace, a kube-apiserver) never silently skips in CI.
func SkipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format+" (CI must run this test)", args...)
	}
	t.Skipf(format, args...)
}

// RunUntilCleanup runs run on its own goroutine until stop is called or the
// test ends: then it cancels run's context and fails the test unless run
// returns nil within d. stop may be called more than once.
func RunUntilCleanup(t testing.TB, d time.Duration, run func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run returned %v", err)
				}
			case <-time.After(d):
				t.Errorf("run did not return within %s of its cancellation", d)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
