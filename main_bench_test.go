package main

import (
	"syscall"
	"testing"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

// BenchmarkCommands times the one-shot commands where the tests only bound
// them generously: how long check takes to answer without OVS (no wait for
// its --timeout) and with ovs-vswitchd stopped (the hang named within its
// --timeout of 2s), and how long past its --timeout of 500ms wait gives up.
// ns/op is the wall time of one run of the binary, start to exit.
func BenchmarkCommands(b *testing.B) {
	run := func(b *testing.B, wantCode int, args ...string) {
		b.Helper()
		for b.Loop() {
			if r := testutil.RunOvsgate(b, binary, nil, args...); r.Code != wantCode {
				b.Fatalf("exit %d, want %d: %s%s", r.Code, wantCode, r.Stdout, r.Stderr)
			}
		}
	}
	b.Run("check without OVS", func(b *testing.B) {
		dir := b.TempDir()
		run(b, 1, "check", "--timeout", "1h", "--ovsdb", "unix:"+dir+"/db.sock", "--ovs-rundir", dir)
	})
	b.Run("check with ovs-vswitchd stopped", func(b *testing.B) {
		s := ovstest.Start(b, "br-int")
		s.SignalVSwitchd(syscall.SIGSTOP)
		b.Cleanup(func() { s.SignalVSwitchd(syscall.SIGCONT) })
		run(b, 1, append([]string{"check", "--timeout", "2s"}, sandboxArgs(s)...)...)
	})
	b.Run("wait for a missing bridge, timeout 500ms", func(b *testing.B) {
		s := ovstest.Start(b)
		run(b, 1, append([]string{"wait", "--timeout", "500ms", "--bridge", "br-late"}, sandboxArgs(s)...)...)
	})
}
