package nodecondition

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/backoff"
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

// Config says which condition to keep on which Node; zero durations take
// their defaults.
type Config struct {
	// Node is the name of the Node to write to.
	Node string
	// Type is the condition type, a qualified name such as ovsgate.io/OVSReady.
	Type string
	// Heartbeat is how often an unchanged condition is rewritten.
	Heartbeat time.Duration
	// MergeWindow is how long the writer waits after the first change before
	// it writes the latest state, so that changes within it make one write.
	MergeWindow time.Duration
	// RetryMin and RetryMax bound the jittered, doubling delay between
	// failed attempts.
	RetryMin, RetryMax time.Duration
	// RequestTimeout bounds one attempt (a read of the Node and a patch).
	RequestTimeout time.Duration
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

// Validate checks the node name and condition type and fills in the default
// timings; New calls it too.
func (c *Config) Validate() error {
	if err := CheckNodeName(c.Node); err != nil {
		return fmt.Errorf("invalid node name %q: %w", c.Node, err)
	}
	if err := CheckType(c.Type); err != nil {
		return fmt.Errorf("invalid node condition type %q: %w", c.Type, err)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"heartbeat", &c.Heartbeat, DefaultHeartbeat},
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
// on top of cfg.RequestTimeout. It writes nothing until Run.
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
func (w *Writer) Update(s gate.State) {
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

func (w *Writer) latest() (desired, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.want, w.want != desired{}
}

// Run writes the condition until ctx is done. It writes nothing on the way
// out: ovsgate stopping says nothing about OVS, and readers tell a dead
// writer by its stale heartbeat.
func (w *Writer) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("node condition writer: Run called twice")
	}
	// A stopped writer keeps no connection to the API server open.
	defer w.api.closeIdle()
	node, typ := w.cfg.Node, w.cfg.Type
	klog.InfoS("Keeping node condition", "node", node, "condition", typ, "heartbeat", w.cfg.Heartbeat)

	var (
		st        nodeState // what the Node holds, as far as the writer knows
		lastWrite time.Time // of the last successful write
		changedAt time.Time // when the state first differed from the Node's; zero if it does not
		retryAt   time.Time // zero unless backing off after a failure
		bo        = backoff.Backoff{Min: w.cfg.RetryMin, Max: w.cfg.RetryMax, Jitter: true}

		failing     string // result of the failure logged last; "" while writes succeed
		failedSince time.Time
		failures    int
	)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d, ok := w.latest()
		now := time.Now()
		var at time.Time // when to write next; zero: not until Update
		switch {
		case !ok:
		case !retryAt.IsZero():
			// Changes during a backoff wait for it, so that a flapping OVS
			// does not undo the backoff.
			at = retryAt
		case st.differs(d):
			if changedAt.IsZero() {
				changedAt = now
			}
			at = changedAt.Add(w.cfg.MergeWindow)
		default:
			changedAt = time.Time{}
			at = lastWrite.Add(w.cfg.Heartbeat)
		}
		if at.IsZero() || now.Before(at) {
			var fire <-chan time.Time
			if !at.IsZero() {
				timer.Reset(at.Sub(now))
				fire = timer.C
			}
			select {
			case <-ctx.Done():
				klog.V(2).InfoS("Stopped keeping node condition; left as it is", "node", node, "condition", typ)
				return nil
			case <-w.kick:
			case <-fire:
			}
			continue
		}

		changed := st.differs(d)
		err := w.write(ctx, &st, d)
		if err != nil && ctx.Err() != nil {
			// Cut short by shutdown: neither a failure nor worth a retry.
			klog.V(2).InfoS("Stopped keeping node condition; left as it is", "node", node, "condition", typ)
			return nil
		}
		result := classify(err)
		w.metrics.observe(result)
		changedAt = time.Time{}
		if err == nil {
			lastWrite, retryAt = time.Now(), time.Time{}
			bo.Reset()
			if failing != "" {
				klog.InfoS("Node condition written again", "node", node, "condition", typ, "failedAttempts", failures, "after", time.Since(failedSince).Round(time.Millisecond))
				failing, failures = "", 0
			}
			if changed {
				klog.V(2).InfoS("Wrote node condition", "node", node, "condition", typ, "status", d.status, "reason", d.reason)
			} else {
				klog.V(4).InfoS("Refreshed node condition", "node", node, "condition", typ)
			}
			continue
		}

		if result == ResultNotFound {
			// The Node is gone, or not registered yet. It may come back (a
			// kubelet registers its Node again), so keep retrying with the
			// backoff, and read the new Node first: it starts without the
			// condition.
			st = nodeState{}
		}
		delay := bo.Next()
		retryAt = time.Now().Add(delay)
		if failures == 0 {
			failedSince = now
		}
		failures++
		if result != failing {
			// One line per cause of failure, not per retry.
			klog.ErrorS(err, "Cannot write node condition, retrying", "node", node, "condition", typ, "result", result, "retryIn", delay.Round(time.Millisecond))
			failing = result
		} else {
			klog.V(4).InfoS("Node condition write failed again", "node", node, "condition", typ, "result", result, "err", err, "retryIn", delay.Round(time.Millisecond))
		}
	}
}

// write makes the Node's condition say d, reading the Node first when the
// writer does not know its condition's last transition.
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
	c := st.condition(w.cfg.Type, d, apiTime(time.Now()))
	body, err := patchBody(c)
	if err != nil {
		return fmt.Errorf("encode node condition: %w", err)
	}
	if err := w.api.patchStatus(ctx, body); err != nil {
		return fmt.Errorf("patch status of node %s: %w", w.cfg.Node, err)
	}
	// The writer's record, not the answer, so that nothing another writer
	// does to the condition can make this one rewrite it in a loop.
	*st = nodeState{known: true, present: true, desired: d, transition: c.LastTransitionTime}
	return nil
}
