package gate

import (
	stdflag "flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seenReasons collects every reason the gates of this package's tests gave:
// real answers of real and hostile ovs-vswitchd, OVSDB faults. Each is
// checked against the README's troubleshooting table as it is seen, in the
// test that produced it; TestMain checks the other way round, that every
// row of the table was produced, once the whole package has run.
var seenReasons reasonSet

type reasonSet struct {
	mu sync.Mutex
	m  map[string]bool
}

var readme struct {
	once sync.Once
	pats []*regexp.Regexp
	err  error
}

// readmePatterns are the rows of ../README.md's troubleshooting table.
func readmePatterns() ([]*regexp.Regexp, error) {
	readme.once.Do(func() {
		b, err := os.ReadFile("../README.md")
		if err != nil {
			readme.err = err
			return
		}
		readme.pats, readme.err = readmeReasons(string(b))
	})
	return readme.pats, readme.err
}

// record adds the reasons st gives, and fails t for each one the README's
// table does not list.
func (r *reasonSet) record(t testing.TB, st State) {
	t.Helper()
	pats, err := readmePatterns()
	require.NoError(t, err)
	parts := reasonParts(st)
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]bool{}
	}
	for _, p := range parts {
		r.m[p] = true
	}
	r.mu.Unlock()
	if missing := undocumented(pats, parts); len(missing) > 0 {
		t.Errorf("reasons that README's troubleshooting table does not list:\n  %s", strings.Join(missing, "\n  "))
	}
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

// reasonParts are the reasons a state gives: each part of its own reason,
// and every failing check's message as the reason would give it were the
// check the first to fail (also those that never reach the reason, such as
// a features check's while its datapath check fails: /readyz?verbose and
// check's table show them all), and a bridge's and a port's reason as
// their own status says it. Before the first reconcile there is only
// "starting".
func reasonParts(st State) []string {
	parts := splitBridges(st.Reason)
	if st.Cause == CauseStarting {
		return parts
	}
	for _, c := range st.Checks {
		if !c.OK {
			parts = append(parts, checkReason(c))
		}
	}
	for _, b := range st.Bridges {
		if !b.Ready {
			parts = append(parts, "bridge "+b.Name+": "+b.Reason)
		}
	}
	for _, p := range st.Ports {
		if !p.Ready {
			parts = append(parts, "port "+p.Name+": "+p.Reason)
		}
	}
	return slices.DeleteFunc(parts, func(s string) bool { return s == "" })
}

// checkReason is a failing check's message with the words that introduce
// it in the gate's reason.
func checkReason(c Check) string {
	kind, about, _ := strings.Cut(c.Name, "/")
	switch kind {
	case CheckOVSDB:
		return "OVSDB: " + c.Message
	case "datapath", "features":
		return "bridge " + about + ": " + c.Message
	case "port":
		return "port " + about + ": " + c.Message
	}
	return c.Message
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

// undocumented returns the reasons that match no row of the table.
func undocumented(pats []*regexp.Regexp, reasons []string) []string {
	var missing []string
	for _, reason := range reasons {
		for _, part := range splitBridges(reason) {
			if !matchesAny(pats, part) {
				missing = append(missing, part)
			}
		}
	}
	return missing
}

// unproduced returns the rows of the table that no reason matches.
func unproduced(pats []*regexp.Regexp, reasons []string) []string {
	var missing []string
	for _, p := range pats {
		if !slices.ContainsFunc(reasons, p.MatchString) {
			missing = append(missing, p.String())
		}
	}
	return missing
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

// Both checks must be able to fail: a reason nobody documented is caught, a
// documented one passes; a row nothing produced is caught, a produced one
// passes.
func TestREADMECheckCatchesAMismatch(t *testing.T) {
	pats, err := readmeReasons("| reason | meaning | what to do |\n|---|---|---|\n" +
		"| `ovs-vswitchd (pid N) exited` | x | y |\n" +
		"| `bridge B: feature \"X\" is ..., want ...` / `OVSDB: not answering within 5s at ENDPOINT` | x | y |\n" +
		"| `ovsgate stopped` | x | y |\n\nafter\n")
	require.NoError(t, err)
	require.Len(t, pats, 4)
	produced := []string{
		"ovs-vswitchd (pid 1) exited",
		`bridge br-int: feature "Recirc" is No, want Yes; bridge br-ex: feature "X" is 1, want >= 2`,
		"OVSDB: not answering within 300ms at unix:/x/db.sock",
	}
	assert.Empty(t, undocumented(pats, produced))
	assert.Equal(t, []string{"ovs-vswitchd (pid one) exited", "something new"},
		undocumented(pats, []string{"ovs-vswitchd (pid 1) exited", "ovs-vswitchd (pid one) exited", "something new"}))
	assert.Equal(t, []string{"^ovsgate stopped$"}, unproduced(pats, produced))
	assert.Empty(t, unproduced(pats, append(produced, ReasonStopped)))
}

// A state a daemon leaves when it stops is not ready, whatever it was, and
// says so; what was known of OVS stays.
func TestStateStopped(t *testing.T) {
	ready := State{Status: Status{Ready: true, VSwitchd: VSwitchdStatus{PID: 7}}, Cause: CauseReady, Settled: true, Restarts: 2}
	st := ready.Stopped()
	seenReasons.record(t, st)
	assert.False(t, st.Ready)
	assert.Equal(t, "ovsgate stopped", st.Reason)
	assert.WithinDuration(t, time.Now(), st.Updated.Time, time.Minute)
	assert.Equal(t, 7, st.VSwitchd.PID)
	assert.Equal(t, uint64(2), st.Restarts)
	assert.True(t, ready.Ready, "a copy")
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

// wholePackageRan reports whether this run ran every test of the package:
// only then must every row of the README's table have been produced.
func wholePackageRan() bool {
	for _, name := range []string{"test.run", "test.skip"} {
		if f := stdflag.Lookup(name); f != nil && f.Value.String() != "" {
			return false
		}
	}
	return true
}

// readmeRowsProduced is TestMain's check, after every test has run: every
// row of the README's table was produced by some test of this package.
func readmeRowsProduced() error {
	pats, err := readmePatterns()
	if err != nil {
		return err
	}
	if missing := unproduced(pats, seenReasons.list()); len(missing) > 0 {
		return fmt.Errorf("rows of README's troubleshooting table that no test produced:\n  %s", strings.Join(missing, "\n  "))
	}
	return nil
}

// A check's message that never reaches the reason is collected all the
// same, as the reason would introduce it, and a table without its row
// misses it.
func TestREADMECheckCoversCheckMessages(t *testing.T) {
	st := State{Status: Status{Reason: "bridge br-int: waiting for datapath ID", Checks: []Check{
		{Name: CheckOVSDB, OK: true},
		{Name: DatapathCheck("br-int"), Message: "waiting for datapath ID"},
		{Name: FeaturesCheck("br-int"), Message: "datapath not ready"},
		{Name: PortCheck("gw0"), Message: "waiting for ovs-vswitchd"},
	}}, Cause: CauseBridgeNotReady}
	parts := reasonParts(st)
	assert.Contains(t, parts, "bridge br-int: datapath not ready")
	assert.Contains(t, parts, "port gw0: waiting for ovs-vswitchd")
	pats, err := readmeReasons("| reason | meaning | what to do |\n|---|---|---|\n" +
		"| `bridge B: waiting for datapath ID` | x | y |\n| `port P: waiting for ovs-vswitchd` | x | y |\n")
	require.NoError(t, err)
	assert.Equal(t, []string{"bridge br-int: datapath not ready"}, undocumented(pats, parts))
}
