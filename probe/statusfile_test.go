package probe

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

func readStatus(t *testing.T, path string) gate.Status {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var s gate.Status
	require.NoError(t, json.Unmarshal(b, &s))
	return s
}

func TestStatusFileWrite(t *testing.T) {
	old := syscall.Umask(0o077) // a strict umask must not make the file unreadable
	defer syscall.Umask(old)

	base := t.TempDir()
	path := filepath.Join(base, "run", "ovsgate", "status.json")
	f := NewStatusFile(path)
	assert.Equal(t, path, f.Path())
	require.NoError(t, f.Write(status(true)))

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	assert.True(t, fi.Mode().IsRegular())
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	assert.True(t, di.IsDir(), "the directory is created")
	assert.Equal(t, os.FileMode(0o755), di.Mode().Perm())
	assert.True(t, readStatus(t, path).Ready)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, byte('\n'), b[len(b)-1])

	require.NoError(t, f.Write(status(false)))
	assert.False(t, readStatus(t, path).Ready, "the file is replaced")
	fi2, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi2.Mode().Perm())
	assert.False(t, os.SameFile(fi, fi2), "a new inode, renamed over the old one")
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temp files left behind")
	assert.Equal(t, "status.json", entries[0].Name())
}

func TestStatusFileErrors(t *testing.T) {
	// Run as root, permissions are no obstacle: a regular file where a
	// directory must be is.
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o644))
	tests := map[string]string{
		"directory is a file":          filepath.Join(blocker, "status.json"),
		"a parent directory is a file": filepath.Join(blocker, "sub", "status.json"),
		"target is a directory":        filepath.Join(dir, "isdir"),
	}
	require.NoError(t, os.Mkdir(filepath.Join(dir, "isdir"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "isdir", "keep"), nil, 0o644))
	for name, path := range tests {
		t.Run(name, func(t *testing.T) {
			err := NewStatusFile(path).Write(status(true))
			require.Error(t, err)
			assert.Contains(t, err.Error(), dir, "the error names the path")
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"file", "isdir"}, names, "no temp files left behind")
	b, err := os.ReadFile(blocker)
	require.NoError(t, err)
	assert.Empty(t, b)
}

// Readers that poll the file while it is replaced hundreds of times never
// see a partial or empty file, and every Write wins in order.
func TestStatusFileReadersNeverSeeHalf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	f := NewStatusFile(path)
	require.NoError(t, f.Write(status(false)))
	var stop atomic.Bool
	var reads, readyReads atomic.Int64
	var wg sync.WaitGroup
	stopReaders := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer stopReaders() // also when a write below fails the test
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				b, err := os.ReadFile(path)
				if !assert.NoError(t, err) {
					return
				}
				var s gate.Status
				if !assert.NoError(t, json.Unmarshal(b, &s), "read %q", b) {
					return
				}
				if !assert.Len(t, s.Checks, 4, "read %q", b) {
					return
				}
				reads.Add(1)
				if s.Ready {
					readyReads.Add(1)
				}
			}
		}()
	}
	const writes = 300
	for i := range writes {
		require.NoError(t, f.Write(status(i%2 == 0)))
	}
	stopReaders()
	assert.Positive(t, reads.Load())
	t.Logf("%d reads (%d ready) during %d writes", reads.Load(), readyReads.Load(), writes)
	assert.False(t, readStatus(t, path).Ready, "the last write (299: not ready) stays")
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temp files left behind")
}

// Concurrent writers on one StatusFile leave one valid file, no temp files.
func TestStatusFileConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	f := NewStatusFile(path)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				assert.NoError(t, f.Write(status((w+i)%2 == 0)))
			}
		}()
	}
	wg.Wait()
	readStatus(t, path)
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temp files left behind")
}

func BenchmarkStatusFileWrite(b *testing.B) {
	f := NewStatusFile(filepath.Join(b.TempDir(), "status.json"))
	s := status(true)
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Write(s); err != nil {
			b.Fatal(err)
		}
	}
}

// A daemon keeping the file logs a failing write once per distinct error,
// not once per status, and says when the file is writable again.
func TestStatusFileKeepLogsChangesOnly(t *testing.T) {
	logs, _ := testutil.CaptureKlog(t)
	dir := t.TempDir()
	blocker := filepath.Join(dir, "run")
	require.NoError(t, os.WriteFile(blocker, nil, 0o644)) // a file where the directory must be
	f := NewStatusFile(filepath.Join(blocker, "status.json"))
	for range 5 {
		f.Keep(status(true))
	}
	require.NoError(t, os.Remove(blocker))
	f.Keep(status(false))
	f.Keep(status(true))
	klog.Flush()
	lines := logs.Lines()
	require.Len(t, lines, 2, "%s", logs.String())
	assert.Contains(t, lines[0], "Cannot write the status file; probes still answer")
	assert.Contains(t, lines[1], "Status file writable again")
	assert.True(t, readStatus(t, f.Path()).Ready, "the last one kept")
}
