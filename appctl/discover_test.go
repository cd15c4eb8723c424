package appctl

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
		sockPID  int
		want     bool
		contains string
	}{
		{name: "no pidfile", contains: "no pidfile"},
		{name: "empty pidfile", pidfile: "\n", contains: `holds "", not a pid`},
		{name: "garbage pidfile", pidfile: "not a pid\n", contains: `holds "not a pid", not a pid`},
		{name: "negative pid", pidfile: "-3\n", contains: `holds "-3", not a pid`},
		{name: "stale pid", pidfile: "DEAD\n", contains: "is not running (stale pidfile)"},
		{name: "stale pid and socket left by a crash", pidfile: "DEAD\n", socket: "stale", contains: "is not running (stale pidfile)"},
		{name: "live pid, no socket", pidfile: strconv.Itoa(live) + "\n", contains: "has no control socket"},
		{name: "pid 1 (EPERM as non-root) counts as running", pidfile: "1\n", contains: "has no control socket"},
		{name: "not a socket", pidfile: strconv.Itoa(live), socket: "file", contains: "is not a socket"},
		{name: "found", pidfile: strconv.Itoa(live) + "\n", socket: "sock", want: true},
		// In another pid namespace kill cannot see the pid, but the socket answers.
		{name: "pid of another namespace with a live socket", pidfile: "DEAD", socket: "sock", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := shortTempDir(t)
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
			assert.ErrorIs(t, err, ErrUnreachable)
			assert.Contains(t, err.Error(), tt.contains)
			assert.Equal(t, Target{}, target)
		})
	}
}
