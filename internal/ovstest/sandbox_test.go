package ovstest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSandboxLifecycle(t *testing.T) {
	ForEachMode(t, func(t *testing.T, mode Mode) {
		s := StartIn(t, mode, "br-int")
		pid, hostPID := s.VSwitchdPID(), s.VSwitchdHostPID()
		require.NotZero(t, pid)
		require.NotZero(t, hostPID)
		if mode == PidNS {
			assert.Equal(t, 1, pid, "pid 1 of its own namespace")
			assert.NotEqual(t, 1, hostPID)
			// Its /proc says it lives in another pid namespace than ours.
			ours, err := os.Readlink("/proc/self/ns/pid")
			require.NoError(t, err)
			theirs, err := os.Readlink("/proc/" + strconv.Itoa(hostPID) + "/ns/pid")
			require.NoError(t, err)
			assert.NotEqual(t, ours, theirs)
		} else {
			assert.Equal(t, hostPID, pid)
		}
		b, err := os.ReadFile(filepath.Join(s.RunDir(), "ovs-vswitchd.pid"))
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(pid), strings.TrimSpace(string(b)))
		assert.LessOrEqual(t, len(filepath.Join(s.RunDir(), "ovs-vswitchd."+strconv.Itoa(pid)+".ctl")), maxSocketPath)
		s.Eventually(10*time.Second, "datapath_id", func() bool { return s.DatapathID("br-int") != "" })

		s.KillVSwitchd()
		assert.Zero(t, s.VSwitchdPID())
		_, err = os.Stat(filepath.Join(s.RunDir(), "ovs-vswitchd.pid"))
		assert.NoError(t, err, "SIGKILL leaves the pidfile behind, as a crash does")

		newPID := s.StartVSwitchd()
		if mode == PidNS {
			assert.Equal(t, pid, newPID, "the pid repeats")
		} else {
			assert.NotEqual(t, pid, newPID)
		}
		assert.NotEqual(t, hostPID, s.VSwitchdHostPID())
		s.SignalVSwitchd(syscall.SIGSTOP)
		s.StopVSwitchd() // must not hang on a stopped process
		<-s.VSwitchdExited()

		s.StartVSwitchd()
		s.ExitVSwitchd()
		assert.Zero(t, s.VSwitchdPID())
		assert.NoFileExists(t, filepath.Join(s.RunDir(), "ovs-vswitchd.pid"), "a clean exit removes the pidfile")
	})
}
