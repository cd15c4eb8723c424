package nodecondition

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ovsgate/ovsgate/gate"
)

// Defaults of the zero Config fields.
const (
	// DefaultHeartbeat matches the kubelet's and node-problem-detector's
	// refresh of an unchanged condition.
	DefaultHeartbeat = 5 * time.Minute
	// DefaultMergeWindow: a flapping OVS costs at most one write per second.
	DefaultMergeWindow = time.Second
	// DefaultRetryMin and DefaultRetryMax bound the delay between failed
	// writes. A minute at most keeps a node's start-up taint from waiting
	// long after the API server is back, at one request per node per minute
	// during an outage, a sixth of what the kubelet's 10 s status updates
	// send.
	DefaultRetryMin = time.Second
	DefaultRetryMax = time.Minute
	// DefaultRequestTimeout bounds one attempt, so that a hung API server
	// cannot stall the writer.
	DefaultRequestTimeout = 10 * time.Second
)

// Config says which condition to keep on which Node, and when to write it.
// Node, Type and Heartbeat are required; the other fields, which no flag of
// ovsgate sets, take their defaults when zero.
type Config struct {
	// Node is the name of the Node to write to.
	Node string
	// Type is the condition type, a qualified name such as ovsgate.io/OVSReady.
	Type string
	// Heartbeat is how often an unchanged condition is rewritten; it must be
	// positive (serve's --node-condition-heartbeat, DefaultHeartbeat by
	// default).
	Heartbeat time.Duration
	// MergeWindow is how long the writer waits after the first change before
	// it writes the latest state, so that changes within it make one write.
	MergeWindow time.Duration
	// RetryMin and RetryMax bound the jittered, doubling delay between
	// failed attempts.
	RetryMin, RetryMax time.Duration
	// RequestTimeout bounds one attempt (a read of the Node and a patch).
	RequestTimeout time.Duration
	// Clock is the writer's time: when it writes, and the times it writes.
	// Nil is the real clock; a fake one (k8s.io/utils/clock/testing) lets a
	// test or a benchmark step the merge window, the backoff and the
	// heartbeat. The request timeout and the client's rate limit keep real
	// time.
	Clock clock.Clock
}

// kubeletTypes are conditions other components own; writing one would fight
// them for it.
var kubeletTypes = map[string]bool{
	"Ready": true, "MemoryPressure": true, "DiskPressure": true, "PIDPressure": true, "NetworkUnavailable": true,
}

// CheckNodeName says what is wrong with a Node name, or nil.
func CheckNodeName(node string) error {
	if node == "" {
		return errors.New("node name is required")
	}
	if errs := validation.IsDNS1123Subdomain(node); len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// CheckType says what is wrong with a condition type, or nil.
func CheckType(typ string) error {
	if typ == "" {
		return errors.New("node condition type is required")
	}
	if errs := validation.IsQualifiedName(typ); len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	if kubeletTypes[typ] {
		return errors.New("owned by Kubernetes; use a type of your own such as ovsgate.io/OVSReady")
	}
	return nil
}

// CheckHeartbeat says what is wrong with a heartbeat, or nil; serve's
// --node-condition-heartbeat says the same of the flag.
func CheckHeartbeat(d time.Duration) error {
	if d <= 0 {
		return errors.New("must be positive")
	}
	return nil
}

// Validate checks the node name, the condition type and the heartbeat, and
// fills in the default of the other timings; New calls it too.
func (c *Config) Validate() error {
	if err := CheckNodeName(c.Node); err != nil {
		return fmt.Errorf("invalid node name %q: %w", c.Node, err)
	}
	if err := CheckType(c.Type); err != nil {
		return fmt.Errorf("invalid node condition type %q: %w", c.Type, err)
	}
	if err := CheckHeartbeat(c.Heartbeat); err != nil {
		return fmt.Errorf("invalid node condition heartbeat %v: %w", c.Heartbeat, err)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"merge window", &c.MergeWindow, DefaultMergeWindow},
		{"minimum retry delay", &c.RetryMin, DefaultRetryMin},
		{"maximum retry delay", &c.RetryMax, DefaultRetryMax},
		{"request timeout", &c.RequestTimeout, DefaultRequestTimeout},
	} {
		if *d.v < 0 {
			return fmt.Errorf("invalid node condition %s %v: must not be negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.RetryMax < c.RetryMin {
		return fmt.Errorf("invalid node condition retry delays: maximum %v is below minimum %v", c.RetryMax, c.RetryMin)
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	return nil
}

// Writer keeps one condition on one Node in step with the gate's status.
//
// It needs nothing but nodes get (to learn, once after a start, the
// condition's last transition) and nodes/status patch: the permissions of
// the built-in ClusterRole system:node-problem-detector.
type Writer struct {
	api     *nodeClient
	cfg     Config
	metrics *metrics
	running atomic.Bool

	mu   sync.Mutex
	want desired       // zero until the first Update: desiredFor never returns it
	kick chan struct{} // holds one wake-up for Run; Update never waits on it
}

// New returns a Writer for cfg that reaches the API server as kube says:
// host, credentials, TLS, user agent and, if set, a timeout for each request
// on top of cfg.RequestTimeout. QPS and Burst do not apply: cfg's merge
// window and retry delays bound the writer's requests. It writes nothing
// until Run.
//
// New reads no flag or global, so that one process may run many Writers (a
// benchmark of many nodes, say), each with its own heartbeat, timings and,
// through cfg.Clock, time. Writers made from configurations with the same TLS
// settings share client-go's cached transport and its connections, as
// clients in one process do; a kube with a Dial of its own (such as
// (&net.Dialer{}).DialContext) gets a transport of its own, as a node would.
func New(kube *rest.Config, cfg Config) (*Writer, error) {
	if kube == nil {
		return nil, errors.New("node condition: no Kubernetes client configuration")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	api, err := newNodeClient(kube, cfg.Node)
	if err != nil {
		return nil, err
	}
	return &Writer{api: api, cfg: cfg, metrics: newMetrics(), kick: make(chan struct{}, 1)}, nil
}

// Collectors are the writer's metrics, for the caller to register on its
// registry: ovsgate_node_condition_writes_total{result} and
// ovsgate_node_condition_last_write_success.
func (w *Writer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{w.metrics.writes, w.metrics.lastSuccess}
}

// Update records s as the state to write and wakes the writer. It never
// waits on the API server.
func (w *Writer) Update(s gate.Status) {
	d := desiredFor(s)
	w.mu.Lock()
	changed := w.want != d
	w.want = d
	w.mu.Unlock()
	if changed {
		select {
		case w.kick <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// latest is the state of the last Update and how it stands to st.
func (w *Writer) latest(st nodeState) (desired, want) {
	w.mu.Lock()
	d := w.want
	w.mu.Unlock()
	switch {
	case d == desired{}:
		return d, wantNothing
	case st.differs(d):
		return d, wantChange
	}
	return d, wantSame
}

// Run writes the condition until ctx is done, when and as the schedule says.
// It writes nothing on the way out: ovsgate stopping says nothing about OVS,
// and readers tell a dead writer by its stale heartbeat.
func (w *Writer) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("node condition writer: Run called twice")
	}
	// A stopped writer keeps no connection to the API server open.
	defer w.api.closeIdle()
	klog.InfoS("Keeping node condition", "node", w.cfg.Node, "condition", w.cfg.Type, "heartbeat", w.cfg.Heartbeat)
	defer klog.V(2).InfoS("Stopped keeping node condition; left as it is", "node", w.cfg.Node, "condition", w.cfg.Type)

	var (
		st  nodeState // what the Node holds, as far as the writer knows
		s   = newSchedule(w.cfg)
		out outage
	)
	for {
		d, want := w.latest(st)
		now := w.cfg.Clock.Now()
		var next decision
		if s, next = s.next(now, want); !next.write {
			if !w.wait(ctx, now, next.wake) {
				return nil
			}
			continue
		}
		err := w.write(ctx, &st, d)
		if err != nil && ctx.Err() != nil {
			return nil // cut short by shutdown: neither a failure nor worth a retry
		}
		end := w.cfg.Clock.Now()
		s = s.done(end, err == nil, 2*rand.Float64()-1)
		w.observe(&out, err, want, d, s.retryAt.Sub(end))
	}
}

// wait returns when ctx is done (false), at wake (zero: never), or on an
// Update.
func (w *Writer) wait(ctx context.Context, now, wake time.Time) bool {
	var fire <-chan time.Time
	if !wake.IsZero() {
		t := w.cfg.Clock.NewTimer(wake.Sub(now))
		defer t.Stop()
		fire = t.C()
	}
	select {
	case <-ctx.Done():
		return false
	case <-w.kick:
	case <-fire:
	}
	return true
}

// outage is what the writer logs about failures: one line per cause, not per
// retry, and one when writes succeed again.
type outage struct {
	failing  string    // result of the failure logged last; "" while writes succeed
	since    time.Time // first failure of the outage
	failures int       // failed attempts in the outage
}

// observe counts an attempt that failed with err (or succeeded: nil) and
// logs what is news; retryIn is the delay the schedule set after a failure.
func (w *Writer) observe(out *outage, err error, want want, d desired, retryIn time.Duration) {
	node, typ := w.cfg.Node, w.cfg.Type
	result := classify(err)
	w.metrics.observe(result)
	if err == nil {
		if out.failing != "" {
			klog.InfoS("Node condition written again", "node", node, "condition", typ, "failedAttempts", out.failures,
				"after", w.cfg.Clock.Since(out.since).Round(time.Millisecond))
		}
		*out = outage{}
		if want == wantChange {
			klog.V(2).InfoS("Wrote node condition", "node", node, "condition", typ, "status", d.status, "reason", d.reason)
		} else {
			klog.V(4).InfoS("Refreshed node condition", "node", node, "condition", typ)
		}
		return
	}
	if out.failures == 0 {
		out.since = w.cfg.Clock.Now()
	}
	out.failures++
	retryIn = retryIn.Round(time.Millisecond)
	if result != out.failing {
		klog.ErrorS(err, "Cannot write node condition, retrying", "node", node, "condition", typ, "result", result, "retryIn", retryIn)
		out.failing = result
	} else {
		klog.V(4).InfoS("Node condition write failed again", "node", node, "condition", typ, "result", result, "err", err, "retryIn", retryIn)
	}
}

// write makes the Node's condition say d, reading the Node first when the
// writer does not know its condition's last transition. A Node found missing
// makes the writer read it again first: it may come back (a kubelet
// registers its Node again) without the condition.
func (w *Writer) write(ctx context.Context, st *nodeState, d desired) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	defer cancel()
	if !st.known {
		// Read once rather than restart lastTransitionTime with every start
		// of ovsgate: a rollout would otherwise make every node look as if
		// OVS had just changed.
		conds, err := w.api.conditions(ctx)
		if err != nil {
			return fmt.Errorf("get node %s: %w", w.cfg.Node, err)
		}
		*st = stateOf(conds, w.cfg.Type)
	}
	// The API server keeps whole seconds; so does the writer's own record.
	c := st.condition(w.cfg.Type, d, apiTime(w.cfg.Clock.Now()))
	body, err := patchBody(c)
	if err != nil {
		return fmt.Errorf("encode node condition: %w", err)
	}
	if err := w.api.patchStatus(ctx, body); err != nil {
		if apierrors.IsNotFound(err) {
			*st = nodeState{}
		}
		return fmt.Errorf("patch status of node %s: %w", w.cfg.Node, err)
	}
	// The writer's record, not the answer, so that nothing another writer
	// does to the condition can make this one rewrite it in a loop.
	*st = nodeState{known: true, present: true, desired: d, transition: c.LastTransitionTime}
	return nil
}
