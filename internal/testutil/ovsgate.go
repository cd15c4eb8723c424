package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BuildOvsgate builds the ovsgate command into dir, statically as the image
// does, with ldflags (may be empty), and returns the binary's path. It finds
// the module root above the working directory, so every package's tests can
// call it, from TestMain too.
func BuildOvsgate(dir, ldflags string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ovsgate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ovsgate: %w\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Result is one run of a command.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// RunOvsgate runs the binary bin with args and with env as its whole
// environment besides PATH, so that no OVSGATE_* variable of the test's own
// environment leaks in; it fails the test if bin cannot run or takes over
// a minute.
func RunOvsgate(t testing.TB, bin string, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.Code = ee.ExitCode()
	default:
		t.Fatalf("run %s %v: %v\nstderr: %s", bin, args, err, r.Stderr)
	}
	return r
}

// MainWithOvsgate is the body of a TestMain whose tests run the ovsgate
// binary: it builds it (with ldflags, may be empty) into a temporary
// directory, sets *bin, runs the tests, then, when they passed and
// leakCheck is given, runs it (goleak.Find, say) to catch what they left
// running. It returns the exit code for os.Exit.
func MainWithOvsgate(m *testing.M, bin *string, ldflags string, leakCheck func() error) int {
	dir, err := os.MkdirTemp("", "ovsgate-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildOvsgate(dir, ldflags); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if code == 0 && leakCheck != nil {
		if err := leakCheck(); err != nil {
			fmt.Fprintln(os.Stderr, "left running after the tests:", err)
			return 1
		}
	}
	return code
}
