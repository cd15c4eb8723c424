package ovstest

import (
	"fmt"
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

// procIDs reads the real uid and gid of a process from /proc.
func procIDs(t *testing.T, pid int) (uid, gid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Uid:":
			uid, err = strconv.Atoi(f[1])
			require.NoError(t, err)
		case "Gid:":
			gid, err = strconv.Atoi(f[1])
			require.NoError(t, err)
		}
	}
	return uid, gid
}

func TestStartOwnedBy(t *testing.T) {
	for _, tc := range []struct {
		umask    int
		wantMode os.FileMode
	}{
		{0o002, 0o770},
		{0o022, 0o750},
	} {
		t.Run(fmt.Sprintf("umask %04o", tc.umask), func(t *testing.T) {
			o := Owner{UID: 65534, GID: 65534, Umask: tc.umask}
			s := StartOwnedBy(t, o, "br-int")
			require.Equal(t, &o, s.Owner())
			s.Eventually(10*time.Second, "datapath_id", func() bool { return s.DatapathID("br-int") != "" })

			for name, pid := range map[string]int{"ovsdb-server": s.OVSDBPID(), "ovs-vswitchd": s.VSwitchdHostPID()} {
				require.NotZero(t, pid, name)
				uid, gid := procIDs(t, pid)
				assert.Equal(t, o.UID, uid, "%s runs as the owner", name)
				assert.Equal(t, o.GID, gid, "%s runs with the owner's group", name)
			}
			for _, sock := range []string{s.DBSocket(), filepath.Join(s.RunDir(), "ovs-vswitchd."+strconv.Itoa(s.VSwitchdPID())+".ctl")} {
				fi, err := os.Stat(sock)
				require.NoError(t, err)
				assert.Equal(t, os.ModeSocket, fi.Mode().Type(), sock)
				assert.Equal(t, tc.wantMode, fi.Mode().Perm(), "%s: OVS asks for 0770, the umask takes its share", sock)
				st := fi.Sys().(*syscall.Stat_t)
				assert.Equal(t, uint32(o.UID), st.Uid, sock)
				assert.Equal(t, uint32(o.GID), st.Gid, sock)
			}

			// The sandbox still restarts what it spawned, as the owner.
			old := s.VSwitchdHostPID()
			s.RestartVSwitchd()
			require.NotEqual(t, old, s.VSwitchdHostPID())
			uid, _ := procIDs(t, s.VSwitchdHostPID())
			assert.Equal(t, o.UID, uid)
		})
	}
}
