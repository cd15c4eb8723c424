package gate

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seenReasons collects every reason the gates of this package's tests
// published: real answers of real and hostile ovs-vswitchd, OVSDB faults.
var seenReasons reasonSet

type reasonSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (r *reasonSet) add(reason string) {
	if reason == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]bool{}
	}
	r.m[reason] = true
}

func (r *reasonSet) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var l []string
	for s := range r.m {
		l = append(l, s)
	}
	sort.Strings(l)
	return l
}

// readmeReasons turns the first column of the README's troubleshooting
// table into patterns: each `...`-quoted reason in it, with its
// placeholders (ENDPOINT, DIR, PATH, N, B, X, TEXT, "...") and durations
// made wildcards.
func readmeReasons(readme string) ([]*regexp.Regexp, error) {
	start := strings.Index(readme, "| reason | meaning | what to do |")
	if start < 0 {
		return nil, fmt.Errorf("README has no troubleshooting table")
	}
	var pats []*regexp.Regexp
	for _, line := range strings.Split(readme[start:], "\n")[2:] {
		if !strings.HasPrefix(line, "| `") {
			break
		}
		cell := strings.Split(line, " | ")[0]
		for _, quoted := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cell, -1) {
			pats = append(pats, reasonPattern(quoted[1]))
		}
	}
	if len(pats) == 0 {
		return nil, fmt.Errorf("README's troubleshooting table lists no reason")
	}
	return pats, nil
}

var placeholder = regexp.MustCompile(`\.\.\.|\b(ENDPOINT|DIR|PATH|TEXT|N|B|P|X)\b|\b5s\b`)

func reasonPattern(text string) *regexp.Regexp {
	var b strings.Builder
	last := 0
	for _, m := range placeholder.FindAllStringIndex(text, -1) {
		b.WriteString(regexp.QuoteMeta(text[last:m[0]]))
		switch text[m[0]:m[1]] {
		case "N":
			b.WriteString(`\d+`)
		case "5s":
			b.WriteString(`[0-9.]+(ms|s|µs)`)
		default:
			b.WriteString(`.+`)
		}
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(text[last:]))
	return regexp.MustCompile("^" + b.String() + "$")
}

// reasonsDocumented checks that every reason matches a row of the table.
// A reason of several bridges is checked bridge by bridge.
func reasonsDocumented(reasons []string, readmePath string) error {
	b, err := os.ReadFile(readmePath)
	if err != nil {
		return err
	}
	pats, err := readmeReasons(string(b))
	if err != nil {
		return err
	}
	var missing []string
	for _, reason := range reasons {
		for _, part := range splitBridges(reason) {
			if !matchesAny(pats, part) {
				missing = append(missing, part)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("reasons the tests produced that README's troubleshooting table does not list:\n  %s",
			strings.Join(missing, "\n  "))
	}
	return nil
}

// splitBridges splits a reason into its parts: one per bridge, port and
// flow-restore-wait, each of which starts with its own words.
func splitBridges(reason string) []string {
	parts := []string{reason}
	for _, sep := range []string{"; bridge ", "; port ", "; flow-restore-wait"} {
		var next []string
		for _, p := range parts {
			pieces := strings.Split(p, sep)
			for i := 1; i < len(pieces); i++ {
				pieces[i] = sep[2:] + pieces[i]
			}
			next = append(next, pieces...)
		}
		parts = next
	}
	return parts
}

func matchesAny(pats []*regexp.Regexp, s string) bool {
	for _, p := range pats {
		if p.MatchString(s) {
			return true
		}
	}
	return false
}

// The check itself must be able to fail: a reason nobody documented is
// caught, a documented one passes.
func TestReasonsDocumentedCatchesAnUnlistedReason(t *testing.T) {
	readme := "| reason | meaning | what to do |\n|---|---|---|\n" +
		"| `ovs-vswitchd (pid N) exited` | x | y |\n" +
		"| `bridge B: feature \"X\" is ..., want ...` / `OVSDB: not answering within 5s at ENDPOINT` | x | y |\n\nafter\n"
	path := t.TempDir() + "/README.md"
	require.NoError(t, os.WriteFile(path, []byte(readme), 0o644))
	assert.NoError(t, reasonsDocumented([]string{
		"ovs-vswitchd (pid 1) exited",
		`bridge br-int: feature "Recirc" is No, want Yes; bridge br-ex: feature "X" is 1, want >= 2`,
		"OVSDB: not answering within 300ms at unix:/x/db.sock",
	}, path))
	err := reasonsDocumented([]string{"ovs-vswitchd (pid 1) exited", "ovs-vswitchd (pid one) exited", "something new"}, path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ovs-vswitchd (pid one) exited")
	assert.Contains(t, err.Error(), "something new")
	assert.NotContains(t, err.Error(), "(pid 1) exited")
}

// The rows of the real README parse, and a few known reasons match.
func TestREADMEReasonRows(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	pats, err := readmeReasons(string(b))
	require.NoError(t, err)
	for _, r := range []string{
		"starting",
		"ovs-vswitchd (pid 1) exited",
		"ovs-vswitchd (pid 1) is busy: not answering within 5s while its main thread uses CPU",
		"bridge br-int: waiting for datapath ID (kernel datapath: openvswitch kernel module not loaded)",
		"evaluation incomplete after 5s: ovs-vswitchd (pid 7) has not answered yet",
	} {
		assert.True(t, matchesAny(pats, r), r)
	}
}
