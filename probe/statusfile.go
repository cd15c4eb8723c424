package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/errutil"
)

// DefaultStatusFile is serve's --status-file default. Mount its directory,
// not the file: a single-file bind mount keeps the old inode and never sees
// the renamed replacement.
const DefaultStatusFile = "/var/run/ovsgate/status.json"

// StatusFile writes the status to a file that readers never see half-written.
// Writes are serialised, so the file always ends with the last one.
type StatusFile struct {
	path string
	mu   sync.Mutex

	failMu  sync.Mutex
	failing string // the root of the error Keep last logged; "" while writes succeed
}

// NewStatusFile returns a writer for path.
func NewStatusFile(path string) *StatusFile { return &StatusFile{path: path} }

// Write replaces the file atomically: a temp file in the same directory
// (created 0755 if missing), written, fsynced, made 0644 and renamed over the
// target, then the directory fsynced so the rename survives a crash. On
// error no temp file is left behind.
func (f *StatusFile) Write(s gate.Status) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(f.path)
	if err := makeDir(dir); err != nil {
		return err
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
	return syncDir(dir)
}

// Keep writes s as Write does, for a daemon that keeps the file current:
// it logs a failure once per distinct error, and the recovery, rather than
// return it, since probes still answer.
func (f *StatusFile) Keep(s gate.Status) {
	err := f.Write(s)
	f.failMu.Lock()
	defer f.failMu.Unlock()
	switch {
	case err != nil && errutil.Root(err).Error() != f.failing:
		klog.ErrorS(err, "Cannot write the status file; probes still answer")
		f.failing = errutil.Root(err).Error()
	case err == nil && f.failing != "":
		klog.InfoS("Status file writable again")
		f.failing = ""
	}
}

// makeDir creates dir if it is missing, 0755 whatever the umask, so that
// readers in other containers can open the file in it.
func makeDir(dir string) error {
	if _, err := os.Stat(dir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil // exists, or an error that creating the temp file will report
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create status directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("create status directory: %w", err)
	}
	return nil
}

// syncDir makes a rename in dir durable. Filesystems that cannot sync a
// directory say EINVAL; there the rename is as durable as it gets.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open status directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("sync status directory: %w", err)
	}
	return nil
}
