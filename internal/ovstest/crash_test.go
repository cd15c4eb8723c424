package ovstest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// errorRecorder is the test's testing.TB, but Errorf only records: what
// the sandbox reports at cleanup can be checked instead of failing the test.
type errorRecorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *errorRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *errorRecorder) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// A daemon that exits without the sandbox having ended it (a crash, here a
// SIGKILL from outside the sandbox) fails the test at cleanup, also when a
// new one was started since; the ways the sandbox ends a daemon do not.
func TestSandboxReportsDaemonsThatDied(t *testing.T) {
	crash := func(t *testing.T, pid int) {
		t.Helper()
		require.NotZero(t, pid)
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	}
	ForEachMode(t, func(t *testing.T, mode Mode) {
		for _, tt := range []struct {
			name string
			act  func(t *testing.T, s *Sandbox) (crashed []int)
			want []string // the start of what is reported, one per crash, in any order
		}{
			{"left running", func(*testing.T, *Sandbox) []int { return nil }, nil},
			{"ended by the sandbox", func(t *testing.T, s *Sandbox) []int {
				s.KillVSwitchd()
				s.StartVSwitchd()
				s.StopVSwitchd()
				s.StartVSwitchd()
				s.ExitVSwitchd()
				s.StartVSwitchd()
				s.SignalVSwitchd(syscall.SIGKILL)
				<-s.VSwitchdExited()
				s.KillOVSDB()
				s.StartOVSDB()
				s.StopOVSDB()
				return nil
			}, nil},
			{"ovs-vswitchd crashed", func(t *testing.T, s *Sandbox) []int {
				pid := s.VSwitchdHostPID()
				crash(t, pid)
				<-s.VSwitchdExited()
				return []int{pid}
			}, []string{"ovs-vswitchd (pid %d) exited on its own: "}},
			{"both crashed, then started again", func(t *testing.T, s *Sandbox) []int {
				vswitchd, ovsdb := s.VSwitchdHostPID(), s.OVSDBPID()
				crash(t, vswitchd)
				<-s.VSwitchdExited()
				crash(t, ovsdb)
				s.Eventually(10*time.Second, "ovsdb-server reaped", func() bool { return s.OVSDBPID() == 0 })
				s.StartOVSDB()
				s.StartVSwitchd()
				return []int{vswitchd, ovsdb}
			}, []string{"ovs-vswitchd (pid %d) exited on its own: ", "ovsdb-server (pid %d) exited on its own: signal: killed"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := &errorRecorder{TB: t}
				s := StartIn(r, mode, "br-int")
				crashed := tt.act(t, s)
				s.stopAll()
				// In a pid namespace, what ovs-vswitchd's death looks like is
				// the exit of unshare, which depends on its version.
				errs := r.errors()
				assert.Len(t, errs, len(tt.want), "%q", errs)
				for i, w := range tt.want {
					want := s.Dir + ": " + fmt.Sprintf(w, crashed[i])
					assert.True(t, slices.ContainsFunc(errs, func(e string) bool { return strings.HasPrefix(e, want) }),
						"%q reported in %q", want, errs)
				}
				assert.Zero(t, s.VSwitchdHostPID(), "stopAll stops ovs-vswitchd")
				assert.Zero(t, s.OVSDBPID(), "stopAll stops ovsdb-server")
			})
		}
	})
}
