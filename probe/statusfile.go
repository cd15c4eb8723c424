package probe

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ovsgate/ovsgate/gate"
)

// DefaultStatusFile is serve's --status-file default. Mount its directory,
// not the file: a single-file bind mount keeps the old inode and never sees
// the renamed replacement.
const DefaultStatusFile = "/var/run/ovsgate/status.json"

// StatusFile writes the status to a file that readers never see half-written.
type StatusFile struct {
	path string
}

// NewStatusFile returns a writer for path.
func NewStatusFile(path string) *StatusFile { return &StatusFile{path: path} }

// Path is the file written.
func (f *StatusFile) Path() string { return f.path }

// Write replaces the file atomically: a temp file in the same directory,
// written, fsynced and renamed over the target, then the directory fsynced
// so the rename survives a crash.
func (f *StatusFile) Write(s gate.Status) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create status directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".*")
	if err != nil {
		return fmt.Errorf("create temp status file: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("write status file: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("chmod status file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync status file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close status file: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("replace status file: %w", err)
	}
	committed = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
