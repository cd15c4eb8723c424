package fleet

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"

	"github.com/ovsgate/ovsgate/internal/kubetest"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: 100 per second on
// every Linux that Go runs on.
const userHZ = 100

// families are the metric families of one scrape, by name.
type families map[string]*dto.MetricFamily

// reading is the state of the control plane at one instant.
type reading struct {
	at      time.Time
	apiPID  int
	apiCPU  time.Duration // kube-apiserver's user+system CPU
	etcdCPU time.Duration
	selfCPU time.Duration // this process: the simulated fleet
	// busy and total are the whole machine's CPU time, busy and in all,
	// from /proc/stat: how much of it the window left to anyone.
	busy, total time.Duration
	api         families // kube-apiserver's /metrics
	etcd        families // etcd's /metrics
}

// meter reads the control plane of one cluster.
type meter struct {
	c    *kubetest.Cluster
	etcd *http.Client
}

func newMeter(c *kubetest.Cluster) *meter {
	return &meter{c: c, etcd: c.EtcdClient(30 * time.Second)}
}

// read takes a reading. At the start of a window the scrapes come first and
// the CPU times last, at its end the other way round, so that the CPU the
// scrapes cost (a kube-apiserver's /metrics is megabytes) falls outside the
// window.
func (m *meter) read(tb testing.TB, start bool) reading {
	tb.Helper()
	var r reading
	scrape := func() {
		r.api = m.scrapeAPI(tb)
		r.etcd = m.scrape(tb, m.etcd, m.c.EtcdURL()+"/metrics")
	}
	if start {
		scrape()
	}
	r.at = time.Now()
	r.apiPID = m.c.APIServerPID()
	r.apiCPU = procCPU(tb, r.apiPID)
	r.etcdCPU = procCPU(tb, m.c.EtcdPID())
	r.selfCPU = selfCPU(tb)
	r.busy, r.total = machineCPU(tb)
	if !start {
		scrape()
	}
	return r
}

// scrapeAPI reads kube-apiserver's /metrics as the admin user, on a client
// of its own that keeps no connection, so that a restarted server needs
// nothing done.
func (m *meter) scrapeAPI(tb testing.TB) families {
	tb.Helper()
	cfg := m.c.RESTConfig(tb, kubetest.AdminUser)
	cfg.Timeout = time.Minute
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		tb.Fatalf("metrics client: %v", err)
	}
	defer hc.CloseIdleConnections()
	return m.scrape(tb, hc, m.c.URL()+"/metrics")
}

func (m *meter) scrape(tb testing.TB, hc *http.Client, url string) families {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		tb.Fatalf("scrape %s: %s: %s", url, resp.Status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	f, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("parse %s: %v", url, err)
	}
	return f
}

// procCPU is a process's user+system CPU time, its threads' included.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	if pid == 0 {
		tb.Fatal("CPU time: the process is not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatalf("CPU time: %v", err)
	}
	d, err := parseStatCPU(string(b))
	if err != nil {
		tb.Fatalf("CPU time of pid %d: %v", pid, err)
	}
	return d
}

// parseStatCPU reads utime and stime (fields 14 and 15) of /proc/PID/stat.
// The command name (field 2) may hold spaces and parentheses, so the fields
// are counted from its last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // fields 14 and 15, counting from field 3
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// machineCPU is the CPU time of all the machine's cores since boot: busy
// (everything but idle and iowait) and in all.
func machineCPU(tb testing.TB) (busy, total time.Duration) {
	tb.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		tb.Fatalf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal; guest time, after
	// them, is counted in user already.
	for i, s := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			tb.Fatalf("/proc/stat: %v", err)
		}
		d := time.Duration(n) * time.Second / userHZ
		total += d
		if i != 3 && i != 4 {
			busy += d
		}
	}
	return busy, total
}

func selfCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// labelsMatch reports whether m has every label in match.
func labelsMatch(m *dto.Metric, match map[string]string) bool {
	have := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range match {
		if have[k] != v {
			return false
		}
	}
	return true
}

// value sums the counters and gauges of a family whose labels include match.
func (f families) value(name string, match map[string]string) float64 {
	var sum float64
	for _, m := range f[name].GetMetric() {
		if labelsMatch(m, match) {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// histogram is a Prometheus histogram: cumulative counts at upper bounds.
type histogram struct {
	bounds []float64
	cum    []float64
	count  float64
}

// histogram sums the series of a histogram family whose labels include match.
func (f families) histogram(name string, match map[string]string) histogram {
	var h histogram
	for _, m := range f[name].GetMetric() {
		if !labelsMatch(m, match) || m.GetHistogram() == nil {
			continue
		}
		bs := m.GetHistogram().GetBucket()
		if h.bounds == nil {
			for _, b := range bs {
				h.bounds = append(h.bounds, b.GetUpperBound())
			}
			h.cum = make([]float64, len(bs))
		}
		for i, b := range bs {
			if i < len(h.cum) && b.GetUpperBound() == h.bounds[i] {
				h.cum[i] += float64(b.GetCumulativeCount())
			}
		}
		h.count += float64(m.GetHistogram().GetSampleCount())
	}
	return h
}

// minus is what h counted since earlier, a reading of the same series.
func (h histogram) minus(earlier histogram) histogram {
	out := histogram{bounds: h.bounds, cum: slices.Clone(h.cum), count: h.count - earlier.count}
	if len(earlier.cum) == len(out.cum) {
		for i := range out.cum {
			out.cum[i] -= earlier.cum[i]
		}
	}
	return out
}

// quantile estimates the q-quantile as Prometheus' histogram_quantile does:
// linearly within the bucket that holds it. Above the largest finite bound
// it is that bound; NaN when the histogram is empty.
func (h histogram) quantile(q float64) float64 {
	if h.count <= 0 || len(h.bounds) == 0 {
		return math.NaN()
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for i, upper := range h.bounds {
		if h.cum[i] >= rank {
			if math.IsInf(upper, 1) {
				return lower
			}
			in := h.cum[i] - below
			if in <= 0 {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/in
		}
		lower, below = upper, h.cum[i]
	}
	return lower
}

// percentile is the p-th percentile of ds (nearest rank); 0 when empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}
