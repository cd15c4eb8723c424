package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/internal/backoff"
	"github.com/ovsgate/ovsgate/internal/errutil"
)

// BridgeInfo is what OVSDB says about one gated bridge.
type BridgeInfo struct {
	Name         string
	Exists       bool
	DatapathID   string
	DatapathType string
}

// SystemInfo is the Open_vSwitch row's columns that say whether
// ovs-vswitchd forwards, as the row holds them: what they mean is the
// gate's to say. The maps are shared with the cache: read them, never
// change them.
type SystemInfo struct {
	Known           bool // the row has been read (false while disconnected)
	OtherConfig     map[string]string
	ExternalIDs     map[string]string
	DPDKInitialized bool
}

// PortInfo is what OVSDB says about one required interface.
type PortInfo struct {
	Name   string
	Exists bool
	OFPort int // 0 while ovs-vswitchd has assigned none; -1 when it could not open the port
	Error  string
}

// Snapshot is what the watcher knows at one moment.
type Snapshot struct {
	Endpoint  string
	Connected bool                  // the monitor is established and the connection alive
	Bridges   map[string]BridgeInfo // one entry per gated bridge; Exists=false while disconnected
	System    SystemInfo
	Ports     map[string]PortInfo // one entry per required port; Exists=false while disconnected
	Err       error               // why not connected; nil when connected or before the first attempt ends
}

type options struct {
	backoffMin, backoffMax time.Duration
	// connectTimeout bounds one attempt: dial, schema and monitor.
	connectTimeout time.Duration
	// stableAfter is how long a connection must last for the backoff to start
	// over from its minimum.
	stableAfter time.Duration
	// A connection lost sooner than flapBelow after it was established is a
	// flap: repeated flaps are logged at V(2) only.
	flapBelow time.Duration
	// An echo every probeInterval, answered within probeTimeout, tells a live
	// connection from a hung server or a silently dead peer.
	probeInterval, probeTimeout time.Duration
	// repeatEvery is how often an unchanged outage, or a flapping connection,
	// is reported again at the default log level.
	repeatEvery time.Duration
	ports       []string // interfaces to monitor
}

// WithPorts monitors the Interface rows of these names, and only those.
func WithPorts(names []string) Option {
	return func(o *options) { o.ports = names }
}

// Option tunes a Watcher.
type Option func(*options)

// WithBackoff sets the reconnect backoff bounds (default 50ms and 2s).
// Non-positive values keep the default.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) {
		if min > 0 {
			o.backoffMin = min
		}
		if max > 0 {
			o.backoffMax = max
		}
	}
}

var (
	errStopped = errors.New("watcher stopped")
	errClosed  = errors.New("connection closed")

	// ErrNotAnswering: ovsdb-server accepted the connection but did not
	// answer within the timeout: it is hung, stopped or overloaded.
	ErrNotAnswering = errors.New("not answering")
)

// Watcher keeps a conditional monitor on the gated bridges' rows, the
// Open_vSwitch row and the required ports' rows, and reconnects for ever.
type Watcher struct {
	endpoint string // as given, for Snapshot and logs
	dialTo   string // as libovsdb parses it
	bridges  []string
	ports    []string
	opts     options
	dbModel  model.ClientDBModel
	// libovsdb logs each connection attempt; its lines go at V(4) and above.
	libLogger logr.Logger
	changed   chan struct{}
	attempts  atomic.Int64
	running   atomic.Bool

	mu        sync.Mutex
	rows      *cache.TableCache // the live connection's cache; nil while disconnected
	connected bool
	lastErr   error
}

// NewWatcher returns a watcher of the named bridges; it connects nothing
// until Run. The endpoint is one ParseEndpoint accepts: NewWatcher fails
// with ParseEndpoint's own words otherwise.
func NewWatcher(endpoint string, bridges []string, opts ...Option) (*Watcher, error) {
	_, _, dialTo, err := parseEndpoint(endpoint)
	if err != nil {
		return nil, fmt.Errorf("invalid OVSDB endpoint %q: %w", endpoint, err)
	}
	dbModel, err := newClientDBModel()
	if err != nil {
		return nil, fmt.Errorf("OVSDB model: %w", err)
	}
	o := options{
		backoffMin:     50 * time.Millisecond,
		backoffMax:     2 * time.Second,
		connectTimeout: 5 * time.Second,
		stableAfter:    10 * time.Second,
		flapBelow:      time.Second,
		probeInterval:  5 * time.Second,
		probeTimeout:   5 * time.Second,
		repeatEvery:    5 * time.Minute,
	}
	for _, opt := range opts {
		opt(&o)
	}
	o.backoffMax = max(o.backoffMax, o.backoffMin)
	return &Watcher{
		endpoint:  endpoint,
		dialTo:    dialTo,
		bridges:   bridges,
		ports:     o.ports,
		opts:      o,
		dbModel:   dbModel,
		libLogger: klog.NewKlogr().WithName("libovsdb").V(4),
		changed:   make(chan struct{}, 1),
	}, nil
}

// Changed receives a value after any change that may alter the Snapshot
// (connect, disconnect, a gated bridge row added, updated or deleted). Sends
// never block: a full channel means a kick is already pending, so consumers
// re-read Snapshot rather than count kicks.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

func (w *Watcher) kick() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// Snapshot returns a copy of what is known now. The rows come from the current
// connection's cache, filled from scratch by each new monitor, so rows
// deleted during an outage cannot linger.
func (w *Watcher) Snapshot() Snapshot {
	w.mu.Lock()
	rows, connected, lastErr := w.rows, w.connected, w.lastErr
	w.mu.Unlock()

	s := Snapshot{Endpoint: w.endpoint, Connected: connected, Err: lastErr,
		Bridges: make(map[string]BridgeInfo, len(w.bridges)), Ports: make(map[string]PortInfo, len(w.ports))}
	for _, name := range w.bridges {
		s.Bridges[name] = BridgeInfo{Name: name}
	}
	for _, name := range w.ports {
		s.Ports[name] = PortInfo{Name: name}
	}
	if !connected || rows == nil {
		return s
	}
	// Our own reference to the cache: libovsdb drops its reference on
	// disconnect, before telling us (then Client.Cache() returns nil).
	// RowsShallow hands out the cache's own models; libovsdb replaces a model
	// on update instead of changing it, so reading them is safe.
	if table := rows.Table(bridgeTable); table != nil {
		for _, m := range table.RowsShallow() {
			b, ok := m.(*bridge)
			if !ok {
				continue
			}
			if _, gated := s.Bridges[b.Name]; !gated {
				continue
			}
			info := BridgeInfo{Name: b.Name, Exists: true, DatapathType: b.DatapathType}
			if b.DatapathID != nil {
				info.DatapathID = *b.DatapathID
			}
			s.Bridges[b.Name] = info
		}
	}
	if table := rows.Table(systemTable); table != nil {
		for _, m := range table.RowsShallow() {
			if sys, ok := m.(*system); ok {
				s.System = systemInfo(sys)
			}
		}
	}
	if table := rows.Table(interfaceTable); table != nil {
		for _, m := range table.RowsShallow() {
			i, ok := m.(*iface)
			if !ok {
				continue
			}
			if _, required := s.Ports[i.Name]; !required {
				continue
			}
			info := PortInfo{Name: i.Name, Exists: true}
			if i.OFPort != nil {
				info.OFPort = *i.OFPort
			}
			if i.Error != nil {
				info.Error = *i.Error
			}
			s.Ports[i.Name] = info
		}
	}
	return s
}

// systemInfo reports the Open_vSwitch row. libovsdb replaces a cached model
// on update rather than changing it, so its maps may be handed out.
func systemInfo(sys *system) SystemInfo {
	return SystemInfo{Known: true, OtherConfig: sys.OtherConfig, ExternalIDs: sys.ExternalIDs, DPDKInitialized: sys.DPDKInitialized}
}

func (w *Watcher) setConnected(rows *cache.TableCache) {
	w.mu.Lock()
	w.rows, w.connected, w.lastErr = rows, true, nil
	w.mu.Unlock()
	w.kick()
}

func (w *Watcher) setDisconnected(err error) {
	w.mu.Lock()
	changed := w.connected || w.lastErr == nil || w.lastErr.Error() != err.Error()
	w.rows, w.connected, w.lastErr = nil, false, err
	w.mu.Unlock()
	if changed {
		w.kick()
	}
}

// Run connects, monitors and reconnects with capped exponential backoff
// until ctx is done, then returns nil. It owns the reconnect loop instead of
// using libovsdb's WithReconnect, whose default backoff gives up (and panics)
// after 15 minutes and which hides disconnects. Run may be called once at a
// time.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("ovsdb watcher already running")
	}
	defer w.running.Store(false)

	log := connLog{endpoint: w.endpoint, stableAfter: w.opts.stableAfter, flapBelow: w.opts.flapBelow, repeatEvery: w.opts.repeatEvery}
	delay := backoff.Backoff{Min: w.opts.backoffMin, Max: w.opts.backoffMax, Jitter: true}
	for {
		connectedAt, err := w.session(ctx, &log)
		if ctx.Err() != nil {
			w.setDisconnected(errStopped)
			return nil
		}
		w.setDisconnected(err)
		now := time.Now()
		if connectedAt.IsZero() {
			log.failed(now, err)
		} else {
			log.lost(now, now.Sub(connectedAt), err)
			if now.Sub(connectedAt) >= w.opts.stableAfter {
				delay.Reset()
			}
		}
		wait := delay.Next()
		klog.V(4).InfoS("OVSDB reconnect scheduled", "endpoint", w.endpoint, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			w.setDisconnected(errStopped)
			return nil
		case <-t.C:
		}
	}
}

// session runs one connection: it returns when the connection drops or ctx
// is done, with the time the monitor was established (zero if never).
func (w *Watcher) session(ctx context.Context, log *connLog) (connectedAt time.Time, err error) {
	w.attempts.Add(1)
	c, err := client.NewOVSDBClient(w.dbModel, client.WithEndpoint(w.dialTo), client.WithLogger(&w.libLogger))
	if err != nil {
		return time.Time{}, fmt.Errorf("create client: %w", err)
	}
	// libovsdb sends on DisconnectNotify without blocking: a notification that
	// finds no receiver is lost. So listen from before Connect to the end.
	lost, stop, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-c.DisconnectNotify():
			close(lost)
		case <-stop:
		}
	}()
	defer func() {
		c.Close()
		close(stop)
		<-done
	}()

	rows, err := w.connect(ctx, c)
	if err != nil {
		return time.Time{}, err
	}
	connectedAt = time.Now()
	w.setConnected(rows)
	log.connected(connectedAt)
	return connectedAt, w.watch(ctx, c, lost, connectedAt, log)
}

// connect dials, registers the cache handler and starts the monitor, all
// within one connect timeout.
func (w *Watcher) connect(ctx context.Context, c client.Client) (*cache.TableCache, error) {
	cctx, cancel := context.WithTimeout(ctx, w.opts.connectTimeout)
	defer cancel()
	if err := c.Connect(cctx); err != nil {
		return nil, w.connectError("connect", ctx, cctx, err)
	}
	rows := c.Cache()
	if rows == nil { // dropped already
		return nil, fmt.Errorf("connect: %w", errClosed)
	}
	// Before the monitor, so the initial rows kick too. The handler only
	// kicks the level-triggered consumer and never blocks libovsdb.
	rows.AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc:    func(string, model.Model) { w.kick() },
		UpdateFunc: func(string, model.Model, model.Model) { w.kick() },
		DeleteFunc: func(string, model.Model) { w.kick() },
	})
	if _, err := c.Monitor(cctx, newMonitor(c, w.bridges, w.ports)); err != nil {
		return nil, w.connectError("monitor", ctx, cctx, err)
	}
	return rows, nil
}

// connectError names a connection attempt that ran out of time after the
// server accepted it as a server not answering, the same words as a failed
// echo, so that a hung ovsdb-server reads the same from one attempt to the
// next; anything else keeps its root cause.
func (w *Watcher) connectError(step string, ctx, cctx context.Context, err error) error {
	if ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w within %s", ErrNotAnswering, w.opts.connectTimeout)
	}
	return fmt.Errorf("%s: %w", step, errutil.Root(err))
}

// watch waits until the connection drops, an echo goes unanswered, or ctx is
// done.
func (w *Watcher) watch(ctx context.Context, c client.Client, lost <-chan struct{}, connectedAt time.Time, log *connLog) error {
	t := time.NewTicker(w.opts.probeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-lost:
			return errClosed
		case now := <-t.C:
			log.up(now, now.Sub(connectedAt))
			pctx, cancel := context.WithTimeout(ctx, w.opts.probeTimeout)
			err := c.Echo(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				// Also what a missed disconnect notification comes to.
				// libovsdb's own words for a timed-out echo ("incorrect
				// server response") mean nothing to an operator.
				return fmt.Errorf("%w within %s", ErrNotAnswering, w.opts.probeTimeout)
			}
		}
	}
}

// connLog turns connection events into few log lines: state changes at the
// default level, each retry at V(4), an unchanged outage or a flapping
// connection repeated once per repeatEvery. Only Run's goroutine uses it.
type connLog struct {
	endpoint                            string
	stableAfter, flapBelow, repeatEvery time.Duration

	down      bool      // an outage is going on
	downSince time.Time // when it began
	failures  int       // failed attempts in this outage
	lastErr   string
	reported  time.Time // last default-level line about this outage
	lastLoss  time.Time // last default-level "connection lost"
	flapping  bool      // short connections are being logged at V(2)
	flaps     int       // short connections lost since the last default-level line
}

func (l *connLog) connected(now time.Time) {
	switch {
	case l.flapping:
		klog.V(2).InfoS("OVSDB connected", "endpoint", l.endpoint)
	case l.down:
		klog.InfoS("OVSDB connected", "endpoint", l.endpoint, "downtime", now.Sub(l.downSince).Round(time.Millisecond), "attempts", l.failures+1)
	default:
		klog.InfoS("OVSDB connected", "endpoint", l.endpoint)
	}
	l.down, l.failures = false, 0
}

// up is called now and then while connected: a connection that has lasted
// ends a flapping period.
func (l *connLog) up(now time.Time, connectedFor time.Duration) {
	if l.flapping && connectedFor >= l.flapBelow {
		klog.InfoS("OVSDB connected", "endpoint", l.endpoint, "stableFor", connectedFor.Round(time.Second), "shortConnectionsBefore", l.flaps)
		l.flapping, l.flaps = false, 0
	}
}

func (l *connLog) lost(now time.Time, connectedFor time.Duration, err error) {
	l.down, l.downSince, l.failures, l.lastErr, l.reported = true, now, 0, err.Error(), now
	after := connectedFor.Round(time.Millisecond)
	if connectedFor < l.flapBelow && !l.lastLoss.IsZero() && now.Sub(l.lastLoss) < l.repeatEvery {
		l.flapping = true
		l.flaps++
		klog.V(2).InfoS("OVSDB connection lost", "endpoint", l.endpoint, "after", after, "err", err)
		return
	}
	if l.flaps > 0 {
		klog.InfoS("OVSDB connection lost", "endpoint", l.endpoint, "after", after, "err", err, "shortConnectionsBefore", l.flaps)
	} else {
		klog.InfoS("OVSDB connection lost", "endpoint", l.endpoint, "after", after, "err", err)
	}
	l.lastLoss, l.flaps, l.flapping = now, 0, false
}

func (l *connLog) failed(now time.Time, err error) {
	msg := err.Error()
	if !l.down {
		// The first attempt failed: say why once.
		l.down, l.downSince, l.failures, l.lastErr, l.reported = true, now, 1, msg, now
		klog.InfoS("OVSDB not reachable yet, retrying", "endpoint", l.endpoint, "err", err)
		return
	}
	l.failures++
	if l.flapping && now.Sub(l.downSince) >= l.stableAfter {
		// Not a flap but an outage: say so, or the last line would read "connected".
		klog.InfoS("OVSDB connection lost", "endpoint", l.endpoint, "for", now.Sub(l.downSince).Round(time.Millisecond), "err", err, "shortConnectionsBefore", l.flaps)
		l.flapping, l.flaps, l.lastLoss, l.reported, l.lastErr = false, 0, now, now, msg
		return
	}
	if msg != l.lastErr {
		klog.V(2).InfoS("OVSDB still not reachable", "endpoint", l.endpoint, "err", err)
		l.lastErr = msg
	}
	if now.Sub(l.reported) >= l.repeatEvery {
		klog.InfoS("OVSDB still not reachable", "endpoint", l.endpoint, "for", now.Sub(l.downSince).Round(time.Second), "attempts", l.failures, "err", err)
		l.reported = now
	}
}
