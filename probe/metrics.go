package probe

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ovsgate/ovsgate/gate"
)

// Metrics are the daemon's Prometheus metrics, on a registry of its own.
type Metrics struct {
	registry        *prometheus.Registry
	ready           prometheus.Gauge
	bridgeReady     *prometheus.GaugeVec
	transitions     prometheus.Counter
	restarts        prometheus.Counter
	busy            prometheus.Gauge
	hung            prometheus.Gauge
	flowRestoreWait prometheus.Gauge
	ovsdbConnected  prometheus.Gauge
	appctlDurations *prometheus.HistogramVec

	mu           sync.Mutex
	counting     bool // transitions are counted from the first settled state on
	wasReady     bool
	lastRestarts uint64 // the gate's count of ovs-vswitchd restarts, as last seen
}

// NewMetrics registers the metrics and the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovsgate_ready", Help: "1 when every gated bridge is ready, else 0.",
		}),
		bridgeReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ovsgate_bridge_ready", Help: "1 when the bridge is ready, else 0.",
		}, []string{"bridge"}),
		transitions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ovsgate_transitions_total", Help: "Flips between ready and not ready, after the first settled status.",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ovsgate_vswitchd_restarts_total",
			Help: "New ovs-vswitchd instances that answered after the first one (also when the pid number repeats).",
		}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovsgate_vswitchd_busy",
			Help: "1 while ovs-vswitchd leaves a call unanswered past the call timeout and its main thread uses CPU.",
		}),
		hung: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovsgate_vswitchd_hung",
			Help: "1 while ovs-vswitchd leaves a call unanswered past the call timeout and is not seen busy (stopped, deadlocked, or its CPU time not visible).",
		}),
		flowRestoreWait: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovsgate_flow_restore_wait",
			Help: "1 while other_config:flow-restore-wait is true: ovs-vswitchd neither forwards nor flushes datapath flows.",
		}),
		ovsdbConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovsgate_ovsdb_connected", Help: "1 while the OVSDB monitor is established, else 0.",
		}),
		appctlDurations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ovsgate_appctl_request_duration_seconds",
			Help:    "Duration of unixctl calls to ovs-vswitchd, by method and result (ok or error).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method", "result"}),
	}
	m.registry.MustRegister(m.ready, m.bridgeReady, m.transitions, m.restarts, m.busy, m.hung, m.flowRestoreWait, m.ovsdbConnected, m.appctlDurations,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds collectors of other parts of the daemon to its registry.
func (m *Metrics) Register(cs ...prometheus.Collector) { m.registry.MustRegister(cs...) }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return mux
}

// Observe updates the metrics from a new state. Transitions are counted
// from the gate's first settled state on: what comes before it (starting,
// connecting) is no verdict yet, so a start that ends ready counts none.
func (m *Metrics) Observe(s gate.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.Settled {
		if m.counting && s.Ready != m.wasReady {
			m.transitions.Inc()
		}
		m.counting = true
	}
	m.wasReady = s.Ready
	if s.Restarts > m.lastRestarts {
		m.restarts.Add(float64(s.Restarts - m.lastRestarts))
		m.lastRestarts = s.Restarts
	}
	m.busy.Set(boolFloat(s.Busy))
	m.hung.Set(boolFloat(s.Hung))
	// Unknown while OVSDB is away: the gauge keeps the last value read, so
	// an OVSDB outage neither starts nor ends a flow-restore-wait alert.
	if f := s.VSwitchd.FlowRestoreWait; f != nil {
		m.flowRestoreWait.Set(boolFloat(*f))
	}
	m.ready.Set(boolFloat(s.Ready))
	m.ovsdbConnected.Set(boolFloat(s.OVSDB.Connected))
	for _, b := range s.Bridges {
		m.bridgeReady.WithLabelValues(b.Name).Set(boolFloat(b.Ready))
	}
}

// ObserveAppctl records one unixctl call; its signature fits gate.Config.Observer.
func (m *Metrics) ObserveAppctl(method string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.appctlDurations.WithLabelValues(method, result).Observe(d.Seconds())
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
