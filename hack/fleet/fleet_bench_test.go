package fleet

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/internal/kubetest"
	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/nodecondition"
)

var (
	fleetNodes     = flag.Int("fleet.nodes", 1000, "how many nodes BenchmarkFleet simulates")
	fleetHeartbeat = flag.Duration("fleet.heartbeat", 0, "the compressed heartbeat (0: one that makes the fleet write about 70 times a second, 5 s at least)")
	fleetMD        = flag.String("fleet.md", "", "also write BenchmarkFleet's figures as a BENCHMARKS.md section to this file (a relative path is from hack/fleet)")
)

// Time is compressed where the real periods would make the run hours long:
// the 5 min heartbeat of ovsgate's condition and of the kubelet's Node
// status report become a few seconds (compressedHeartbeat), and the figures
// that follow from them are scaled back by the same factor. Everything else
// runs in real time: the writer's merge window and backoff, the kubelet's
// 10 s Lease renewal (at 60 times its rate, 1,000 kubelets would send 6,000
// renewals a second, far beyond a small machine), and the OVS events of the
// scenarios.
const (
	realHeartbeat = nodecondition.DefaultHeartbeat

	kubeletStatusEvery = 5 * time.Minute // nodeStatusReportFrequency, compressed like the heartbeat
	kubeletLeaseEvery  = 10 * time.Second

	idleFor  = 10 * time.Second // the idle control plane, whose CPU every window discounts
	leaseFor = 20 * time.Second // the kubelets' renewals
	// The windows of heartbeats (the calm and the kubelets' status reports)
	// last at least this long, and two heartbeats.
	heartbeatsFor = 30 * time.Second

	// A rolling upgrade of OVS takes 5% of the nodes at a time for 10 s:
	// 20 waves, 200 s. Every wave is alike, so a few of them are run and
	// the rate they make is the upgrade's.
	upgradeOutage = 10 * time.Second
	upgradeShare  = 20 // one wave is 1/20 of the nodes
	upgradeWaves  = 4

	// A storm: ovs-vswitchd restarting every 2 s on every node for a
	// minute, each restart keeping the gate unready for 100 ms (the gate's
	// detection benchmark measures about 85 ms from exit to ready again).
	// Half the minute is run; the rate is the storm's.
	stormFor   = 30 * time.Second
	stormEvery = 2 * time.Second
	stormDown  = 100 * time.Millisecond

	// The API server restarted in the middle of a calm stretch.
	restartCalm   = 10 * time.Second
	restartDown   = 20 * time.Second // from SIGTERM to starting it again
	herdWindow    = 10 * time.Second
	recoverWithin = 3 * time.Minute

	// settle follows a scenario's last OVS event, for the writes it causes
	// (one merge window, then the write) to land in its window.
	settle = 2 * time.Second
)

// BenchmarkFleet simulates a fleet of nodes, each with ovsgate's own
// node-condition writer, against a real kube-apiserver on etcd, and
// measures what the fleet costs the control plane beside what as many
// simulated kubelets cost it: writes per second, API server CPU per 1,000
// writes, etcd's growth and the API server's own latency of PATCH
// nodes/status. It runs once, for about five minutes at 1,000 nodes:
//
//	go test -run '^$' -bench '^BenchmarkFleet$' -benchtime 1x -timeout 20m ./hack/fleet -fleet.nodes=1000
func BenchmarkFleet(b *testing.B) {
	n := *fleetNodes
	if n < upgradeShare {
		b.Fatalf("-fleet.nodes=%d: at least %d nodes (an upgrade wave is 1/%d of them)", n, upgradeShare, upgradeShare)
	}
	r := &fleetRun{n: n, load0: loadavg(b), started: time.Now(), heartbeat: compressedHeartbeat(n)}
	r.compression = float64(realHeartbeat) / float64(r.heartbeat)
	r.heartbeatsFor = max(heartbeatsFor, 2*r.heartbeat)
	b.Logf("fleet: %d nodes, heartbeat %v for %v (compressed %.0f times)", n, r.heartbeat, realHeartbeat, r.compression)
	r.files = raiseFileLimit(b, 2*n+1024)
	r.logs = captureKlog(b)
	r.c = kubetest.Start(b)
	r.m = newMeter(r.c)
	r.admin = r.c.AdminClient()
	r.rec = &recorder{}
	grant(b, r.admin)
	createStart := time.Now()
	createNodes(b, r.admin, n)
	r.nodeBytes = nodeSize(b, r.admin)
	b.Logf("fleet: %d Nodes (%d bytes each as JSON) and Leases created in %v", n, r.nodeBytes, time.Since(createStart).Round(time.Millisecond))

	idle := r.measure(b, func() { pause(context.Background(), idleFor) })
	r.idleAPI = idle.apiCPU().Seconds() / idle.dur().Seconds()
	r.idleEtcd = idle.etcdCPU().Seconds() / idle.dur().Seconds()
	b.Logf("fleet: idle control plane: kube-apiserver %.1f%%, etcd %.1f%% of a core", 100*r.idleAPI, 100*r.idleEtcd)

	b.Run("kubelet", r.kubeletAnchor)

	writersStart := time.Now()
	r.fleet = startWriters(b, r.c.RESTConfig(b, kubetest.OVSGateUser), r.rec, n, r.heartbeat)
	if !testutil.Poll(recoverWithin, func() bool { return r.rec.written.Load() == int64(n) }) {
		b.Fatalf("only %d of %d writers wrote their condition within %v", r.rec.written.Load(), n, recoverWithin)
	}
	r.clientFDs, r.apiFDs = openFiles(b, os.Getpid()), openFiles(b, r.c.APIServerPID())
	b.Logf("fleet: %d writers started and written in %v; open files: this process %d, kube-apiserver %d (limit %d)",
		n, time.Since(writersStart).Round(time.Millisecond), r.clientFDs, r.apiFDs, r.files)

	b.Run("calm", r.calm)
	b.Run("upgrade", r.upgrade)
	b.Run("storm", r.storm)
	b.Run("restart", r.restart)
	r.fleet.stop(b)

	r.load1 = loadavg(b)
	section := r.section()
	b.Log("fleet: BENCHMARKS.md section:\n" + section)
	if *fleetMD != "" {
		if err := os.WriteFile(*fleetMD, []byte(section), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// compressedHeartbeat is the heartbeat of a run: -fleet.heartbeat, or the
// shortest whole fraction of the real one that has n nodes write at most 70
// times a second, which a kube-apiserver on 2 cores handles beside the
// simulated nodes.
func compressedHeartbeat(n int) time.Duration {
	if *fleetHeartbeat > 0 {
		return *fleetHeartbeat
	}
	for _, d := range []time.Duration{5, 10, 15, 20, 30, 60, 100, 150} {
		if d*time.Second*70 >= time.Duration(n)*time.Second {
			return d * time.Second
		}
	}
	return realHeartbeat
}

// captureKlog keeps the writers' logs for the benchmark to count, and off
// the terminal: the error lines too, which klog copies to stderr otherwise.
func captureKlog(b *testing.B) *testutil.SyncBuffer {
	b.Helper()
	logs, _ := testutil.CaptureKlog(b)
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if err := fs.Set("stderrthreshold", "FATAL"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = fs.Set("stderrthreshold", "ERROR") })
	return logs
}

// fleetRun is one run of the benchmark: its cluster, its fleet and the
// figures of each scenario, for the ratios and the BENCHMARKS.md section.
type fleetRun struct {
	n int
	// heartbeat is the compressed heartbeat, compression the factor.
	heartbeat     time.Duration
	compression   float64
	heartbeatsFor time.Duration // how long the windows of heartbeats last
	c             *kubetest.Cluster
	m             *meter
	admin         kubernetes.Interface
	rec           *recorder
	fleet         *writerFleet
	logs          *testutil.SyncBuffer
	started       time.Time
	idleAPI       float64 // CPU seconds per second of the idle kube-apiserver
	idleEtcd      float64

	nodeBytes                int
	files, clientFDs, apiFDs int
	load0, load1             string

	anchor    *anchorLoad
	results   []scenario
	restarted *restartFigures
}

// window is what the control plane did while one scenario ran.
type window struct {
	begin, end reading
	events     []event
	t          tally
}

// measure reads the control plane, runs drive, and reads it again.
func (r *fleetRun) measure(tb testing.TB, drive func()) window {
	tb.Helper()
	begin := r.m.read(tb, true)
	drive()
	end := r.m.read(tb, false)
	if begin.apiPID != end.apiPID {
		tb.Fatalf("kube-apiserver restarted within a window (pid %d, then %d)", begin.apiPID, end.apiPID)
	}
	ev := r.rec.between(begin.at, end.at)
	return window{begin: begin, end: end, events: ev, t: count(ev)}
}

func (w window) dur() time.Duration     { return w.end.at.Sub(w.begin.at) }
func (w window) apiCPU() time.Duration  { return w.end.apiCPU - w.begin.apiCPU }
func (w window) etcdCPU() time.Duration { return w.end.etcdCPU - w.begin.etcdCPU }
func (w window) selfCPU() time.Duration { return w.end.selfCPU - w.begin.selfCPU }

// usage says how busy the window kept kube-apiserver, etcd, the simulated
// nodes and the whole machine, in cores.
func (w window) usage() string {
	d := w.dur().Seconds()
	total := (w.end.total - w.begin.total).Seconds()
	cores := 0.0
	if total > 0 {
		cores = (w.end.busy - w.begin.busy).Seconds() / total * float64(runtime.NumCPU())
	}
	return fmt.Sprintf("busy: kube-apiserver %.2f, etcd %.2f, simulated nodes %.2f, whole machine %.2f of %d cores",
		w.apiCPU().Seconds()/d, w.etcdCPU().Seconds()/d, w.selfCPU().Seconds()/d, cores, runtime.NumCPU())
}

// The etcd figures: the bytes its database has in use (pages holding keys
// and their revisions), which grows with every write until the API server
// compacts the history (every 5 min); and the size of its file, which
// grows in large steps and never shrinks without a defragmentation.
const (
	etcdInUse = "etcd_mvcc_db_total_size_in_use_in_bytes"
	etcdTotal = "etcd_mvcc_db_total_size_in_bytes"
	// etcdCompactions counts the compactions etcd ran: one within a window
	// makes its growth an underestimate.
	etcdCompactions = "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds"
)

// cost is what the control plane paid per write in a window.
type cost struct {
	writes     int
	apiCPU     float64 // kube-apiserver CPU seconds per write, net of its idle CPU
	etcdCPU    float64
	etcdBytes  float64 // growth of etcd's database in use, per write
	compacted  bool    // etcd compacted within the window
	p50, p99   float64 // the API server's own latency, seconds (NaN: none)
	cp50, cp99 time.Duration
	clientCPU  float64 // this process (the simulated nodes) per write
}

// costOf divides a window's figures by its writes; verb and resource pick
// the API server's latency histogram.
func (r *fleetRun) costOf(w window, verb, resource, subresource string) cost {
	c := cost{writes: w.t.writes}
	if c.writes == 0 {
		return c
	}
	d := w.dur().Seconds()
	n := float64(c.writes)
	c.apiCPU = max(w.apiCPU().Seconds()-r.idleAPI*d, 0) / n
	c.etcdCPU = max(w.etcdCPU().Seconds()-r.idleEtcd*d, 0) / n
	c.clientCPU = w.selfCPU().Seconds() / n
	c.etcdBytes = (w.end.etcd.value(etcdInUse, nil) - w.begin.etcd.value(etcdInUse, nil)) / n
	c.compacted = w.end.etcd.histogram(etcdCompactions, nil).count > w.begin.etcd.histogram(etcdCompactions, nil).count
	match := map[string]string{"verb": verb, "resource": resource, "subresource": subresource}
	h := w.end.api.histogram("apiserver_request_duration_seconds", match).minus(w.begin.api.histogram("apiserver_request_duration_seconds", match))
	c.p50, c.p99 = h.quantile(0.5), h.quantile(0.99)
	c.cp50, c.cp99 = percentile(w.t.latencies, 50), percentile(w.t.latencies, 99)
	return c
}

// load is a rate of writes in real time, at the real heartbeat, and what it
// costs the control plane.
type load struct {
	writes    float64 // per second
	apiCores  float64 // kube-apiserver CPU seconds per second
	etcdCores float64
	etcdPerH  float64 // bytes etcd's database in use grows per hour, before compaction
}

func (l load) plus(o load) load {
	return load{l.writes + o.writes, l.apiCores + o.apiCores, l.etcdCores + o.etcdCores, l.etcdPerH + o.etcdPerH}
}

// at is rate writes per second at cost c.
func (c cost) at(rate float64) load {
	return load{writes: rate, apiCores: rate * c.apiCPU, etcdCores: rate * c.etcdCPU, etcdPerH: rate * c.etcdBytes * 3600}
}

// anchorLoad is the simulated kubelets' load: Lease renewals every 10 s and
// a Node status report every 5 min.
type anchorLoad struct {
	lease, status cost
	leaseRate     float64 // renewals per second, real time
	statusRate    float64 // status writes per second, scaled to the real 5 min
	total         load
}

// kubeletAnchor measures the kubelets' two writes, each in a window of its
// own, and reports their load at the real periods.
func (r *fleetRun) kubeletAnchor(b *testing.B) {
	base := r.c.RESTConfig(b, kubetest.OVSGateUser)
	kubelets := make([]*kubelet, r.n)
	for i := range kubelets {
		kubelets[i] = newKubelet(b, base, r.rec, i)
	}
	defer func() {
		for _, k := range kubelets {
			utilnet.CloseIdleConnectionsFor(k.hc.Transport)
		}
	}()
	// Connect, a few at a time as a fleet's kubelets start.
	connect := make(chan *kubelet)
	var wg sync.WaitGroup
	var failed sync.Map
	for range 16 {
		wg.Go(func() {
			for k := range connect {
				if err := k.connect(context.Background()); err != nil {
					failed.Store(k.name, err)
				}
			}
		})
	}
	for _, k := range kubelets {
		connect <- k
	}
	close(connect)
	wg.Wait()
	failed.Range(func(_, err any) bool { b.Fatal(err); return false })

	simStatus := time.Duration(float64(kubeletStatusEvery) / r.compression)
	leases := r.measure(b, func() {
		ctx, cancel := context.WithTimeout(context.Background(), leaseFor)
		defer cancel()
		every(ctx, kubelets, kubeletLeaseEvery, (*kubelet).renewLease)
	})
	status := r.measure(b, func() {
		ctx, cancel := context.WithTimeout(context.Background(), r.heartbeatsFor)
		defer cancel()
		every(ctx, kubelets, simStatus, (*kubelet).patchStatus)
	})
	// The kubelets' rates are their schedule's, which real kubelets keep;
	// the windows give what each write costs.
	a := &anchorLoad{
		lease:      r.costOf(leases, "PUT", "leases", ""),
		status:     r.costOf(status, "PATCH", "nodes", "status"),
		leaseRate:  float64(r.n) / kubeletLeaseEvery.Seconds(),
		statusRate: float64(r.n) / kubeletStatusEvery.Seconds(),
	}
	a.total = a.lease.at(a.leaseRate).plus(a.status.at(a.statusRate))
	for _, c := range []struct {
		w      window
		k      kind
		period time.Duration
		what   string
	}{{leases, kubeletLease, kubeletLeaseEvery, "renewals"}, {status, kubeletStatus, simStatus, "status reports"}} {
		if c.w.t.failures > 0 {
			b.Errorf("kubelets: %d of %d requests failed", c.w.t.failures, c.w.t.requests)
		}
		// A control plane that cannot keep up makes the kubelets fall behind.
		due := float64(r.n) * c.w.dur().Seconds() / c.period.Seconds()
		if got := float64(c.w.t.byKind[c.k]); got < 0.95*due {
			b.Logf("kubelets: %.0f %s sent of %.0f due: the control plane fell behind", got, c.what, due)
		}
	}
	r.anchor = a
	b.Logf("kubelets, renewals: %s; status reports: %s", leases.usage(), status.usage())
	b.Logf("kubelets, leases every %v: %d renewals in %v (%.1f/s), kube-apiserver %.2f s CPU per 1,000, etcd %.2f s, etcd +%.0f KiB per 1,000; PUT leases p50 %s p99 %s (client %v / %v)",
		kubeletLeaseEvery, leases.t.writes, leases.dur().Round(time.Millisecond), a.leaseRate, 1000*a.lease.apiCPU, 1000*a.lease.etcdCPU, a.lease.etcdBytes*1000/1024,
		secs(a.lease.p50), secs(a.lease.p99), a.lease.cp50.Round(time.Microsecond), a.lease.cp99.Round(time.Microsecond))
	b.Logf("kubelets, Node status every %v (compressed %v): %d patches in %v, kube-apiserver %.2f s CPU per 1,000 (its GETs included), etcd %.2f s, etcd +%.0f KiB per 1,000; PATCH nodes/status p50 %s p99 %s (client %v / %v)",
		kubeletStatusEvery, simStatus, status.t.writes, status.dur().Round(time.Millisecond), 1000*a.status.apiCPU, 1000*a.status.etcdCPU, a.status.etcdBytes*1000/1024,
		secs(a.status.p50), secs(a.status.p99), a.status.cp50.Round(time.Microsecond), a.status.cp99.Round(time.Microsecond))
	b.Logf("kubelets at the real periods, %d nodes: %.1f writes/s (%.1f renewals, %.2f status), kube-apiserver %.2f%% of a core, etcd %.2f%%, etcd +%.1f MiB/h",
		r.n, a.total.writes, a.leaseRate, a.statusRate, 100*a.total.apiCores, 100*a.total.etcdCores, a.total.etcdPerH/(1<<20))
	b.ReportMetric(a.total.writes, "writes/s")
	b.ReportMetric(100*a.total.apiCores, "apiserver-%core")
	b.ReportMetric(1000*a.lease.apiCPU, "apiserver-cpu-s/1000leases")
	b.ReportMetric(1000*a.status.apiCPU, "apiserver-cpu-s/1000status")
	b.ReportMetric(a.total.etcdPerH/(1<<20), "etcd-MiB/h")
	b.ReportMetric(1000*a.status.p50, "patch-p50-ms")
	b.ReportMetric(1000*a.status.p99, "patch-p99-ms")
}

// scenario is one ovsgate scenario's figures.
type scenario struct {
	name, what string
	w          window
	cost       cost
	span       time.Duration // how long the scenario's OVS events ran (real time)
	load       load          // at the real heartbeat
	measured   float64       // writes per second as run, heartbeat compressed
	perEvent   float64       // changes written per OVS event (upgrade, restart); NaN for none
}

// scenarioOf scales a window of ovsgate writes to the real heartbeat: its
// heartbeats by the compression, its changes (driven by OVS events in real
// time) not at all.
func (r *fleetRun) scenarioOf(name, what string, w window, span time.Duration) scenario {
	s := scenario{name: name, what: what, w: w, span: span, perEvent: math.NaN()}
	s.cost = r.costOf(w, "PATCH", "nodes", "status")
	heartbeats := float64(w.t.writes - w.t.changes)
	s.measured = float64(w.t.writes) / w.dur().Seconds()
	s.load = s.cost.at(float64(w.t.changes)/span.Seconds() + heartbeats/w.dur().Seconds()/r.compression)
	return s
}

// report logs a scenario and reports its metrics, with the ratios to the
// kubelets' load when it was measured.
func (r *fleetRun) report(b *testing.B, s scenario) {
	r.results = append(r.results, s)
	c := s.cost
	b.Logf("%s: %d writes in %v (%d changes, %d heartbeats, %d failed attempts; %.1f/s as run), kube-apiserver %.2f s CPU per 1,000 writes, etcd %.2f s, this process %.2f s; etcd +%.0f KiB per 1,000%s; PATCH nodes/status p50 %s p99 %s (client %v / %v)",
		s.name, s.w.t.writes, s.w.dur().Round(time.Millisecond), s.w.t.changes, s.w.t.writes-s.w.t.changes, s.w.t.failures, s.measured,
		1000*c.apiCPU, 1000*c.etcdCPU, 1000*c.clientCPU, c.etcdBytes*1000/1024, compactedNote(c), secs(c.p50), secs(c.p99), c.cp50.Round(time.Microsecond), c.cp99.Round(time.Microsecond))
	b.Logf("%s: %s", s.name, s.w.usage())
	b.Logf("%s at the real %v heartbeat, %d nodes: %.2f writes/s, kube-apiserver %.3f%% of a core, etcd %.3f%%, etcd +%.2f MiB/h%s",
		s.name, realHeartbeat, r.n, s.load.writes, 100*s.load.apiCores, 100*s.load.etcdCores, s.load.etcdPerH/(1<<20), r.ratioNote(s.load))
	b.ReportMetric(s.load.writes, "writes/s")
	b.ReportMetric(s.measured, "writes/s-as-run")
	b.ReportMetric(1000*c.apiCPU, "apiserver-cpu-s/1000writes")
	b.ReportMetric(100*s.load.apiCores, "apiserver-%core")
	b.ReportMetric(c.etcdBytes*1000/1024, "etcd-KiB/1000writes")
	b.ReportMetric(1000*c.p50, "patch-p50-ms")
	b.ReportMetric(1000*c.p99, "patch-p99-ms")
	if !math.IsNaN(s.perEvent) {
		b.ReportMetric(s.perEvent, "changes/event")
	}
	if a := r.anchor; a != nil {
		b.ReportMetric(s.load.writes/a.total.writes, "x-kubelet-writes")
		b.ReportMetric(s.load.apiCores/a.total.apiCores, "x-kubelet-apiserver-cpu")
		b.ReportMetric(s.load.etcdPerH/a.total.etcdPerH, "x-kubelet-etcd")
	}
}

func (r *fleetRun) ratioNote(l load) string {
	a := r.anchor
	if a == nil {
		return " (no kubelet figures to compare with: run the kubelet sub-benchmark)"
	}
	return fmt.Sprintf("; of the kubelets' load: writes %s, kube-apiserver CPU %s, etcd growth %s",
		ratio(l.writes/a.total.writes), ratio(l.apiCores/a.total.apiCores), ratio(l.etcdPerH/a.total.etcdPerH))
}

// calm: nothing happens to OVS; the writers send their heartbeats.
func (r *fleetRun) calm(b *testing.B) {
	w := r.measure(b, func() { pause(context.Background(), r.heartbeatsFor) })
	if w.t.failures > 0 || w.t.changes > 0 {
		b.Errorf("calm: %d failed attempts and %d changes written, want none", w.t.failures, w.t.changes)
	}
	// One write per heartbeat, a little less: the next is one heartbeat
	// after the last one ended. Far less is a control plane behind.
	perHeartbeat := float64(w.t.writes) / (float64(r.n) * w.dur().Seconds() / r.heartbeat.Seconds())
	b.Logf("calm: %.3f writes per node per heartbeat", perHeartbeat)
	if perHeartbeat < 0.95 {
		b.Logf("calm: fewer than one write per heartbeat: the control plane fell behind")
	}
	r.checkConditions(b, time.Time{})
	r.report(b, r.scenarioOf("calm", "(a) calm: heartbeats only", w, w.dur()))
}

// upgrade: a rolling upgrade of OVS, 5% of the nodes at a time, each not
// ready for 10 s.
func (r *fleetRun) upgrade(b *testing.B) {
	per := r.n / upgradeShare
	w := r.measure(b, func() {
		ctx := context.Background()
		for wave := range upgradeWaves {
			batch := r.fleet.writers[wave*per : (wave+1)*per]
			for i, wr := range batch {
				wr.Update(vswitchdGone(1000 + wave*per + i))
			}
			pause(ctx, upgradeOutage)
			for _, wr := range batch {
				wr.Update(ready)
			}
		}
		pause(ctx, settle)
	})
	s := r.scenarioOf("upgrade", fmt.Sprintf("(b) rolling OVS upgrade: 5%% of the nodes at a time not ready for %s (%d of the 20 waves run)", human(upgradeOutage), upgradeWaves),
		w, upgradeWaves*upgradeOutage)
	s.perEvent = float64(w.t.changes) / float64(upgradeWaves*per)
	if w.t.failures > 0 {
		b.Errorf("upgrade: %d failed attempts", w.t.failures)
	}
	r.checkConditions(b, time.Time{})
	r.report(b, s)
}

// storm: ovs-vswitchd restarting every 2 s on every node, as the gate sees
// it: not ready, VSwitchdNotRunning, for 100 ms, then ready.
func (r *fleetRun) storm(b *testing.B) {
	var restarts sync.WaitGroup
	var total int64
	var mu sync.Mutex
	w := r.measure(b, func() {
		ctx, cancel := context.WithTimeout(context.Background(), stormFor)
		defer cancel()
		for i, wr := range r.fleet.writers {
			restarts.Go(func() {
				var n int64
				pid := 10000 * (i + 1)
				for next := time.Now().Add(stormEvery * time.Duration(i) / time.Duration(r.n)); pause(ctx, time.Until(next)); next = next.Add(stormEvery) {
					pid++
					n++
					wr.Update(vswitchdGone(pid))
					pause(context.WithoutCancel(ctx), stormDown)
					wr.Update(ready)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			})
		}
		restarts.Wait()
		pause(context.Background(), settle)
	})
	s := r.scenarioOf("storm", fmt.Sprintf("(c) storm: every node's ovs-vswitchd restarting every %s (not ready for %s each time), run for %s of the minute", human(stormEvery), human(stormDown), human(stormFor)),
		w, stormFor)
	s.perEvent = float64(w.t.changes) / float64(total)
	if w.t.failures > 0 {
		b.Errorf("storm: %d failed attempts", w.t.failures)
	}
	b.Logf("storm: %d restarts, %d of them written", total, w.t.changes)
	r.checkConditions(b, time.Time{})
	r.report(b, s)
}

// restartFigures are the API server restart's figures.
type restartFigures struct {
	down     time.Duration // from SIGTERM to the first answer again
	readyz   time.Duration // from SIGTERM to /readyz 200 again
	recover  time.Duration // from the first answer until every condition was written again
	attempts int           // requests sent while the API server was away
	herd     herd
	starting map[int]int // requests answered before /readyz 200, by HTTP status
	// server is the node requests the new API server counted until every
	// condition was current; taken, the fleet's requests answered 2xx in
	// that time. (Its counter leaves out what its authorization refuses.)
	server     float64
	taken      int
	p50, p99   float64 // its PATCH nodes/status latency in that time
	failLogs   int     // the writers' log lines about the outage
	okLogs     int
	kubeletTen float64 // requests the kubelets send in any 10 s
}

// herd is what the fleet sent the API server once it answered again.
type herd struct {
	returned  time.Time // the first answer
	requests  int       // requests that ended (answered or failed) in the window after it
	ok        int       // of which answered 2xx
	perSecond []int     // requests by second of the window
}

// herdOf finds the first answer among events, the requests sent since the
// API server was started again, and counts the requests that ended in the
// window after it.
func herdOf(events []event, window time.Duration) herd {
	var h herd
	for _, e := range events {
		if e.code != 0 && (h.returned.IsZero() || e.end.Before(h.returned)) {
			h.returned = e.end
		}
	}
	h.perSecond = make([]int, int(window/time.Second))
	if h.returned.IsZero() {
		return h
	}
	for _, e := range events {
		since := e.end.Sub(h.returned)
		if since < 0 || since >= window {
			continue
		}
		h.requests++
		if e.ok() {
			h.ok++
		}
		h.perSecond[min(int(since/time.Second), len(h.perSecond)-1)]++
	}
	return h
}

// restart: the API server stopped in the middle of a calm stretch and
// started again; how long until every condition is current, and how many
// requests the fleet sends in the first 10 s after it returns.
func (r *fleetRun) restart(b *testing.B) {
	ctx := context.Background()
	logsBefore := len(r.logs.Lines())
	pause(ctx, restartCalm)
	stopAt := time.Now()
	r.c.StopAPIServer(b)
	stopped := time.Now()
	pause(ctx, time.Until(stopAt.Add(restartDown)))
	startAt := time.Now()
	r.c.StartAPIServer(b)
	readyz := time.Now()

	// Current again: every writer has had a write taken since the stop (every
	// one was due: the outage is longer than the compressed heartbeat).
	var allAt time.Time
	deadline := time.Now().Add(recoverWithin)
	for {
		at, ok := r.allWrittenSince(stopAt)
		if ok {
			allAt = at
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("restart: not every condition written again within %v of /readyz 200", recoverWithin)
		}
		pause(ctx, 100*time.Millisecond)
	}
	// The new API server's own count and latency, from its start until every
	// condition was current, before anything else asks it about nodes.
	api := r.m.scrapeAPI(b)
	r.checkConditions(b, stopAt)

	f := &restartFigures{starting: map[int]int{}}
	after := r.rec.between(startAt, allAt.Add(time.Nanosecond))
	f.herd = herdOf(after, herdWindow)
	f.down, f.readyz, f.recover = f.herd.returned.Sub(stopAt), readyz.Sub(stopAt), allAt.Sub(f.herd.returned)
	f.attempts = len(r.rec.between(stopAt, startAt))
	for _, e := range after {
		if e.ok() {
			f.taken++
		}
		if e.code != 0 && e.end.Before(readyz) {
			f.starting[int(e.code)]++
		}
	}
	f.server = api.value("apiserver_request_total", map[string]string{"resource": "nodes"})
	h := api.histogram("apiserver_request_duration_seconds", map[string]string{"verb": "PATCH", "resource": "nodes", "subresource": "status"})
	f.p50, f.p99 = h.quantile(0.5), h.quantile(0.99)
	for _, l := range r.logs.Lines()[logsBefore:] {
		switch {
		case strings.Contains(l, `"Cannot write node condition, retrying"`):
			f.failLogs++
		case strings.Contains(l, `"Node condition written again"`):
			f.okLogs++
		}
	}
	r.restarted = f
	due := min(1, f.down.Seconds()/realHeartbeat.Seconds())
	b.Logf("restart: kube-apiserver stopped (SIGTERM, %v to exit) and started again %v after the SIGTERM; it answered again %v after the SIGTERM, /readyz 200 %v after it",
		stopped.Sub(stopAt).Round(time.Millisecond), restartDown, f.down.Round(time.Millisecond), f.readyz.Round(time.Millisecond))
	b.Logf("restart: every one of the %d conditions written again %v after the first answer (%v after /readyz 200, %v after the SIGTERM); %d attempts while it was away (%.1f per node)",
		r.n, f.recover.Round(time.Millisecond), allAt.Sub(readyz).Round(time.Millisecond), allAt.Sub(stopAt).Round(time.Millisecond), f.attempts, float64(f.attempts)/float64(r.n))
	b.Logf("restart: first %v after the first answer: %d requests from the fleet (%d answered 2xx), per second %v",
		herdWindow, f.herd.requests, f.herd.ok, f.herd.perSecond)
	b.Logf("restart: answered before /readyz 200, by HTTP status: %v; until every condition was current the fleet had %d requests taken (2xx) and the new API server counted %.0f node requests; PATCH nodes/status p50 %s p99 %s",
		f.starting, f.taken, f.server, secs(f.p50), secs(f.p99))
	b.Logf("restart: the writers logged %d failure lines and %d recovery lines (%.2f per node)", f.failLogs, f.okLogs, float64(f.failLogs+f.okLogs)/float64(r.n))
	b.Logf("restart: at the real %v heartbeat only the nodes whose heartbeat fell in the outage are due: %.0f%% of them, about %.0f requests in those %v",
		realHeartbeat, 100*due, float64(f.herd.requests)*due, herdWindow)
	if f.server < float64(f.taken) {
		b.Errorf("restart: the API server counted %.0f node requests, fewer than the %d it took from the fleet", f.server, f.taken)
	}
	b.ReportMetric(f.recover.Seconds(), "recover-s")
	b.ReportMetric(f.down.Seconds(), "down-s")
	b.ReportMetric(float64(f.herd.requests), "requests-first-10s")
	b.ReportMetric(1000*f.p50, "patch-p50-ms")
	b.ReportMetric(1000*f.p99, "patch-p99-ms")
	if a := r.anchor; a != nil {
		// The kubelets' own requests in 10 s: renewals, and a GET and a
		// PATCH per status report.
		f.kubeletTen = (a.leaseRate + 2*a.statusRate) * herdWindow.Seconds()
		b.Logf("restart: the kubelets send %.0f requests in 10 s while nothing happens: the herd is %s of that", f.kubeletTen, ratio(float64(f.herd.requests)/f.kubeletTen))
		b.ReportMetric(float64(f.herd.requests)/f.kubeletTen, "x-kubelet-requests")
	}
}

// allWrittenSince reports whether every writer has had a write taken that
// it sent after t, and when the last of them was answered.
func (r *fleetRun) allWrittenSince(t time.Time) (time.Time, bool) {
	first := make(map[int32]time.Time, r.n)
	for _, e := range r.rec.between(t, time.Now().Add(time.Hour)) {
		if e.kind != ovsgatePatch || !e.ok() {
			continue
		}
		if at, seen := first[e.node]; !seen || e.end.Before(at) {
			first[e.node] = e.end
		}
	}
	if len(first) < r.n {
		return time.Time{}, false
	}
	var last time.Time
	for _, at := range first {
		if at.After(last) {
			last = at
		}
	}
	return last, true
}

// checkConditions lists the Nodes and fails the benchmark unless every one
// holds the condition, True, with a heartbeat no older than since (zero:
// any).
func (r *fleetRun) checkConditions(b *testing.B, since time.Time) {
	b.Helper()
	nodes, err := r.admin.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	bad := 0
	for _, n := range nodes.Items {
		cond := condition(n)
		if cond == nil || cond.Status != corev1.ConditionTrue || cond.LastHeartbeatTime.Time.Before(since.Truncate(time.Second)) {
			bad++
		}
	}
	if len(nodes.Items) != r.n || bad > 0 {
		b.Errorf("%d Nodes, %d of them without a current True %s condition", len(nodes.Items), bad, condType)
	}
}

func condition(n corev1.Node) *corev1.NodeCondition {
	for i, c := range n.Status.Conditions {
		if c.Type == condType {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// nodeSize is the size of a simulated Node as JSON.
func nodeSize(tb testing.TB, admin kubernetes.Interface) int {
	tb.Helper()
	n, err := admin.CoreV1().Nodes().Get(context.Background(), nodeName(0), metav1.GetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	if len(n.Status.Conditions) != len(kubeletConditions) || len(n.Status.Images) == 0 {
		tb.Fatalf("node %s lost its status on creation: %d conditions, %d images", n.Name, len(n.Status.Conditions), len(n.Status.Images))
	}
	j, err := json.Marshal(n)
	if err != nil {
		tb.Fatal(err)
	}
	return len(j)
}

// raiseFileLimit makes sure this process and the daemons it starts (which
// inherit the limit) may open want files: each simulated node holds a
// connection, and kube-apiserver holds the other end of every one. It
// returns the limit.
func raiseFileLimit(tb testing.TB, want int) int {
	tb.Helper()
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Fatal(err)
	}
	if l.Cur < uint64(want) {
		l.Cur = max(l.Max, uint64(want))
		l.Max = l.Cur
	}
	// Setting the limit, even to what Go already raised it to for itself,
	// also hands it to child processes, which Go otherwise starts with the
	// limit the process was started with.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Fatalf("open files limit %d, %d needed for %d nodes: %v (raise it with ulimit -n)", l.Cur, want, *fleetNodes, err)
	}
	return int(l.Cur)
}

// openFiles counts a process's open files.
func openFiles(tb testing.TB, pid int) int {
	tb.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		tb.Fatal(err)
	}
	return len(fds)
}

func loadavg(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// sharedNote says whether other work ran on the machine when the run began:
// a one-minute load average of 1 or more before the benchmark started
// anything. The load at the end is mostly the benchmark's own.
func sharedNote(load string) string {
	f := strings.Fields(load)
	if len(f) == 0 {
		return ""
	}
	if l, err := strconv.ParseFloat(f[0], 64); err == nil && l >= 1 {
		return ": other work shared the machine"
	}
	return " (the end's is the benchmark's own): nothing else ran on the machine when it began"
}

func secs(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", 1000*s)
}

func ratio(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "-"
	case x >= 10:
		return fmt.Sprintf("%.0fx", x)
	case x >= 0.1:
		return fmt.Sprintf("%.2fx", x)
	}
	return fmt.Sprintf("%.3fx", x)
}

func compactedNote(c cost) string {
	if c.compacted {
		return " (etcd compacted within the window: the growth is an underestimate)"
	}
	return ""
}

// section is the BENCHMARKS.md section of this run.
func (r *fleetRun) section() string {
	var s strings.Builder
	a := r.anchor
	fmt.Fprintf(&s, "## Fleet: %s simulated nodes against a real kube-apiserver\n\n", thousands(r.n))
	fmt.Fprintf(&s, "Measured by `make bench-fleet` (hack/fleet, `BenchmarkFleet`, `-fleet.nodes=%d`) on %s: %d cores, %s/%s, %s, kube-apiserver v1.37.2 on etcd 3.4 (`--unsafe-no-fsync`), in %v. Load average %s at the start, %s at the end%s.\n\n",
		r.n, r.started.Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Since(r.started).Round(time.Second), r.load0, r.load1, sharedNote(r.load0))
	s.WriteString("| scenario | writes/s, real time | kube-apiserver CPU per 1,000 writes | kube-apiserver CPU at that rate | etcd growth per 1,000 writes; per hour at that rate | PATCH nodes/status p50 / p99: API server; client | of the kubelets' load: writes; API server CPU; etcd growth |\n")
	s.WriteString("|---|---|---|---|---|---|---|\n")
	if a != nil {
		fmt.Fprintf(&s, "| kubelets, the anchor: Lease renewed every %s, Node status reported every %s (a GET, then a PATCH) | %.1f (%.1f renewals, %.2f status reports) | renewal %.2f s, status report %.2f s | %.2f%% of a core | renewal %.0f KiB, status report %.0f KiB; %.1f MiB/h | %s / %s; %s / %s (PUT leases: %s / %s) | 1x |\n",
			human(kubeletLeaseEvery), human(kubeletStatusEvery), a.total.writes, a.leaseRate, a.statusRate, 1000*a.lease.apiCPU, 1000*a.status.apiCPU, 100*a.total.apiCores,
			a.lease.etcdBytes*1000/1024, a.status.etcdBytes*1000/1024, a.total.etcdPerH/(1<<20),
			secs(a.status.p50), secs(a.status.p99), ms(a.status.cp50), ms(a.status.cp99), secs(a.lease.p50), secs(a.lease.p99))
	}
	for _, sc := range r.results {
		c := sc.cost
		extra := ""
		switch sc.name {
		case "upgrade":
			extra = fmt.Sprintf("; %.2f changes written per upgraded node", sc.perEvent)
		case "storm":
			extra = fmt.Sprintf("; %.3f changes written per restart", sc.perEvent)
		}
		rat := "-"
		if a != nil {
			rat = fmt.Sprintf("%s; %s; %s", ratio(sc.load.writes/a.total.writes), ratio(sc.load.apiCores/a.total.apiCores), ratio(sc.load.etcdPerH/a.total.etcdPerH))
		}
		fmt.Fprintf(&s, "| %s | %.2f (as run: %.0f/s, %s changes and %s heartbeats in %.1f s%s) | %.2f s | %.3f%% of a core | %.0f KiB; %.1f MiB/h%s | %s / %s; %s / %s | %s |\n",
			sc.what, sc.load.writes, sc.measured, thousands(sc.w.t.changes), thousands(sc.w.t.writes-sc.w.t.changes), sc.w.dur().Seconds(), extra,
			1000*c.apiCPU, 100*sc.load.apiCores, c.etcdBytes*1000/1024, sc.load.etcdPerH/(1<<20), compactedNote(c),
			secs(c.p50), secs(c.p99), ms(c.cp50), ms(c.cp99), rat)
	}
	if f := r.restarted; f != nil {
		rat := "-"
		if f.kubeletTen > 0 {
			rat = fmt.Sprintf("requests in the first 10 s: %s of what the kubelets send in any 10 s (%s)", ratio(float64(f.herd.requests)/f.kubeletTen), thousands(int(math.Round(f.kubeletTen))))
		}
		fmt.Fprintf(&s, "| (d) the API server restarted in the middle of (a): SIGTERM, started again %s later; it answered again %.1f s after the SIGTERM (/readyz 200 at %.1f s) | every condition current again %.1f s after its first answer; %s requests in the first 10 s (%s answered 2xx), per second %v; %s attempts while it was away (%.1f per node); the writers logged %.2f lines per node in all | | | | %s / %s from its start until every condition was current | %s |\n",
			human(restartDown), f.down.Seconds(), f.readyz.Seconds(), f.recover.Seconds(), thousands(f.herd.requests), thousands(f.herd.ok), f.herd.perSecond,
			thousands(f.attempts), float64(f.attempts)/float64(r.n), float64(f.failLogs+f.okLogs)/float64(r.n), secs(f.p50), secs(f.p99), rat)
	}
	down := restartDown
	if r.restarted != nil {
		down = r.restarted.down
	}
	s.WriteString("\nHow it is measured:\n")
	fmt.Fprintf(&s, "- Each simulated node runs ovsgate's own writer (`nodecondition.New`, `Run`, and `Update` with the statuses the gate gives) with the daemon's merge window (%s) and backoff (%s doubling to %s, jittered by 20%%), on a client of its own: its own `rest.Config` copy and dialer, hence its own transport and HTTP/2 connection (%s open files in the simulating process, %s in kube-apiserver, under a limit of %s). Each simulated kubelet has a client of its own too (protobuf, 50 QPS, burst 100); it renews its Lease with an update of the one it last wrote, and reports its Node status as the kubelet does, a GET from the API server's cache then a strategic-merge patch of the four conditions' heartbeats. All act as one user holding the RBAC the manifests grant ovsgate (plus Lease update), so authorization costs both the same. Every Node is %s bytes as JSON (labels, capacity, the kubelet's four conditions, addresses, 30 images).\n",
		human(nodecondition.DefaultMergeWindow), human(nodecondition.DefaultRetryMin), human(nodecondition.DefaultRetryMax), thousands(r.clientFDs), thousands(r.apiFDs), thousands(r.files), thousands(r.nodeBytes))
	fmt.Fprintf(&s, "- Time is compressed %.0f times for the %s heartbeats only: ovsgate's condition and the kubelet's Node status report are written every %s, and the rate of those writes is divided by %.0f. Everything else runs in real time: the merge window, the backoff, the OVS events, and the kubelet's %s Lease renewal (compressed as much, %s kubelets would renew %s times a second, beyond this machine). A write that an OVS event causes is told from a heartbeat by its status, reason and message, and counted as run: its rate is the event's own. The kubelets' rates are their schedule's; the windows give what each write costs.\n",
		r.compression, human(realHeartbeat), human(r.heartbeat), r.compression, human(kubeletLeaseEvery), thousands(r.n), thousands(int(r.compression*float64(r.n)/kubeletLeaseEvery.Seconds())))
	fmt.Fprintf(&s, "- Scenarios run for less than their real length where every part is alike. (b) runs %d of the 20 waves of a rolling upgrade (5%% of the nodes at a time, each not ready for %s, VSwitchdNotRunning); its rate is the whole upgrade's, 200 s. (c) runs %s of the one-minute storm; each restart keeps the gate unready for %s (the gate's detection figures above: about 85 ms). (d) stops kube-apiserver %s into a calm stretch; with the compressed heartbeat every writer fell due while it was away, the worst case: at the real %s heartbeat an outage this short leaves only the nodes whose heartbeat fell in it due (about %.0f%%), one of %s or more all of them. Its figures run from its first answer (any answer: before /readyz says 200 it already serves some requests and refuses others, 403 until RBAC is loaded), and are not scaled.\n",
		upgradeWaves, human(upgradeOutage), human(stormFor), human(stormDown), human(restartCalm), human(realHeartbeat), 100*min(1, down.Seconds()/realHeartbeat.Seconds()), human(realHeartbeat))
	fmt.Fprintf(&s, "- CPU is kube-apiserver's user+system time (`/proc/PID/stat`) over each window, less what it burns idle (%.1f%% of a core, measured for %s before any client), per 1,000 writes taken; then times the real rate. etcd's growth is `%s`, the pages holding keys and their revisions: the API server compacts the history every 5 min, so a steady fleet keeps about 5 min of it. Latency is the API server's own `apiserver_request_duration_seconds` for PATCH nodes/status (PUT leases for the renewals), diffed over each window and interpolated as `histogram_quantile` does, its buckets being coarse (5, 25, 50, 100, 200, 400 ms...); beside it the simulated client's own time to the answer.\n",
		100*r.idleAPI, human(idleFor), etcdInUse)
	s.WriteString("- The simulated nodes, kube-apiserver and etcd share this machine's cores with each other and with other work (each window's log gives how busy each was, and the whole machine): CPU per write changes little with that, latency does, so latencies of different rows are not comparable with each other.\n")
	return s.String()
}

// thousands prints n with comma separators.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// human prints a duration as people write it: 5 min, 10 s, 100 ms.
func human(d time.Duration) string {
	switch {
	case d%time.Minute == 0:
		return fmt.Sprintf("%d min", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%d s", d/time.Second)
	}
	return fmt.Sprintf("%g ms", float64(d)/float64(time.Millisecond))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
