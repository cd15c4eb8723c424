package appctl

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Target names one ovs-vswitchd instance.
type Target struct {
	PID    int
	Socket string
}

// Discover reads <rundir>/ovs-vswitchd.pid and returns the instance's control
// socket <rundir>/ovs-vswitchd.<pid>.ctl. Errors wrap ErrUnreachable and say
// what is wrong: no pidfile, a pidfile without a pid, a pid that is not
// running (a stale pidfile), or a missing control socket.
func Discover(rundir string) (Target, error) {
	pidfile := filepath.Join(rundir, "ovs-vswitchd.pid")
	b, err := os.ReadFile(pidfile)
	switch {
	case errors.Is(err, os.ErrNotExist):
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
	socket := filepath.Join(rundir, "ovs-vswitchd."+strconv.Itoa(pid)+".ctl")
	if !running(pid) && !answers(socket) {
		return Target{}, fmt.Errorf("%w: pid %d from %s is not running (stale pidfile)", ErrUnreachable, pid, pidfile)
	}
	fi, err := os.Stat(socket)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Target{}, fmt.Errorf("%w: ovs-vswitchd (pid %d) has no control socket %s (yet?)", ErrUnreachable, pid, socket)
	case err != nil:
		return Target{}, fmt.Errorf("%w: control socket: %v", ErrUnreachable, err)
	case fi.Mode()&os.ModeSocket == 0:
		return Target{}, fmt.Errorf("%w: %s is not a socket", ErrUnreachable, socket)
	}
	return Target{PID: pid, Socket: socket}, nil
}

// running reports whether a process with this pid exists; one we may not
// signal (EPERM) exists.
func running(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// answers reports whether something accepts connections on socket. It
// decides for a pid that kill does not see: in a container without the host
// pid namespace the pid in the pidfile means nothing here, yet the socket,
// shared through the run directory, still reaches the live process.
func answers(socket string) bool {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
