package probe

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/gate"
)

func TestStatusFileWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "ovsgate", "status.json")
	f := NewStatusFile(path)
	require.NoError(t, f.Write(status(true)))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	var got gate.Status
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &got))
	assert.True(t, got.Ready)

	require.NoError(t, f.Write(status(false)))
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temp files left behind")
}

func TestStatusFileUnwritable(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o644))
	err := NewStatusFile(filepath.Join(blocker, "status.json")).Write(status(true))
	require.Error(t, err, "a regular file where the directory should be")

	// Replacing a directory with the file must fail too, and leave nothing.
	target := filepath.Join(dir, "isdir")
	require.NoError(t, os.Mkdir(target, 0o755))
	require.Error(t, NewStatusFile(target).Write(status(true)))
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 2)
}

// Readers that poll the file while it is replaced hundreds of times never
// see a partial or empty file.
func TestStatusFileReadersNeverSeeHalf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	f := NewStatusFile(path)
	require.NoError(t, f.Write(status(false)))
	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
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
				reads.Add(1)
			}
		}()
	}
	for i := 0; i < 300; i++ {
		require.NoError(t, f.Write(status(i%2 == 0)))
	}
	stop.Store(true)
	wg.Wait()
	assert.Positive(t, reads.Load())
}
