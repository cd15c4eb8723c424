package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/ovstest"
)

// check reached ovs-vswitchd just now, which says nothing of how long it
// has been answering: it shows the times a running serve's status file
// gives for the same instance, and says so, or none at all.
func TestCheckShowsNoSinceItCannotKnow(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	s.Vsctl("set", "open_vswitch", ".", "other_config:flow-restore-wait=true")
	d := startServe(t, s)
	var served gate.Status
	s.Eventually(20*time.Second, "serve's status file names the instance and flow-restore-wait", func() bool {
		var ok bool
		served, ok = d.readFile(t)
		return ok && served.Ready && served.VSwitchd.Since != nil && served.VSwitchd.FlowRestoreWaitSince != nil
	})
	rfc := func(ts *gate.Timestamp) string { return ts.UTC().Format(time.RFC3339) }
	// The serve's times are at least a second older than check's own would
	// be, so that the table tells them apart.
	s.Eventually(10*time.Second, "a second after serve first reached ovs-vswitchd", func() bool {
		return time.Since(served.VSwitchd.FlowRestoreWaitSince.Time) > 1100*time.Millisecond &&
			time.Since(served.VSwitchd.Since.Time) > 1100*time.Millisecond
	})
	check := func(extra ...string) (string, gate.Status) {
		t.Helper()
		args := append([]string{"check"}, sandboxArgs(s)...)
		r := ovsgate(t, cleanEnv(), append(args, extra...)...)
		require.Equal(t, 0, r.Code, r.Stderr)
		j := ovsgate(t, cleanEnv(), append(append(args, extra...), "-o", "json")...)
		require.Equal(t, 0, j.Code, j.Stderr)
		var st gate.Status
		require.NoError(t, json.Unmarshal([]byte(j.Stdout), &st), j.Stdout)
		return r.Stdout, st
	}
	vsRow := regexp.MustCompile(`(?m)^ovs-vswitchd .*$`)
	frwRow := regexp.MustCompile(`(?m)^flow-restore-wait .*$`)

	t.Run("from serve's status file", func(t *testing.T) {
		table, st := check("--serve-status-file", d.statusFile)
		assert.Regexp(t, `since `+regexp.QuoteMeta(rfc(served.VSwitchd.Since))+` \(from serve's status file\)\s*$`, vsRow.FindString(table), table)
		assert.Regexp(t, `seen since `+regexp.QuoteMeta(rfc(served.VSwitchd.FlowRestoreWaitSince))+` \(from serve's status file\)\s*$`, frwRow.FindString(table), table)
		require.NotNil(t, st.VSwitchd.Since)
		assert.True(t, served.VSwitchd.Since.Equal(st.VSwitchd.Since.Time), "JSON since is serve's: %v, %v", served.VSwitchd.Since, st.VSwitchd.Since)
		require.NotNil(t, st.VSwitchd.FlowRestoreWaitSince)
		assert.True(t, served.VSwitchd.FlowRestoreWaitSince.Equal(st.VSwitchd.FlowRestoreWaitSince.Time))
	})
	for _, tt := range []struct{ name, file string }{
		{"no status file", filepath.Join(t.TempDir(), "none.json")},
		{"reading disabled", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			table, st := check("--serve-status-file", tt.file)
			assert.NotContains(t, vsRow.FindString(table), "since", table)
			assert.NotContains(t, frwRow.FindString(table), "since", table)
			assert.Contains(t, frwRow.FindString(table), "set: not forwarding", table)
			assert.Nil(t, st.VSwitchd.Since, "check's own first reach is no fact about ovs-vswitchd")
			assert.Nil(t, st.VSwitchd.FlowRestoreWaitSince)
		})
	}
	t.Run("another instance", func(t *testing.T) {
		old, err := os.ReadFile(d.statusFile)
		require.NoError(t, err)
		pid := s.RestartVSwitchd()
		s.Eventually(20*time.Second, "serve names the new instance", func() bool {
			st, ok := d.readFile(t)
			return ok && st.Ready && st.VSwitchd.PID == pid && st.VSwitchd.Since != nil && st.VSwitchd.Since.After(served.VSwitchd.Since.Time)
		})
		// Serve's file is current again: it is the new instance's time.
		table, _ := check("--serve-status-file", d.statusFile)
		assert.Contains(t, vsRow.FindString(table), "(from serve's status file)", table)
		assert.NotContains(t, vsRow.FindString(table), rfc(served.VSwitchd.Since)+" ", table)
		// A file about the instance before (a serve that died without a
		// word) names another pid: none of its times are shown.
		stale := filepath.Join(t.TempDir(), "status.json")
		require.NoError(t, os.WriteFile(stale, old, 0o644))
		table, st := check("--serve-status-file", stale)
		assert.NotContains(t, vsRow.FindString(table), "since", table)
		assert.Nil(t, st.VSwitchd.Since)
	})
	t.Run("stopped serve", func(t *testing.T) {
		require.NoError(t, d.Stop(), d.Stderr.String())
		table, st := check("--serve-status-file", d.statusFile)
		assert.NotContains(t, vsRow.FindString(table), "since", table)
		assert.Nil(t, st.VSwitchd.Since)
	})
}
