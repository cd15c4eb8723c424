package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Read from a ready `ovsgate serve` of the sandbox.
const (
	procStatus = `Name:	ovsgate
Umask:	0022
State:	S (sleeping)
Pid:	19280
VmPeak:	 1274252 kB
VmSize:	 1274252 kB
VmHWM:	   17876 kB
VmRSS:	   17876 kB
RssAnon:	    4468 kB
RssFile:	   13408 kB
RssShmem:	       0 kB
VmSwap:	       0 kB
Threads:	7
SigQ:	0/7823
voluntary_ctxt_switches:	11
`
	smapsRollup = `00400000-7ffdefcf1000 ---p 00000000 00:00 0                              [rollup]
Rss:               17876 kB
Pss:               17869 kB
Pss_Anon:           4468 kB
Shared_Clean:          8 kB
Shared_Dirty:          0 kB
Private_Clean:         0 kB
Private_Dirty:     17868 kB
Anonymous:          4468 kB
Swap:                  0 kB
`
	metricsText = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 21
# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 3.85024e+06
# HELP go_memstats_mallocs_total Total number of heap objects allocated.
# TYPE go_memstats_mallocs_total counter
go_memstats_mallocs_total 12192
# HELP ovsgate_bridge_ready Whether the bridge is ready.
# TYPE ovsgate_bridge_ready gauge
ovsgate_bridge_ready{bridge="br-int"} 1
ovsgate_bridge_ready{bridge="br-ex"} 0
`
)

func TestParseKiB(t *testing.T) {
	status := parseKiB(procStatus)
	assert.Equal(t, 17876, status["VmRSS"])
	assert.Equal(t, 4468, status["RssAnon"])
	assert.Equal(t, 13408, status["RssFile"])
	assert.Equal(t, status["VmRSS"], status["RssAnon"]+status["RssFile"]+status["RssShmem"])
	assert.NotContains(t, status, "Threads", "a count is not a size")
	assert.NotContains(t, status, "Name")

	rollup := parseKiB(smapsRollup)
	assert.Equal(t, 17876, rollup["Rss"])
	assert.Equal(t, 17868, rollup["Private_Dirty"])
	assert.Len(t, rollup, 9, "the [rollup] header line is not a field")

	assert.Empty(t, parseKiB(""))
}

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(metricsText))
	require.NoError(t, err)
	assert.InDelta(t, 21, m["go_goroutines"], 0)
	assert.InDelta(t, 3850240, m["go_memstats_heap_inuse_bytes"], 0)
	assert.InDelta(t, 12192, m["go_memstats_mallocs_total"], 0)
	assert.InDelta(t, 1, m["ovsgate_bridge_ready"], 0, "labelled samples are summed")

	_, err = parseMetrics(strings.NewReader("go_goroutines twenty\n"))
	assert.Error(t, err)
}

func TestMedianRatio(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, tc := range []struct {
		name       string
		ours, base []time.Duration
		want       float64
		wantErr    bool
	}{
		// A round slowed down for both servers must not move the ratio.
		{name: "paired, one noisy round", ours: ms(110, 105, 300, 108, 104), base: ms(100, 100, 150, 100, 100), want: 1.08},
		{name: "median of ratios, not ratio of medians", ours: ms(10, 30, 20), base: ms(10, 10, 40), want: 1},
		{name: "even count averages the middle two", ours: ms(10, 12, 14, 16), base: ms(10, 10, 10, 10), want: 1.3},
		{name: "lengths differ", ours: ms(1, 2), base: ms(1), wantErr: true},
		{name: "no rounds", wantErr: true},
		{name: "baseline measured nothing", ours: ms(1, 2), base: ms(1, 0), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := medianRatio(tc.ours, tc.base)
			if tc.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-9)
		})
	}
	assert.InDelta(t, 0, medianF(nil), 0)
	vals := []float64{3, 1, 2}
	assert.InDelta(t, 2, medianF(vals), 0)
	assert.Equal(t, []float64{3, 1, 2}, vals, "medianF must not sort its input in place")
}

func TestAlternate(t *testing.T) {
	var order []string
	round := 0
	a := func() (string, error) { order = append(order, "a"); return "a" + string(rune('0'+round)), nil }
	b := func() (string, error) {
		order = append(order, "b")
		round++
		return "b", nil
	}
	as, bs, err := alternate(4, a, b)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "b", "a", "a", "b", "b", "a"}, order, "the order flips every round")
	assert.Equal(t, []string{"a0", "a2", "a2", "a4"}, as, "each side keeps its own results")
	assert.Equal(t, []string{"b", "b", "b", "b"}, bs)

	boom := errors.New("boom")
	_, _, err = alternate(3, a, func() (string, error) { return "", boom })
	assert.ErrorIs(t, err, boom)
}

func TestScaleSteps(t *testing.T) {
	assert.Equal(t, []int{0, 1000, 5000, 10000}, scaleSteps([]int{0, 1000, 10000}, 0, 5000))
	assert.Equal(t, []int{0, 5000}, scaleSteps([]int{5000}, 0, 5000))
	assert.Equal(t, []int{0, 5000}, scaleSteps(nil, 0, 5000))
}

func TestTargets(t *testing.T) {
	mem := func(rssKiB, goroutines int) memSnapshot {
		return memSnapshot{rssKiB: rssKiB, goroutines: goroutines, heapBytes: 2 << 20}
	}
	day := func(before, after memSnapshot) soakResult {
		return soakResult{before: before, mid: before, after: after, took: time.Minute}
	}
	fl := floorMem{rssKiB: 10 << 10, anonKiB: 5 << 10, fileKiB: 5 << 10, binBytes: 5 << 20}
	durations := func(d time.Duration, n int) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = d
		}
		return s
	}
	for _, tc := range []struct {
		name string
		t    target
		met  bool
	}{
		{"probe at the limit", probeTarget(110*time.Microsecond, 100*time.Microsecond, 1.10, 1.02), true},
		{"probe above", probeTarget(120*time.Microsecond, 100*time.Microsecond, 1.2, 1.02), false},
		{"rss small, flat", rssTarget(mem(11<<10, 21), day(mem(12<<10, 21), mem(13<<10, 21)), fl), true},
		{"rss too big", rssTarget(mem(13<<10, 21), day(mem(13<<10, 21), mem(13<<10, 21)), fl), false},
		{"rss grows", rssTarget(mem(10<<10, 21), day(mem(10<<10, 21), mem(11<<10+1, 21)), fl), false},
		{"goroutines leak", rssTarget(mem(10<<10, 21), day(mem(10<<10, 21), mem(10<<10, 22)), fl), false},
		{"goroutines unread", rssTarget(mem(10<<10, 0), day(mem(10<<10, 0), mem(10<<10, 0)), fl), false},
		{"reaction fast", reactionTarget(durations(time.Millisecond, 50), durations(0, 50), durations(8*time.Millisecond, 50)), true},
		{"reaction p99 slow", reactionTarget(append(durations(time.Millisecond, 49), 4*time.Millisecond), durations(0, 50), durations(8*time.Millisecond, 50)), true},
		{"reaction p99 slow in 200 trials", reactionTarget(append(durations(time.Millisecond, 190), durations(4*time.Millisecond, 10)...), durations(0, 200), durations(8*time.Millisecond, 200)), false},
		{"reaction median too close to the shell's", reactionTarget(durations(3*time.Millisecond, 50), durations(time.Millisecond, 50), durations(8*time.Millisecond, 50)), false},
		{"check flat", checkTarget(checkCost{rel: 1.5}, checkCost{rel: 1.6}), true},
		{"check grows", checkTarget(checkCost{rel: 1.5}, checkCost{rel: 1.8}), false},
		{"idle", idleTarget(29*time.Millisecond, time.Minute), true},
		{"idle busy", idleTarget(31*time.Millisecond, time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.met, tc.t.met)
			assert.True(t, strings.HasPrefix(tc.t.row, "| targets: "), tc.t.row)
			assert.Equal(t, 6, strings.Count(tc.t.row, "|")-strings.Count(tc.t.row, `\|`), "five cells: %s", tc.t.row)
			assert.Equal(t, tc.met, strings.HasSuffix(tc.t.row, ": met |"), tc.t.row)
		})
	}
	ts := []target{{name: "a", met: true}, {name: "b"}, {name: "c", met: true}, {name: "d"}}
	assert.Equal(t, "targets met: 2 of 4 (missed: b, d)", targetSummary(ts))
	assert.Equal(t, "targets met: 1 of 1", targetSummary(ts[:1]))
}

// The heap is read only from scrapes that follow a collection, the first
// ones skipped, and the least of those, since a scrape's own garbage
// inflates some of them.
func TestRuntimeAfterGC(t *testing.T) {
	type sample struct{ lastGC, heap, goroutines float64 }
	scrapes := func(ss ...sample) func() (map[string]float64, error) {
		i := 0
		return func() (map[string]float64, error) {
			if i == len(ss) {
				return nil, errors.New("no more scrapes")
			}
			s := ss[i]
			i++
			return map[string]float64{"go_memstats_last_gc_time_seconds": s.lastGC, "go_memstats_heap_alloc_bytes": s.heap, "go_goroutines": s.goroutines}, nil
		}
	}
	last, heap, goroutines, err := runtimeAfterGC(scrapes(
		sample{1, 1, 23},  // before the first collection: not a reading
		sample{1, 9, 22},  // no collection since
		sample{2, 1, 22},  // a collection, skipped
		sample{3, 5, 21},  // first
		sample{3, 2, 22},  // no collection since: lower, but not a reading
		sample{4, 3, 22},  // second
		sample{5, 4, 23},  // third
		sample{6, 99, 99}, // never read
	), 1, 3, time.Minute)
	require.NoError(t, err)
	assert.InDelta(t, 3, heap, 0)
	assert.Equal(t, 22, goroutines, "the most frequent count, not the least")
	assert.InDelta(t, 5, last["go_memstats_last_gc_time_seconds"], 0)

	_, _, _, err = runtimeAfterGC(scrapes(sample{1, 1, 1}, sample{2, 1, 1}), 0, 2, time.Minute)
	assert.Error(t, err, "the scrapes ran out before the second collection")

	never := func() (map[string]float64, error) {
		return map[string]float64{"go_memstats_last_gc_time_seconds": 1}, nil
	}
	_, _, _, err = runtimeAfterGC(never, 0, 1, 10*time.Millisecond)
	assert.Error(t, err, "no collection within the limit")
}

// The status-file wait wakes on a rename into the directory, as the daemon
// replaces its file, well before its fallback interval.
func TestFileEventsWakeOnRename(t *testing.T) {
	dir := t.TempDir()
	w, err := watchDir(dir)
	require.NoError(t, err)
	defer w.close()
	target := filepath.Join(dir, "status.json")
	done := make(chan bool, 1)
	go func() {
		done <- w.waitFor(10*time.Second, time.Hour, func() bool { _, err := os.Stat(target); return err == nil })
	}()
	tmp := filepath.Join(dir, ".status.json.tmp")
	require.NoError(t, os.WriteFile(tmp, []byte("{}"), 0o644))
	start := time.Now()
	require.NoError(t, os.Rename(tmp, target))
	assert.True(t, <-done)
	assert.Less(t, time.Since(start), 5*time.Second, "woken by the event, not the hour-long fallback")
	assert.False(t, w.waitFor(10*time.Millisecond, time.Millisecond, func() bool { return false }), "gives up at the deadline")
}

func TestRotate(t *testing.T) {
	var order []string
	f := func(name string) func() (string, error) {
		return func() (string, error) { order = append(order, name); return name + strconv.Itoa(len(order)), nil }
	}
	res, err := rotate(3, f("a"), f("b"), f("c"))
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c", "b", "c", "a", "c", "a", "b"}, order, "each round starts one further on")
	assert.Equal(t, [][]string{{"a1", "a6", "a8"}, {"b2", "b4", "b9"}, {"c3", "c5", "c7"}}, res, "results stay with their function, in round order")

	boom := errors.New("boom")
	_, err = rotate(2, f("a"), func() (string, error) { return "", boom })
	assert.ErrorIs(t, err, boom)
}

// The test binary's own code is running, so some of its .text is resident,
// and never more than the section holds.
func TestResidentSections(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	secs, err := residentSections(os.Getpid(), self)
	require.NoError(t, err)
	var text *sectionResidency
	for i := range secs {
		assert.LessOrEqual(t, secs[i].resident, secs[i].size, secs[i].name)
		if secs[i].name == ".text" {
			text = &secs[i]
		}
	}
	require.NotNil(t, text, "sections: %v", secs)
	assert.Positive(t, text.resident)
	assert.Contains(t, sectionsText(secs), ".text ")

	_, err = residentSections(os.Getpid(), "/nonexistent/binary")
	assert.Error(t, err)
}

func TestMode(t *testing.T) {
	assert.Equal(t, 21, mode(map[int]int{20: 1, 21: 292, 22: 7}))
	assert.Equal(t, 20, mode(map[int]int{20: 3, 21: 3}), "a tie goes to the lower")
}

func TestRatioOver(t *testing.T) {
	assert.Equal(t, "2.00x", ratioOver(20, 10))
	assert.Equal(t, "", ratioOver(20, 0))
}
