package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// DefaultPath is where `ovsgate serve` writes the file unless told otherwise.
// Mount its directory into the agent's container, not the file: a bind
// mount of the single file keeps the old inode and never sees a replacement.
const DefaultPath = "/var/run/ovsgate/status.json"

// maxSize bounds what Read accepts: a real status is a few KiB, and a reader
// must not be made to allocate whatever sits at the path.
const maxSize = 1 << 20

var (
	// ErrMissing is returned (wrapped) when the file does not exist: ovsgate
	// has not written it yet, or its directory is not mounted. It also
	// matches fs.ErrNotExist.
	ErrMissing = errors.New("no status file")
	// ErrInvalid is returned (wrapped) when the file exists but is not a
	// status: unreadable, too large, or not the JSON ovsgate writes.
	ErrInvalid = errors.New("invalid status file")
)

// missingError says whether the file or its directory is missing.
type missingError struct {
	path    string
	dirGone bool
	err     error
}

func (e *missingError) Error() string {
	if e.dirGone {
		return fmt.Sprintf("%s: no status file: its directory %s does not exist (ovsgate not started, or the directory not mounted)",
			e.path, filepath.Dir(e.path))
	}
	return fmt.Sprintf("%s: no status file: ovsgate has not written it (not started yet, or another directory is mounted)", e.path)
}

func (e *missingError) Is(target error) bool { return target == ErrMissing || target == fs.ErrNotExist }
func (e *missingError) Unwrap() error        { return e.err }

// Read returns the status in the file at path. The file is replaced by
// rename, so what one Read returns is always one whole status. Errors match
// ErrMissing when the file (or its directory) is absent and ErrInvalid when
// it cannot be read or parsed.
func Read(path string) (Status, error) {
	b, err := readFile(path)
	if err != nil {
		return Status{}, err
	}
	return parse(path, b)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			_, derr := os.Stat(filepath.Dir(path))
			return nil, &missingError{path: path, dirGone: errors.Is(derr, fs.ErrNotExist), err: err}
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrInvalid, path, err)
	}
	if len(b) > maxSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalid, path, maxSize)
	}
	return b, nil
}

func parse(path string, b []byte) (Status, error) {
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
	}
	// A JSON document that is not a status (an empty object, say) has no
	// update time: every file ovsgate writes has one.
	if s.Updated.IsZero() {
		return Status{}, fmt.Errorf("%w: %s: no \"updated\" time: not an ovsgate status", ErrInvalid, path)
	}
	return s, nil
}
