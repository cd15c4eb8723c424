package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The project's performance targets; each is one row at the top of the
// table, met only when every part of it is.
const (
	targetProbeRatio    = 1.10                 // server CPU per /readyz, ours / bare net/http
	targetRSSKiB        = 12 << 10             // a ready serve with one bridge
	targetSoakGrowthKiB = 1 << 10              // RSS a day of probes may add
	targetReactionP99   = 3 * time.Millisecond // add-br returns -> ready
	targetReactionShare = 0.25                 // of the shell gate's median
	targetCheckRatio    = 1.10                 // check CPU, checkPorts ports / none
	targetIdlePercent   = 0.05                 // of a core
)

const (
	checkPorts = 5000 // ports on br-int for the check target
	checkRuns  = 31   // `ovsgate check` runs per port count: a 12 ms process is noisy

	// probeRounds rounds of probeRoundRequests requests to each server,
	// alternating, so that a slow stretch of a noisy machine falls on both.
	// With 5 rounds, two identical bare servers came out 0.89x to 1.07x
	// apart from run to run on a 2-core machine; the median of more rounds
	// narrows that, at about 2.7 s a round.
	probeRounds        = 15
	probeRoundRequests = 4000
)

// target is one performance target's table row and whether it was met.
type target struct {
	name string // for the summary on stderr
	row  string
	met  bool
}

// targetRow is a table row of a target: goal carries the verdict.
func targetRow(name, figure, ours, base, ratio, goal string, met bool) target {
	verdict := "met"
	if !met {
		verdict = "**missed**"
	}
	return target{name: name, met: met,
		row: fmt.Sprintf("| targets: %s | %s | %s | %s | %s: %s |", figure, ours, base, ratio, goal, verdict)}
}

// targetSummary is the one line on stderr: how many targets were met,
// and which were not.
func targetSummary(ts []target) string {
	var missed []string
	for _, t := range ts {
		if !t.met {
			missed = append(missed, t.name)
		}
	}
	s := fmt.Sprintf("targets met: %d of %d", len(ts)-len(missed), len(ts))
	if len(missed) > 0 {
		s += " (missed: " + strings.Join(missed, ", ") + ")"
	}
	return s
}

func probeTarget(oursCPU, bareCPU time.Duration, ratio, noise float64) target {
	return targetRow("probe CPU vs bare net/http",
		fmt.Sprintf("server CPU per `/readyz` on a new connection, back to back (4 clients; median of %d rounds of %s requests, taking turns with the bare server)", probeRounds, thousands(probeRoundRequests)),
		us(oursCPU), fmt.Sprintf("bare net/http %s (a second bare server, measured alike, came out at %.2fx the first)", us(bareCPU), noise), fmt.Sprintf("%.2fx", ratio),
		fmt.Sprintf("at most %.2fx", targetProbeRatio), ratio <= targetProbeRatio)
}

// rssTarget is a ready serve's RSS, and what a day of probes changed.
// floor is a bare net/http server's memory, read as the day's first
// reading is.
func rssTarget(ready memSnapshot, day soakResult, floor floorMem) target {
	before, mid, after := day.before, day.mid, day.after
	growth := after.rssKiB - before.rssKiB
	rssOK := ready.rssKiB <= targetRSSKiB
	soakOK := growth <= targetSoakGrowthKiB && after.goroutines == before.goroutines && before.goroutines > 0
	return targetRow("RSS and soak",
		fmt.Sprintf("RSS of a ready `serve` (one bridge); then a day of probes compressed: %s `/readyz` on new connections from %d clients in %s, memory read before, halfway and after, each time once the load is %s past",
			thousands(soakProbes), soakClients, day.took.Round(100*time.Millisecond), soakSettle),
		fmt.Sprintf("%s; over the day RSS %s -> %s -> %s (%+.2f MiB: RssAnon %+.2f, RssFile %+.2f; Go heap freed but not yet returned to the OS %s -> %s -> %s), Go heap %s -> %s -> %s, goroutines %d -> %d -> %d",
			mibOf(ready.rssKiB), mibOf(before.rssKiB), mibOf(mid.rssKiB), mibOf(after.rssKiB), float64(growth)/1024,
			float64(after.status["RssAnon"]-before.status["RssAnon"])/1024, float64(after.status["RssFile"]-before.status["RssFile"])/1024,
			mibOfBytes(heapKept(before)), mibOfBytes(heapKept(mid)), mibOfBytes(heapKept(after)),
			mibOfBytes(before.heapBytes), mibOfBytes(mid.heapBytes), mibOfBytes(after.heapBytes),
			before.goroutines, mid.goroutines, after.goroutines),
		fmt.Sprintf("bare net/http server (%s binary, nothing else linked), read as the day's first reading is: %s (RssAnon %s + RssFile %s)",
			mibOfBytes(float64(floor.binBytes)), mibOf(floor.rssKiB), mibOf(floor.anonKiB), mibOf(floor.fileKiB)),
		ratioOver(before.rssKiB, floor.rssKiB),
		fmt.Sprintf("RSS at most %s (%s); over the day, RSS growth at most %s and goroutines unchanged (%s)",
			mibOf(targetRSSKiB), verdict(rssOK), mibOf(targetSoakGrowthKiB), verdict(soakOK)),
		rssOK && soakOK)
}

// ratioOver is ours / base as the targets rows write it; empty without a
// base.
func ratioOver(ours, base int) string {
	if base <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2fx", float64(ours)/float64(base))
}

// decided is when the gate itself turned ready in each trial (see
// env.reaction), shown beside the end-to-end figures so that a slow trial
// tells the gate's part from the delivery's.
func reactionTarget(gate, decided, shell []time.Duration) target {
	med, p99, shellMed := pct(gate, 50), pct(gate, 99), pct(shell, 50)
	share := float64(med) / float64(max(shellMed, 1))
	p99OK, shareOK := p99 <= targetReactionP99, share <= targetReactionShare
	return targetRow("reaction",
		fmt.Sprintf("add-br returns -> ready (status file replaced and `/readyz` 200), %d trials", len(gate)),
		fmt.Sprintf("median %s, p99 %s; of which the gate's own decision (the ready status's `updated` after add-br returned, 0 if before): median %s, p99 %s, the rest being the status file's write and the reader's requests",
			ms(med), ms(p99), ms(pct(decided, 50)), ms(pct(decided, 99))), "shell gate median "+ms(shellMed), fmt.Sprintf("%.2fx", share),
		fmt.Sprintf("p99 at most %s (%s); median at most %.2fx the shell gate's (%s)", ms(targetReactionP99), verdict(p99OK), targetReactionShare, verdict(shareOK)),
		p99OK && shareOK)
}

// checkTarget compares check's CPU at checkPorts ports with none, each
// taken relative to `ovsgate version` run beside it.
func checkTarget(none, many checkCost) target {
	r := many.rel / none.rel
	return targetRow("check CPU",
		fmt.Sprintf("CPU (user+system) of one `ovsgate check`, %s ports on br-int against none (%d runs each, each beside a run of `ovsgate version`; ratio of the medians of check / version)", thousands(checkPorts), checkRuns),
		fmt.Sprintf("%s (%.2fx version's %s)", ms(many.cpu), many.rel, ms(many.ref)),
		fmt.Sprintf("no ports %s (%.2fx version's %s)", ms(none.cpu), none.rel, ms(none.ref)),
		fmt.Sprintf("%.2fx", r),
		fmt.Sprintf("at most %.2fx", targetCheckRatio), r <= targetCheckRatio)
}

func idleTarget(cpu, over time.Duration) target {
	p := idlePercent(cpu, over)
	return targetRow("idle CPU",
		fmt.Sprintf("CPU of a ready `serve` while idle over %s", over),
		fmt.Sprintf("%s (%.3f%% of a core)", ms(cpu), p), "", "",
		fmt.Sprintf("at most %.2f%% of a core", targetIdlePercent), p <= targetIdlePercent)
}

func idlePercent(cpu, over time.Duration) float64 { return 100 * cpu.Seconds() / over.Seconds() }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// alternate runs a and b rounds times, a first in even rounds and b first
// in odd ones, so that neither always runs in the other's wake, and
// returns each one's results in round order.
func alternate[T any](rounds int, a, b func() (T, error)) (as, bs []T, err error) {
	r, err := rotate(rounds, a, b)
	if err != nil {
		return nil, nil, err
	}
	return r[0], r[1], nil
}

// rotate runs each of fns once per round, rounds times, starting round i
// with fns[i%len(fns)] and going on in order, so that each one runs in
// every position as often as the others; it returns each one's results in
// round order, indexed as fns.
func rotate[T any](rounds int, fns ...func() (T, error)) ([][]T, error) {
	res := make([][]T, len(fns))
	for i := 0; i < rounds; i++ {
		for k := range fns {
			j := (i + k) % len(fns)
			v, err := fns[j]()
			if err != nil {
				return nil, err
			}
			res[j] = append(res[j], v)
		}
	}
	return res, nil
}

// medianRatio is the median over rounds of ours/base, each round's pair
// measured side by side; a round where base measured nothing is an error.
func medianRatio(ours, base []time.Duration) (float64, error) {
	if len(ours) != len(base) || len(ours) == 0 {
		return 0, fmt.Errorf("ratio of %d rounds to %d", len(ours), len(base))
	}
	r := make([]float64, len(ours))
	for i := range ours {
		if base[i] <= 0 {
			return 0, fmt.Errorf("round %d: the baseline measured %s", i+1, base[i])
		}
		r[i] = float64(ours[i]) / float64(base[i])
	}
	return medianF(r), nil
}

// medianF is the median of xs, the mean of the middle two for an even
// count; 0 for none.
func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// scaleSteps are the port counts the scale section visits, in order: the
// counts asked for, and those the check target needs.
func scaleSteps(counts []int, extra ...int) []int {
	s := slices.Concat(counts, extra)
	slices.Sort(s)
	return slices.Compact(s)
}

// checkCost is what one `ovsgate check` cost against the sandbox: the
// medians of its CPU and of the CPU of `ovsgate version` run beside it,
// and the median of the runs' check/version ratios.
type checkCost struct {
	cpu, ref time.Duration
	rel      float64
}

// checkCPU runs `ovsgate check` against the sandbox runs times, each time
// beside `ovsgate version` (in turn before and after it), and measures
// both from their rusage (user+system). version pays the same start of
// the same binary and no OVS work; check relative to it is a figure that
// holds still while the machine as a whole runs faster or slower, which
// moved the median of 15 checks by 30% within a minute in trials.
func (e *env) checkCPU(runs int) (checkCost, error) {
	run := func(args ...string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, e.bin, args...)
			if out, err := cmd.CombinedOutput(); err != nil {
				return 0, fmt.Errorf("%s %s: %w: %s", e.bin, args[0], err, lastLine(string(out)))
			}
			return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
		}
	}
	checks, refs, err := alternate(runs,
		run("check", "--ovsdb", "unix:"+filepath.Join(e.dir, "db.sock"), "--ovs-rundir", e.dir),
		run("version"))
	if err != nil {
		return checkCost{}, err
	}
	rel, err := medianRatio(checks, refs)
	return checkCost{cpu: pct(checks, 50), ref: pct(refs, 50), rel: rel}, err
}
