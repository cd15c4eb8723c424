package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const (
	// soakProbes is a day of probes at one a second, sent as fast as
	// soakClients clients go, so that a leak per request shows in seconds.
	soakProbes  = 86400
	soakClients = 4
	// soakWarmup requests come first, so that the day starts from the
	// same state it ends in: after a load, not after an idle minute in
	// which the runtime returned memory to the OS.
	soakWarmup = 4000
	// soakSettle is the wait after a load before memory is read; then up
	// to soakGoroutineWait for the connections' goroutines to end.
	soakSettle        = 5 * time.Second
	soakGoroutineWait = 15 * time.Second
	// snapshotGCs collections are watched for each reading of the heap,
	// after the first, which may still be the last load's.
	snapshotGCs = 12
)

// memSnapshot is what serve's memory is made of at one moment.
type memSnapshot struct {
	rssKiB     int
	status     map[string]int     // /proc/PID/status, kB fields
	rollup     map[string]int     // /proc/PID/smaps_rollup, kB fields
	metrics    map[string]float64 // the last scrape of the metrics listener
	heapBytes  float64            // the least go_memstats_heap_alloc_bytes seen just after a collection
	goroutines int                // the most frequent go_goroutines value seen
}

// snapshot reads serve's memory: RSS first, as it stands, then the Go
// runtime's metrics over a few garbage collections.
func (e *env) snapshot() (memSnapshot, error) {
	pid := e.serve.Process.Pid
	s := memSnapshot{status: procKiB(pid, "status"), rollup: procKiB(pid, "smaps_rollup")}
	s.rssKiB = s.status["VmRSS"]
	var err error
	s.metrics, s.heapBytes, s.goroutines, err = runtimeAfterGC(func() (map[string]float64, error) { return scrape(e.metrics) }, 1, snapshotGCs, time.Minute)
	return s, err
}

// runtimeAfterGC scrapes until skip and then gcs more garbage collections
// have run, and returns the last scrape, the least heap seen in a scrape
// that followed one of the gcs collections, and the most frequent
// goroutine count.
// Each scrape allocates in the server, so the scrapes themselves bring
// collections on. The registry runs its collectors concurrently, so how
// much of a scrape's own allocation the heap it reports includes varies
// from scrape to scrape (2.7 to 5.8 MiB just after a collection, for the
// same server, in trials); the least of a dozen held to 0.1 MiB. The first
// collection after a load is left out: it alone comes before scraping
// does, and reads 0.9 MiB lower than those the scrapes bring on.
// A scrape counts its own goroutines too (the one serving it and the
// workers the registry starts to collect it), so the count jitters by one
// or two from scrape to scrape: over 300 scrapes of an idle serve, 289
// read the same value and 11 one more; after a day of probes, 292 read
// that value, 7 one more and 1 one less. The most frequent value is the
// server's own plus the scrape's usual share, and a least or greatest
// would be the rare outlier.
func runtimeAfterGC(scrape func() (map[string]float64, error), skip, gcs int, limit time.Duration) (last map[string]float64, heap float64, goroutines int, err error) {
	m, err := scrape()
	if err != nil {
		return nil, 0, 0, err
	}
	seen := map[int]int{int(m["go_goroutines"]): 1}
	deadline := time.Now().Add(limit)
	for gc := 0; gc < skip+gcs; {
		if time.Now().After(deadline) {
			return nil, 0, 0, fmt.Errorf("%d of %d garbage collections in %s of scraping", gc, skip+gcs, limit)
		}
		prev := m["go_memstats_last_gc_time_seconds"]
		if m, err = scrape(); err != nil {
			return nil, 0, 0, err
		}
		seen[int(m["go_goroutines"])]++
		if m["go_memstats_last_gc_time_seconds"] == prev {
			continue
		}
		if h := m["go_memstats_heap_alloc_bytes"]; gc == skip || (gc > skip && h < heap) {
			heap = h
		}
		gc++
	}
	return m, heap, mode(seen), nil
}

// mode is the most frequent of the counted values, the lower one on a tie.
func mode(counts map[int]int) int {
	best, n := 0, 0
	for v, c := range counts {
		if c > n || (c == n && v < best) {
			best, n = v, c
		}
	}
	return best
}

// soakResult is serve's memory over a day of probes.
type soakResult struct {
	before, mid, after memSnapshot
	took               time.Duration // the day's requests, without the settling
}

// soak sends a day of probes to serve in two halves and reads its memory
// before, between and after them, each time settled the same way.
func (e *env) soak() (soakResult, error) {
	var res soakResult
	load := func(n int) error {
		start := time.Now()
		_, _, err := httpCost(e.serve.Process.Pid, "http://"+e.probe+"/readyz", n, soakClients, 0)
		res.took += time.Since(start)
		return err
	}
	if err := load(soakWarmup); err != nil {
		return res, err
	}
	res.took = 0
	var err error
	if res.before, err = e.settled(-1); err != nil {
		return res, err
	}
	if err := load(soakProbes / 2); err != nil {
		return res, err
	}
	if res.mid, err = e.settled(res.before.goroutines); err != nil {
		return res, err
	}
	if err := load(soakProbes - soakProbes/2); err != nil {
		return res, err
	}
	res.after, err = e.settled(res.before.goroutines)
	return res, err
}

// settled waits soakSettle, then up to soakGoroutineWait for serve to be
// back to goroutines (none when negative), then reads its memory.
func (e *env) settled(goroutines int) (memSnapshot, error) {
	time.Sleep(soakSettle)
	if goroutines >= 0 {
		pollEvery(500*time.Millisecond, soakGoroutineWait, func() bool {
			m, err := scrape(e.metrics)
			return err == nil && int(m["go_goroutines"]) <= goroutines
		})
	}
	return e.snapshot()
}

// rssBreakdown says what the RSS of s is made of: the kernel's split into
// anonymous and file pages, and the Go runtime's own account of the
// anonymous memory it holds.
func rssBreakdown(s memSnapshot) string {
	m := s.metrics
	idleKept := heapKept(s)
	runtimeMeta := m["go_memstats_gc_sys_bytes"] + m["go_memstats_mspan_sys_bytes"] + m["go_memstats_mcache_sys_bytes"] +
		m["go_memstats_buck_hash_sys_bytes"] + m["go_memstats_other_sys_bytes"]
	return fmt.Sprintf("RSS %s = RssAnon %s + RssFile %s (pages of the static ovsgate binary: code and read-only data) + RssShmem %s; "+
		"smaps_rollup: Private_Dirty %s, Private_Clean %s, Shared %s, Swap %s. "+
		"Go runtime: heap in use %s (objects just after a collection %s), heap freed but not yet returned to the OS %s, goroutine stacks %s, "+
		"runtime metadata (GC, spans, profiling buckets, other) %s mapped, not all of it resident",
		mibOf(s.rssKiB), mibOf(s.status["RssAnon"]), mibOf(s.status["RssFile"]), mibOf(s.status["RssShmem"]),
		mibOf(s.rollup["Private_Dirty"]), mibOf(s.rollup["Private_Clean"]), mibOf(s.rollup["Shared_Clean"]+s.rollup["Shared_Dirty"]), mibOf(s.rollup["Swap"]),
		mibOfBytes(m["go_memstats_heap_inuse_bytes"]), mibOfBytes(s.heapBytes), mibOfBytes(idleKept),
		mibOfBytes(m["go_memstats_stack_inuse_bytes"]), mibOfBytes(runtimeMeta))
}

// heapKept is the heap memory the Go runtime has freed but not yet
// returned to the OS: resident, counted in RssAnon, and given back by its
// scavenger over time.
func heapKept(s memSnapshot) float64 {
	return s.metrics["go_memstats_heap_idle_bytes"] - s.metrics["go_memstats_heap_released_bytes"]
}

func mibOf(kib int) string        { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
func mibOfBytes(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// procKiB reads the "Name: N kB" fields of /proc/PID/<file>; an empty map
// when the process is gone.
func procKiB(pid int, file string) map[string]int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		return map[string]int{}
	}
	return parseKiB(string(b))
}

// parseKiB picks the "Name: N kB" lines of /proc/PID/status or
// smaps_rollup, by name; other lines are skipped.
func parseKiB(text string) map[string]int {
	kib := map[string]int{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" || !strings.HasSuffix(f[0], ":") {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		kib[strings.TrimSuffix(f[0], ":")] = n
	}
	return kib
}

// scrape reads the metrics listener at addr, on a new connection each
// time: a kept-alive one would hold a goroutine in the server between
// scrapes, and go_goroutines would count it some times and not others.
func scrape(addr string) (map[string]float64, error) {
	c := http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	r, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", r.Status)
	}
	return parseMetrics(r.Body)
}

// parseMetrics sums each metric family's samples in the Prometheus text
// format: for the unlabelled Go runtime metrics, their value.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	out := make(map[string]float64, len(families))
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.Gauge != nil:
				out[name] += m.GetGauge().GetValue()
			case m.Counter != nil:
				out[name] += m.GetCounter().GetValue()
			case m.Untyped != nil:
				out[name] += m.GetUntyped().GetValue()
			}
		}
	}
	return out, nil
}
