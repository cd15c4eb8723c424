package appctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Target names one ovs-vswitchd instance by its pidfile.
type Target struct {
	PID    int // as written in the pidfile
	Socket string
}

// Discover reads <rundir>/ovs-vswitchd.pid and returns the control socket it
// names, <rundir>/ovs-vswitchd.<pid>.ctl. Errors are ErrNoPidfile,
// ErrBadPidfile or ErrNoSocket, all ErrUnreachable.
//
// It never asks the kernel whether the pid runs: when ovs-vswitchd lives in
// a pid namespace of its own (a container), the number in its pidfile names
// some other process here, or none, and pid 1 always exists. The socket,
// shared through the run directory, is the only witness that holds in every
// namespace: Dial tells whether anything listens on it.
func Discover(rundir string) (Target, error) {
	pidfile := filepath.Join(rundir, "ovs-vswitchd.pid")
	b, err := os.ReadFile(pidfile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Target{}, fmt.Errorf("%w %s", ErrNoPidfile, pidfile)
	case err != nil:
		return Target{}, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	text := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(text)
	if err != nil || pid <= 0 {
		if len(text) > 32 {
			text = text[:32] + "..."
		}
		return Target{}, fmt.Errorf("%w: %s holds %q, not a pid", ErrBadPidfile, pidfile, text)
	}
	socket := filepath.Join(rundir, "ovs-vswitchd."+strconv.Itoa(pid)+".ctl")
	fi, err := os.Stat(socket)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Target{PID: pid}, fmt.Errorf("%w %s", ErrNoSocket, socket)
	case err != nil:
		return Target{PID: pid}, fmt.Errorf("%w: %w", ErrUnreachable, err)
	case fi.Mode()&os.ModeSocket == 0:
		return Target{PID: pid}, fmt.Errorf("%w: %s is not a socket", ErrNoSocket, socket)
	}
	return Target{PID: pid, Socket: socket}, nil
}
