package appctl

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	return cmd.Process.Pid
}

func TestDiscover(t *testing.T) {
	live := os.Getpid()
	tests := []struct {
		name     string
		pidfile  string // "" for none
		socket   string // "sock" listening, "file" a regular file, "stale" a socket nobody listens on, "" none
		want     bool
		kind     error
		contains string
	}{
		{name: "no pidfile", kind: ErrNoPidfile, contains: "no pidfile "},
		{name: "empty pidfile", pidfile: "\n", kind: ErrBadPidfile, contains: `holds "", not a pid`},
		{name: "garbage pidfile", pidfile: "not a pid\n", kind: ErrBadPidfile, contains: `holds "not a pid", not a pid`},
		{name: "negative pid", pidfile: "-3\n", kind: ErrBadPidfile, contains: `holds "-3", not a pid`},
		{name: "stale pid, no socket", pidfile: "DEAD\n", kind: ErrNoSocket, contains: "no control socket "},
		{name: "live pid, no socket", pidfile: strconv.Itoa(live) + "\n", kind: ErrNoSocket, contains: "no control socket "},
		{name: "not a socket", pidfile: strconv.Itoa(live), socket: "file", kind: ErrNoSocket, contains: "is not a socket"},
		{name: "found", pidfile: strconv.Itoa(live) + "\n", socket: "sock", want: true},
		// Discover never asks the kernel about the pid: in a pid namespace
		// of its own, ovs-vswitchd's pid names nothing here (or init), and
		// only the socket tells. A socket left by a crash is found here,
		// and Dial says that nobody listens.
		{name: "pid of another namespace", pidfile: "DEAD", socket: "sock", want: true},
		{name: "pid 1, as in a container", pidfile: "1\n", socket: "sock", want: true},
		{name: "stale socket left by a crash", pidfile: "DEAD\n", socket: "stale", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testutil.ShortTempDir(t, "appctl")
			pid := live
			if tt.pidfile != "" {
				text := tt.pidfile
				if strings.HasPrefix(text, "DEAD") {
					pid = deadPID(t)
					text = strconv.Itoa(pid) + text[4:]
				} else if p, err := strconv.Atoi(strings.TrimSpace(text)); err == nil {
					pid = p
				}
				require.NoError(t, os.WriteFile(filepath.Join(dir, "ovs-vswitchd.pid"), []byte(text), 0o644))
			}
			socket := filepath.Join(dir, "ovs-vswitchd."+strconv.Itoa(pid)+".ctl")
			switch tt.socket {
			case "sock":
				ln, err := net.Listen("unix", socket)
				require.NoError(t, err)
				t.Cleanup(func() { ln.Close() })
			case "stale":
				ln, err := net.Listen("unix", socket)
				require.NoError(t, err)
				ln.(*net.UnixListener).SetUnlinkOnClose(false)
				ln.Close()
			case "file":
				require.NoError(t, os.WriteFile(socket, nil, 0o644))
			}

			target, err := Discover(dir)
			if tt.want {
				require.NoError(t, err)
				assert.Equal(t, Target{PID: pid, Socket: socket}, target)
				return
			}
			assert.ErrorIs(t, err, tt.kind)
			assert.ErrorIs(t, err, ErrUnreachable)
			assert.Contains(t, err.Error(), tt.contains)
			assert.Empty(t, target.Socket)
			if tt.pidfile != "" && !errors.Is(err, ErrBadPidfile) {
				assert.Equal(t, pid, target.PID, "the pid is known, for the reason")
			}
		})
	}
}
