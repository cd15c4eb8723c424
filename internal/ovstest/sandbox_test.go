package ovstest

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSandboxLifecycle(t *testing.T) {
	s := Start(t, "br-int")
	pid := s.VSwitchdPID()
	require.NotZero(t, pid)
	assert.LessOrEqual(t, len(filepath.Join(s.RunDir(), "ovs-vswitchd."+strconv.Itoa(pid)+".ctl")), maxSocketPath)
	s.Eventually(10*time.Second, "datapath_id", func() bool { return s.DatapathID("br-int") != "" })

	s.KillVSwitchd()
	assert.Zero(t, s.VSwitchdPID())
	_, err := os.Stat(filepath.Join(s.RunDir(), "ovs-vswitchd.pid"))
	assert.NoError(t, err, "SIGKILL leaves the pidfile behind, as a crash does")

	newPID := s.StartVSwitchd()
	assert.NotEqual(t, pid, newPID)
	s.SignalVSwitchd(syscall.SIGSTOP)
	s.StopVSwitchd() // must not hang on a stopped process
	<-s.VSwitchdExited()
}
