package gate

import (
	"context"
	"slices"
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

// BenchmarkVSwitchdExitNoticed measures the time from ovs-vswitchd's exit
// (SIGKILL, reaped) to the gate reporting not ready.
func BenchmarkVSwitchdExitNoticed(b *testing.B) {
	s := ovstest.Start(b, "br-int")
	g, err := New(Config{OVSDB: s.Endpoint(), RunDir: s.RunDir(), Bridges: []string{"br-int"}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var all []time.Duration
	for b.Loop() {
		for i := 0; i < 10; i++ {
			pid := s.VSwitchdPID()
			if !ovstest.Poll(10*time.Second, func() bool { st := g.Status(); return st.Ready && st.VSwitchd.PID == pid }) {
				b.Fatal("not ready")
			}
			exited := s.VSwitchdExited()
			s.SignalVSwitchd(9)
			<-exited
			start := time.Now()
			if !ovstest.Poll(5*time.Second, func() bool { return !g.Status().Ready }) {
				b.Fatal("exit not noticed")
			}
			all = append(all, time.Since(start))
			s.StartVSwitchd()
		}
	}
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "median-µs")
	b.ReportMetric(float64(all[len(all)-1].Microseconds()), "worst-µs")
}
