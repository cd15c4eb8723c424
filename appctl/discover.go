package appctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Target names one ovs-vswitchd instance.
type Target struct {
	PID    int
	Socket string
}

// Discover reads <rundir>/ovs-vswitchd.pid and returns the instance's control
// socket <rundir>/ovs-vswitchd.<pid>.ctl. Whether the process lives is left
// to Dial: the socket refuses connections once it is gone, and that works
// across pid namespaces, where the pid means nothing to us.
func Discover(rundir string) (Target, error) {
	pidfile := filepath.Join(rundir, "ovs-vswitchd.pid")
	b, err := os.ReadFile(pidfile)
	switch {
	case os.IsNotExist(err):
		return Target{}, fmt.Errorf("%w: no pidfile %s (ovs-vswitchd not running?)", ErrUnreachable, pidfile)
	case err != nil:
		return Target{}, fmt.Errorf("%w: read pidfile: %v", ErrUnreachable, err)
	}
	text := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(text)
	if err != nil || pid <= 0 {
		if len(text) > 32 {
			text = text[:32] + "..."
		}
		return Target{}, fmt.Errorf("%w: pidfile %s holds %q, not a pid", ErrUnreachable, pidfile, text)
	}
	socket := filepath.Join(rundir, fmt.Sprintf("ovs-vswitchd.%d.ctl", pid))
	fi, err := os.Stat(socket)
	switch {
	case os.IsNotExist(err):
		return Target{}, fmt.Errorf("%w: pid %d has no control socket %s (stale pidfile?)", ErrUnreachable, pid, socket)
	case err != nil:
		return Target{}, fmt.Errorf("%w: control socket: %v", ErrUnreachable, err)
	case fi.Mode()&os.ModeSocket == 0:
		return Target{}, fmt.Errorf("%w: %s is not a socket", ErrUnreachable, socket)
	}
	return Target{PID: pid, Socket: socket}, nil
}
