package hack

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/kubetest"
	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

const tryHeading = "### Try the node condition locally"

// fence is one fenced code block of Markdown.
type fence struct{ lang, body string }

// readmeFences returns the README section under heading (a whole line, such
// as "### Title"), up to the next heading of its level or above, and the
// code blocks in it.
func readmeFences(t *testing.T, heading string) (section string, fences []fence) {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	level := strings.IndexByte(heading, ' ')
	var (
		in   bool // under the heading
		cur  *fence
		text strings.Builder
	)
	for _, line := range strings.Split(string(b), "\n") {
		if cur == nil && strings.HasPrefix(line, "#") {
			l := strings.IndexByte(line, ' ')
			if in && l > 0 && l <= level {
				break
			}
			if line == heading {
				in = true
				continue
			}
		}
		if !in {
			continue
		}
		text.WriteString(line + "\n")
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &fence{lang: strings.TrimPrefix(line, "```")}
		case cur != nil && line == "```":
			fences = append(fences, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	require.True(t, in, "README has no %q", heading)
	require.Nil(t, cur, "an unclosed code block under %q", heading)
	return text.String(), fences
}

// step is one command of a console transcript and what it prints.
type step struct{ cmd, want string }

func transcript(body string) []step {
	var steps []step
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		if c, ok := strings.CutPrefix(line, "$ "); ok {
			steps = append(steps, step{cmd: c})
		} else if len(steps) > 0 {
			steps[len(steps)-1].want += line + "\n"
		}
	}
	return steps
}

var number = regexp.MustCompile(`[0-9]+`)

// sameOutput compares printed text with the README's: columns may be padded
// differently, and pids differ from run to run.
func sameOutput(got, want string) bool {
	norm := func(s string) string {
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			lines = append(lines, strings.Join(strings.Fields(number.ReplaceAllString(l, "N")), " "))
		}
		return strings.Join(lines, "\n")
	}
	return norm(got) == norm(want)
}

// TestTryNodeConditionLocally runs the README's "Try the node condition
// locally" as written, in a folder of its own: the setup block, its make
// run (as hack/run.sh with the binary built here, on free ports), every
// command of its transcript with the output it shows, and the stop block.
func TestTryNodeConditionLocally(t *testing.T) {
	ovstest.Require(t)
	kubetest.RequireAPIServer(t)
	if _, err := exec.LookPath("kubectl"); err != nil {
		testutil.SkipUnlessCI(t, "kubectl not found: %v", err)
	}
	section, fences := readmeFences(t, tryHeading)
	require.Len(t, fences, 4, "setup, make run, transcript, stop")
	setup, run, shown, stop := fences[0], fences[1], fences[2], fences[3]
	for i, lang := range []string{"sh", "sh", "console", "sh"} {
		require.Equal(t, lang, fences[i].lang, "code block %d", i)
	}
	require.Contains(t, setup.body, "\nexport KUBECONFIG=$PWD/_kube/admin.kubeconfig\n")
	runLine, ok := strings.CutSuffix(strings.TrimSpace(run.body), " make run")
	require.True(t, ok, "the second block is a make run: %q", run.body)

	bin := buildOvsgate(t)
	wd, err := os.Getwd()
	require.NoError(t, err)
	root := testutil.ShortTempDir(t, "nc")
	for _, d := range []string{"hack", "deploy"} {
		require.NoError(t, os.Symlink(filepath.Join(filepath.Dir(wd), d), filepath.Join(root, d)))
	}
	kubeDir, sandboxDir := filepath.Join(root, "_kube"), filepath.Join(root, "_sandbox")
	// Whatever happens, what the README's commands started is stopped
	// (run.sh first: its cleanup, registered later, runs first).
	t.Cleanup(func() {
		if r := runScript(t, "./kube-apiserver.sh", "stop", kubeDir); r.code != 0 {
			t.Errorf("cleanup: kube-apiserver.sh stop: %s", r)
		}
	})
	t.Cleanup(func() {
		if r := sandbox(t, "stop", sandboxDir); r.code != 0 {
			t.Errorf("cleanup: ovs-sandbox.sh stop: %s", r)
		}
	})

	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "KUBECONFIG" || name == "KUBE_APISERVER_PORT" || name == "ETCD_PORT" || name == "ETCD_PEER_PORT" ||
			(strings.HasPrefix(name, "OVSGATE_") && name != "OVSGATE_CACHE_DIR") {
			continue
		}
		env = append(env, kv)
	}
	for _, v := range []string{"KUBE_APISERVER_PORT", "ETCD_PORT", "ETCD_PEER_PORT"} {
		env = append(env, v+"="+strconv.Itoa(kubetest.ReservePort(t)))
	}
	sh := func(script string, extra ...string) result {
		t.Helper()
		cmd := exec.Command("bash", "-o", "errexit", "-o", "nounset", "-o", "pipefail", "-c", script)
		cmd.Dir = root
		cmd.Env = append(append([]string(nil), env...), extra...)
		return runCmd(t, cmd)
	}

	r := sh(setup.body)
	require.Zero(t, r.code, "the setup block: %s", r)

	// make run is hack/run.sh once the binary is built.
	cmd := exec.Command("bash", "-c", runLine+" exec hack/run.sh")
	cmd.Dir = root
	cmd.Env = append(append([]string(nil), env...), "OVSGATE="+bin, "PROBE_ADDR="+testutil.AnyPort, "METRICS_ADDR=0")
	rs := startCmd(t, cmd)
	awaitReady(t, rs)

	admin := "KUBECONFIG=" + filepath.Join(kubeDir, "admin.kubeconfig")
	for _, s := range transcript(shown.body) {
		if !strings.HasPrefix(s.cmd, "kubectl get ") {
			r = sh(s.cmd, admin)
			require.Zero(t, r.code, "%s: %s", s.cmd, r)
			assert.True(t, sameOutput(r.stdout, s.want), "%s printed:\n%s\nthe README shows:\n%s", s.cmd, r.stdout, s.want)
			continue
		}
		// The condition lands within the merge window (a second); the
		// rest of the deadline is for a loaded machine.
		ok := testutil.Poll(time.Minute, func() bool {
			r = sh(s.cmd, admin)
			return r.code == 0 && sameOutput(r.stdout, s.want)
		})
		assert.True(t, ok, "%s never printed what the README shows:\n%s\nlast:\n%s\nmake run:\n%s", s.cmd, s.want, r, rs.out)
	}

	const canI = "kubectl --kubeconfig _kube/ovsgate.kubeconfig auth can-i list nodes"
	require.Contains(t, section, "`"+canI+"` says `no`")
	r = sh(canI)
	assert.Equal(t, "no\n", r.stdout, "%s", r)
	for _, verb := range []string{"get nodes/node-1", "patch nodes/node-1 --subresource=status"} {
		r = sh("kubectl --kubeconfig _kube/ovsgate.kubeconfig auth can-i " + verb)
		assert.Equal(t, "yes\n", r.stdout, "%s: %s", verb, r)
	}

	// Ctrl-C stops make run and its sandbox; then the stop block.
	require.NoError(t, rs.cmd.Process.Signal(syscall.SIGINT))
	assert.Zero(t, rs.wait(t, time.Minute), "%s", rs.out)
	r = sh(stop.body)
	require.Zero(t, r.code, "the stop block: %s", r)
	assert.Empty(t, processesIn(root), "processes left after the stop")
}
