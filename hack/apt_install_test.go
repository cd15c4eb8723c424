package hack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// apt-install.sh writes a policy-rc.d that forbids every service start for
// the length of the install, and puts back what was there before, also when
// the install fails. A fake apt-get asks the policy, as a package's
// maintainer script would, and records its answer.
func TestAptInstallForbidsServiceStarts(t *testing.T) {
	for _, tt := range []struct {
		name   string
		before string // the policy-rc.d the host had; "" for none
		fail   bool   // apt-get install fails
	}{
		{name: "no policy before"},
		{name: "a policy before", before: "#!/bin/sh\nexit 0\n"},
		{name: "failed install", before: "#!/bin/sh\nexit 0\n", fail: true},
		{name: "failed install, no policy before", fail: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			require.NoError(t, os.Mkdir(bin, 0o755))
			policy := filepath.Join(dir, "policy-rc.d")
			record := filepath.Join(dir, "record")
			fake := map[string]string{
				// apt-install.sh refuses to run as anyone but root.
				"id": "#!/bin/sh\necho 0\n",
				"apt-get": `#!/bin/sh
echo "apt-get $*" >>"$RECORD"
[ "$1" = install ] || exit 0
"$POLICY_RC_D" openvswitch-switch start
echo "policy says $?" >>"$RECORD"
[ -z "$FAIL" ] || exit 100
`,
			}
			for name, script := range fake {
				require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755))
			}
			if tt.before != "" {
				require.NoError(t, os.WriteFile(policy, []byte(tt.before), 0o700))
			}
			cmd := exec.Command("./apt-install.sh", "openvswitch-switch")
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "POLICY_RC_D="+policy, "RECORD="+record)
			if tt.fail {
				cmd.Env = append(cmd.Env, "FAIL=1")
			}
			out, err := cmd.CombinedOutput()
			if tt.fail {
				assert.Error(t, err, "%s", out)
			} else {
				assert.NoError(t, err, "%s", out)
			}

			b, err := os.ReadFile(record)
			require.NoError(t, err)
			assert.Equal(t, []string{
				"apt-get update -qq",
				"apt-get install -y -qq --no-install-recommends openvswitch-switch",
				"policy says 101",
			}, strings.Split(strings.TrimSpace(string(b)), "\n"))

			if tt.before == "" {
				assert.NoFileExists(t, policy, "no policy before, none after")
			} else {
				b, err := os.ReadFile(policy)
				require.NoError(t, err)
				assert.Equal(t, tt.before, string(b), "the policy of before, back")
				fi, err := os.Stat(policy)
				require.NoError(t, err)
				assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
			}
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			assert.NotContains(t, strings.Join(names, " "), "policy-rc.d.saved", "no saved copy left behind")
		})
	}
}
