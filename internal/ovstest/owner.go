package ovstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

// Owner is the unprivileged user a sandbox's ovsdb-server and ovs-vswitchd
// run as, the way a pod's securityContext runAsUser runs OVS (Kube-OVN runs
// it as 65534), and the umask they create their files with.
type Owner struct {
	UID, GID int
	// Umask decides the mode of the sockets, which OVS asks for as 0770:
	// 0o002 leaves 0770 (the group may connect), 0o022 leaves 0750 (only
	// the owner may: connect(2) needs write permission on the socket).
	Umask int
}

// StartOwnedBy is Start with ovsdb-server and ovs-vswitchd running as o
// instead of root: the sandbox folder (the run directory) and the database
// are o's, searchable by everyone (0755), as a hostPath run directory that
// the OVS pod chowns to its user. Tools the sandbox runs itself (ovs-vsctl,
// ovs-appctl) stay root. It needs root to switch users.
func StartOwnedBy(t testing.TB, o Owner, bridges ...string) *Sandbox {
	t.Helper()
	Require(t)
	if os.Geteuid() != 0 {
		testutil.SkipUnlessCI(t, "running OVS as uid %d needs root", o.UID)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatalf("sh sets the daemons' umask: %v", err)
	}
	// ovsdb-server creates a temporary file in /tmp (tmpfile(3), which
	// ignores TMPDIR) as it starts: as another user it needs /tmp's usual
	// mode.
	fi, err := os.Stat(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if want := os.ModeSticky | 0o777; fi.Mode()&want != want {
		t.Fatalf("%s is %v, not drwxrwxrwt: OVS cannot start as uid %d (something changed its mode)", os.TempDir(), fi.Mode(), o.UID)
	}
	s := NewIn(t, Host)
	s.owner = &o
	if err := chownTree(s.Dir, o.UID, o.GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.StartOVSDB()
	s.StartVSwitchd()
	for _, br := range bridges {
		s.AddBridge(br)
	}
	return s
}

// Owner is the user the sandbox's daemons run as, or nil for root.
func (s *Sandbox) Owner() *Owner { return s.owner }

func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
		return nil
	})
}

// runAsOwner makes cmd, a daemon about to be spawned, run as the sandbox's
// owner with its umask: a shell sets the umask and execs the daemon, which
// keeps the pid that cmd reports.
func (s *Sandbox) runAsOwner(cmd *exec.Cmd) {
	o := s.owner
	if o == nil {
		return
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		s.t.Fatalf("sh: %v", err)
	}
	script := fmt.Sprintf(`umask %04o && exec "$0" "$@"`, o.Umask)
	cmd.Args = append([]string{"sh", "-c", script, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = sh
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(o.UID), Gid: uint32(o.GID)}
}
