package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/probe"
)

// The base's stand-in agent decides readiness with a JSON parser its image
// has, never by the file's layout: it is run here as the container runs it
// (/bin/sh and python3), against a status the real ovsgate wrote and that
// same status reformatted.
func TestBaseAgentReadsTheStatusAsJSON(t *testing.T) {
	ds := renderDaemonSet(t, baseDir)
	var agent *corev1.Container
	for i, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "cni-agent" {
			agent = &ds.Spec.Template.Spec.Containers[i]
		}
	}
	require.NotNil(t, agent, "the base has a stand-in agent")
	require.Len(t, agent.Command, 3)
	require.Equal(t, []string{"/bin/sh", "-c"}, agent.Command[:2])
	script := agent.Command[2]
	// python:*-alpine has /bin/sh (busybox) and python3; busybox alone
	// has no JSON parser.
	assert.Equal(t, "python", imageRepo(agent.Image))
	assert.True(t, strings.HasSuffix(agent.Image, "-alpine"), agent.Image)
	assert.Contains(t, script, "python3 -c '")
	assert.Contains(t, script, "json.load(")
	assert.NotContains(t, script, "grep", "readiness by the file's layout")
	assert.Equal(t, []corev1.EnvVar{{Name: "STATUS_FILE", Value: probe.DefaultStatusFile}}, agent.Env)

	if _, err := exec.LookPath("python3"); err != nil {
		testutil.SkipUnlessCI(t, "python3 not found: %v", err)
	}
	dir := t.TempDir()
	written := filepath.Join(dir, "written.json")
	r := testutil.RunOvsgate(t, ovsgateBin, nil, "check", "--timeout", "1s", "--status-file", written,
		"--ovsdb", "unix:"+filepath.Join(dir, "db.sock"), "--ovs-rundir", dir)
	require.Equal(t, 1, r.Code, "check without OVS: %s", r.Stderr)
	b, err := os.ReadFile(written)
	require.NoError(t, err)
	var st map[string]any
	require.NoError(t, json.Unmarshal(b, &st))
	reason, _ := st["reason"].(string)
	require.NotEmpty(t, reason)

	// reformat writes st as compact JSON (keys sorted: "ready" is no longer
	// first) with changes, the way another writer could lay it out.
	reformat := func(name string, change func(map[string]any)) string {
		m := map[string]any{}
		for k, v := range st {
			m[k] = v
		}
		change(m)
		out, err := json.Marshal(m)
		require.NoError(t, err)
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, out, 0o644))
		return path
	}
	ready := func(m map[string]any) { m["ready"], m["reason"] = true, "" }
	notReadyBridgeReady := func(m map[string]any) {
		m["bridges"] = []any{map[string]any{"name": "br-int", "ready": true}}
	}
	garbage := filepath.Join(dir, "garbage.json")
	require.NoError(t, os.WriteFile(garbage, []byte(`  "ready": true`+"\n"), 0o644))

	for _, tt := range []struct {
		name, file, want string
	}{
		{"written by ovsgate", written, "cni-agent: Open vSwitch is not ready: " + reason},
		{"ready, compact, keys sorted", reformat("ready.json", ready), "cni-agent: Open vSwitch is ready"},
		{"a bridge ready, the gate not", reformat("bridge.json", notReadyBridgeReady), "cni-agent: Open vSwitch is not ready: " + reason},
		{"the indentation of ready but no JSON", garbage, "cni-agent: Open vSwitch is not ready: no status: "},
		{"no file", filepath.Join(dir, "missing.json"), "cni-agent: Open vSwitch is not ready: no status: [Errno 2] No such file or directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			line := firstLine(t, script, "STATUS_FILE="+tt.file)
			assert.True(t, strings.HasPrefix(line, tt.want), "printed %q, want %q", line, tt.want)
		})
	}
}

// firstLine runs the agent's script with env and returns the first line it
// prints; the script loops for ever, so its process group (ours: it was
// spawned here) is killed then.
func firstLine(t *testing.T, script string, env ...string) string {
	t.Helper()
	out := &testutil.SyncBuffer{}
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	ok := testutil.Poll(30*time.Second, func() bool { return strings.Contains(out.String(), "\n") })
	require.True(t, ok, "the agent printed no line within 30s: %q", out.String())
	line, _, _ := strings.Cut(out.String(), "\n")
	return line
}
