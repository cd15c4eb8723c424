package gate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/ovsdb"
)

// Defaults for Config's timings. An instance that answers nothing for
// PingInterval is pinged, and one that leaves a call unanswered for
// CallTimeout is not ready: a hang is noticed within 9s, inside the 10s
// promised, with a ping (the loop's one periodic chore while all is well)
// every 4s. An exit needs no ping: the held connection ends at once.
const (
	DefaultCallTimeout  = 5 * time.Second
	DefaultPingInterval = 4 * time.Second
	DefaultRetryMin     = 5 * time.Millisecond
	DefaultRetryMax     = time.Second
)

// Config says what to gate on and where Open vSwitch is.
type Config struct {
	OVSDB        string // unix:PATH or tcp:HOST:PORT
	RunDir       string // holds ovs-vswitchd.pid and ovs-vswitchd.<pid>.ctl
	Bridges      []string
	Requirements []Requirement
	// RequirePorts are interfaces that must exist, have an OpenFlow port
	// number and no error, and be opened by the instance answering now.
	RequirePorts []string
	// RequireFlowsRestored makes other_config:flow-restore-wait=true a
	// reason not to be ready (check "flows").
	RequireFlowsRestored bool

	// Observer, if set, is told the duration and outcome of every unixctl call.
	Observer func(method string, d time.Duration, err error)

	// Timings; zero means the default. Tests shorten them.
	CallTimeout     time.Duration // how long a unixctl call may go unanswered before ovs-vswitchd counts as not answering
	PingInterval    time.Duration // how long an answering ovs-vswitchd may stay silent before it is pinged
	RetryMin        time.Duration // first retry after a "not yet" answer
	RetryMax        time.Duration // cap of the retry backoff
	OVSDBBackoffMin time.Duration // OVSDB reconnect backoff bounds
	OVSDBBackoffMax time.Duration
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.CallTimeout, DefaultCallTimeout)
	def(&c.PingInterval, DefaultPingInterval)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
}

// Gate watches Open vSwitch and keeps a State current.
type Gate struct {
	cfg     Config
	rule    *rule
	watcher *ovsdb.Watcher

	mu    sync.Mutex
	state State
	subs  []chan State

	notReadySince time.Time // when the gate last became not ready, for the log

	progress atomic.Int64 // unix nanoseconds of the loop's last iteration
	running  atomic.Bool
	stopped  atomic.Bool // Run has returned

	onPublish func(State)              // tests see every published state here
	cpu       cpuReader                // tests replace how ovs-vswitchd's CPU time is read
	kernel    func() ([]string, error) // tests replace how the kernel's datapaths are listed
}

// New returns a Gate that does nothing until Run. cfg is trusted as the
// command line's options have checked it: at least one bridge, names
// without spaces or slashes, no duplicates, an endpoint ParseEndpoint
// accepts.
func New(cfg Config) (*Gate, error) {
	cfg.setDefaults()
	var opts []ovsdb.Option
	if cfg.OVSDBBackoffMin > 0 || cfg.OVSDBBackoffMax > 0 {
		opts = append(opts, ovsdb.WithBackoff(cfg.OVSDBBackoffMin, cfg.OVSDBBackoffMax))
	}
	if len(cfg.RequirePorts) > 0 {
		opts = append(opts, ovsdb.WithPorts(cfg.RequirePorts))
	}
	w, err := ovsdb.NewWatcher(cfg.OVSDB, cfg.Bridges, opts...)
	if err != nil {
		return nil, err
	}
	g := &Gate{cfg: cfg, rule: newRule(&cfg), watcher: w, notReadySince: time.Now()}
	g.progress.Store(time.Now().UnixNano()) // /livez is fine while Run is about to start
	g.state = g.rule.initial()
	g.state.Updated = Timestamp{Time: time.Now()}
	return g, nil
}

// State returns the current state.
func (g *Gate) State() State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state
}

// Subscribe returns a channel that receives every new State: a mailbox of
// one slot that holds only the latest. A slow reader skips intermediate
// states, never blocks the gate, and always ends up with the current state.
// The current state is delivered at once.
func (g *Gate) Subscribe() <-chan State {
	c := make(chan State, 1)
	g.mu.Lock()
	defer g.mu.Unlock()
	c <- g.state
	g.subs = append(g.subs, c)
	return c
}

// Alive reports an error when the gate loop has made no progress for longer
// than maxStall, which means it is stuck; it never looks at Open vSwitch.
func (g *Gate) Alive(maxStall time.Duration) error {
	if g.stopped.Load() {
		return errors.New("gate loop has stopped")
	}
	last := time.Unix(0, g.progress.Load())
	if since := time.Since(last); since > maxStall {
		return fmt.Errorf("gate loop made no progress for %s", since.Round(time.Second))
	}
	return nil
}

// Start runs the gate on its own goroutine until ctx is done or stop is
// called; stop cancels it and returns once Run has returned.
func (g *Gate) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := g.Run(ctx); err != nil {
			klog.ErrorS(err, "Gate stopped")
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// Run watches Open vSwitch until ctx is done. It returns nil then; a gate
// runs once.
func (g *Gate) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return errors.New("gate is already running")
	}
	defer g.stopped.Store(true)

	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := g.watcher.Run(wctx); err != nil {
			klog.ErrorS(err, "OVSDB watcher stopped")
		}
	})
	r := newReconciler(wctx, &wg, g.cfg, g.watcher, g.rule)
	if g.cpu != nil {
		r.vs.cpu = g.cpu
	}
	if g.kernel != nil {
		r.diag.list = g.kernel
	}
	defer func() {
		cancel()
		r.close()
		wg.Wait()
	}()

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-g.watcher.Changed():
		case <-r.vs.lostC():
		case res := <-r.results:
			r.apply(time.Now(), res)
		case <-timer.C:
		}
		now := time.Now()
		g.progress.Store(now.UnixNano())
		wake := r.reconcile(now)
		if ctx.Err() != nil {
			return nil // what is seen while stopping is the stopping itself
		}
		g.publish(r.last)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wake)
	}
}

// publish stores s and hands it to subscribers unless nothing but the time
// would change, and logs changes of readiness and of cause. Once settled,
// the gate stays settled.
func (g *Gate) publish(s State) {
	g.mu.Lock()
	defer g.mu.Unlock()
	prev := g.state
	s.Settled = s.Settled || prev.Settled
	if s.Equivalent(prev) {
		return
	}
	s.Updated = Timestamp{Time: time.Now()}
	g.state = s
	switch {
	case s.Ready && !prev.Ready:
		klog.InfoS("Ready", "after", s.Updated.Sub(g.notReadySince).Round(time.Microsecond),
			"vswitchdPID", s.VSwitchd.PID, "vswitchdSince", logTime(s.VSwitchd.Since), "bridges", len(s.Bridges))
	case !s.Ready && prev.Ready:
		g.notReadySince = s.Updated.Time
		klog.InfoS("Not ready", "reason", s.Reason)
	case !s.Ready && s.Cause != prev.Cause:
		klog.InfoS("Not ready", "reason", s.Reason)
	case !s.Ready && s.Reason != prev.Reason:
		// The same cause in other words (an OVSDB server that fails each
		// connection differently, a bridge on its way): a line per change
		// of cause is enough at the default level.
		klog.V(2).InfoS("Not ready", "reason", s.Reason)
	default:
		klog.V(4).InfoS("Status changed", "ready", s.Ready, "reason", s.Reason)
	}
	if g.onPublish != nil {
		g.onPublish(s)
	}
	for _, c := range g.subs {
		select {
		case <-c:
		default:
		}
		c <- s
	}
}

// logTime is t as the logs show a time: RFC 3339 in UTC, as in the status
// file, rather than Go's default form with its monotonic clock reading
// ("m=+0.04"); "" for none.
func logTime(t *Timestamp) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
