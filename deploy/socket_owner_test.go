package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

// The README's reason for a socket ovsgate may not open, with its
// placeholders.
const socketOwnerReason = "ovs-vswitchd (pid N): permission denied on PATH (run ovsgate as the socket's owner)"

// identity is how a container runs ovsgate: runAsUser, runAsGroup, and
// capabilities drop [ALL] (setpriv clears the bounding and inheritable
// sets, so that not even uid 0 keeps a capability across exec).
type identity struct {
	name     string
	uid, gid int
}

func (id identity) setprivArgs() []string {
	return []string{"--reuid=" + strconv.Itoa(id.uid), "--regid=" + strconv.Itoa(id.gid), "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--"}
}

// TestSocketOwner runs OVS as an unprivileged owner with the sockets 0770
// (as Kube-OVN's ovs-ovn does) and 0750, and ovsgate check and wait as the
// identities a manifest can give it. Root without capabilities is refused
// with the README's reason; the owner is ready either way; root in the
// sockets' group only while the group may write to them.
func TestSocketOwner(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testutil.SkipUnlessCI(t, "setpriv (util-linux) runs ovsgate without capabilities: %v", err)
	}
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	require.Contains(t, string(readme), "`"+socketOwnerReason+"`", "the README documents the reason")

	// The binary where the unprivileged user may run it.
	dir := testutil.ShortTempDir(t, "ovsgate-bin")
	require.NoError(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "ovsgate")
	b, err := os.ReadFile(ovsgateBin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, b, 0o755))

	root := identity{"root without capabilities", 0, 0}
	group := identity{"root in the sockets' group", 0, unprivilegedOVSUser}
	owner := identity{"the sockets' owner", unprivilegedOVSUser, unprivilegedOVSUser}

	t.Run("no capability left", func(t *testing.T) {
		for _, id := range []identity{root, group, owner} {
			r := testutil.RunOvsgate(t, setpriv, nil, append(id.setprivArgs(), "grep", "^Cap", "/proc/self/status")...)
			require.Equal(t, 0, r.Code, r.Stderr)
			for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
				f := strings.Fields(l)
				require.Len(t, f, 2, l)
				assert.Regexp(t, "^0+$", f[1], "%s: %s", id.name, l)
			}
		}
	})

	for _, tc := range []struct {
		umask int
		mode  os.FileMode
		ready map[string]bool
	}{
		{0o002, 0o770, map[string]bool{owner.name: true, group.name: true}},
		{0o022, 0o750, map[string]bool{owner.name: true}},
	} {
		t.Run(fmt.Sprintf("sockets %04o", tc.mode), func(t *testing.T) {
			s := ovstest.StartOwnedBy(t, ovstest.Owner{UID: unprivilegedOVSUser, GID: unprivilegedOVSUser, Umask: tc.umask}, "br-int")
			s.Eventually(10*time.Second, "datapath_id", func() bool { return s.DatapathID("br-int") != "" })
			ctl := filepath.Join(s.RunDir(), "ovs-vswitchd."+strconv.Itoa(s.VSwitchdPID())+".ctl")
			for _, sock := range []string{s.DBSocket(), ctl} {
				fi, err := os.Stat(sock)
				require.NoError(t, err)
				require.Equal(t, tc.mode, fi.Mode().Perm(), sock)
			}
			sandbox := []string{"--ovsdb=" + s.Endpoint(), "--ovs-rundir=" + s.RunDir(), "--bridge=br-int", "--status-file="}

			for _, id := range []identity{root, group, owner} {
				t.Run(id.name, func(t *testing.T) {
					ready := tc.ready[id.name]
					run := func(args ...string) testutil.Result {
						return testutil.RunOvsgate(t, setpriv, nil, append(append(id.setprivArgs(), bin), args...)...)
					}

					r := run(append([]string{"check", "-o", "json", "--timeout=5s"}, sandbox...)...)
					var st gate.Status
					require.NoError(t, json.Unmarshal([]byte(r.Stdout), &st), "check -o json: %s %s", r.Stdout, r.Stderr)
					assert.Equal(t, ready, st.Ready, "ready: %s", st.Reason)
					vs, ok := st.Check("vswitchd")
					require.True(t, ok)
					db, ok := st.Check("ovsdb")
					require.True(t, ok)
					if ready {
						assert.Equal(t, 0, r.Code)
						assert.Empty(t, st.Reason)
					} else {
						assert.Equal(t, 1, r.Code)
						want := strings.NewReplacer("N", strconv.Itoa(s.VSwitchdPID()), "PATH", ctl).Replace(socketOwnerReason)
						assert.Equal(t, want, vs.Message, "the README's reason")
						assert.False(t, db.OK)
						assert.Contains(t, db.Message, "permission denied", "OVSDB's socket refuses it too")
						assert.Contains(t, st.Reason, "permission denied")
					}

					timeout := "3s"
					if ready {
						timeout = "60s"
					}
					r = run(append([]string{"wait", "--timeout=" + timeout}, sandbox...)...)
					if ready {
						assert.Equal(t, 0, r.Code, "wait: %s", r.Stderr)
					} else {
						assert.Equal(t, 1, r.Code, "wait times out: %s", r.Stderr)
						assert.Contains(t, r.Stderr, "permission denied", "wait prints the last reason")
					}
				})
			}
		})
	}
}
