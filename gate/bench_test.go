package gate

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ovsgate/ovsgate/internal/ovstest"
)

// BenchmarkAddBridgeToReady measures, over 30 trials per run, the time from
// `ovs-vsctl add-br` returning to the gate's status being ready, and reports
// the median and the worst.
func BenchmarkAddBridgeToReady(b *testing.B) {
	s := ovstest.Start(b)
	g, err := New(Config{OVSDB: s.Endpoint(), RunDir: s.RunDir(), Bridges: []string{"br-int"}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	updates := g.Subscribe()
	waitReady := func(want bool) {
		deadline := time.After(10 * time.Second)
		for {
			select {
			case st := <-updates:
				if st.Ready == want {
					return
				}
			case <-deadline:
				b.Fatalf("ready=%v not reached", want)
			}
		}
	}
	var all []time.Duration
	for b.Loop() {
		for i := 0; i < 30; i++ {
			s.DelBridge("br-int")
			waitReady(false)
			s.AddBridge("br-int") // returns once ovs-vswitchd applied the bridge
			start := time.Now()
			waitReady(true)
			all = append(all, time.Since(start))
		}
	}
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "median-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(all[len(all)-1].Microseconds()), "worst-µs")
}

// benchGate runs a gate against s until the benchmark ends.
func benchGate(b *testing.B, s *ovstest.Sandbox) *Gate {
	g, err := New(Config{OVSDB: s.Endpoint(), RunDir: s.RunDir(), Bridges: []string{"br-int"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(g.Start(context.Background()))
	return g
}

// inEachMode runs n trials against a gate and a sandbox of each mode, and
// reports the median and the worst of what trial measured. Each trial
// starts with the gate ready.
func inEachMode(b *testing.B, n int, trial func(s *ovstest.Sandbox, g *Gate, ready State) time.Duration) {
	for _, mode := range ovstest.Modes {
		b.Run(mode.String(), func(b *testing.B) {
			s := ovstest.StartIn(b, mode, "br-int")
			g := benchGate(b, s)
			var all []time.Duration
			for b.Loop() {
				for range n {
					var st State
					if !ovstest.Poll(20*time.Second, func() bool { st = g.State(); return st.Ready }) {
						b.Fatal("not ready")
					}
					all = append(all, trial(s, g, st))
				}
			}
			slices.Sort(all)
			b.ReportMetric(float64(all[len(all)/2].Microseconds()), "median-µs")
			b.ReportMetric(float64(all[len(all)-1].Microseconds()), "worst-µs")
		})
	}
}

// until polls cond for up to d and fails the benchmark if it never holds.
func until(b *testing.B, d time.Duration, what string, cond func() bool) {
	if !ovstest.Poll(d, cond) {
		b.Fatal(what)
	}
}

// BenchmarkVSwitchdExitNoticed measures the time from ovs-vswitchd's exit
// (SIGKILL, reaped) to the gate reporting not ready.
func BenchmarkVSwitchdExitNoticed(b *testing.B) {
	inEachMode(b, 10, func(s *ovstest.Sandbox, g *Gate, _ State) time.Duration {
		s.KillVSwitchd() // returns once the process is reaped
		start := time.Now()
		until(b, 5*time.Second, "exit not noticed", func() bool { return !g.State().Ready })
		d := time.Since(start)
		s.StartVSwitchd()
		return d
	})
}

// BenchmarkRestartToReady measures, over 20 restarts, the time from a new
// ovs-vswitchd answering on its socket (StartVSwitchd returns then) to the
// gate being ready on that new instance.
func BenchmarkRestartToReady(b *testing.B) {
	inEachMode(b, 20, func(s *ovstest.Sandbox, g *Gate, before State) time.Duration {
		s.KillVSwitchd()
		s.StartVSwitchd()
		start := time.Now()
		until(b, 10*time.Second, "not ready on the new instance", func() bool {
			st := g.State()
			return st.Ready && st.VSwitchd.Since != nil && st.VSwitchd.Since.After(before.VSwitchd.Since.Time)
		})
		return time.Since(start)
	})
}

// BenchmarkHangNoticed measures the time from SIGSTOP of an answering
// ovs-vswitchd to the gate calling it hung, with the default timings (a
// ping after 3s of silence, not ready after 5s without an answer).
func BenchmarkHangNoticed(b *testing.B) {
	inEachMode(b, 3, func(s *ovstest.Sandbox, g *Gate, _ State) time.Duration {
		s.SignalVSwitchd(syscall.SIGSTOP)
		start := time.Now()
		until(b, 15*time.Second, "hang not noticed", func() bool { return g.State().Cause == CauseVSwitchdNotAnswering })
		d := time.Since(start)
		s.SignalVSwitchd(syscall.SIGCONT)
		return d
	})
}
