package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	"k8s.io/klog/v2"
)

// bridge holds only the Bridge columns the gate reads. Bridge.ports in
// particular is left out: it holds one UUID per port.
type bridge struct {
	UUID         string  `ovsdb:"_uuid"`
	Name         string  `ovsdb:"name"`
	DatapathID   *string `ovsdb:"datapath_id"`
	DatapathType string  `ovsdb:"datapath_type"`
}

// BridgeInfo is what OVSDB says about one gated bridge.
type BridgeInfo struct {
	Name         string
	Exists       bool
	DatapathID   string
	DatapathType string
}

// Snapshot is what the watcher knows at one moment.
type Snapshot struct {
	Endpoint  string
	Connected bool                  // the monitor is established and the connection alive
	Bridges   map[string]BridgeInfo // one entry per gated bridge
	Err       string                // why not connected; "" when connected
}

type options struct {
	backoffMin, backoffMax time.Duration
	connectTimeout         time.Duration
	// stableAfter is how long a connection must last for the backoff to start
	// over from its minimum.
	stableAfter time.Duration
}

// Option tunes a Watcher.
type Option func(*options)

// WithBackoff sets the reconnect backoff bounds.
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

// Watcher keeps a conditional monitor on the gated bridges' rows.
type Watcher struct {
	endpoint string
	bridges  []string
	opts     options
	changed  chan struct{}
	attempts atomic.Int64 // connection attempts, for tests

	mu        sync.Mutex
	client    client.Client // nil while disconnected
	connected bool
	lastErr   string
}

// NewWatcher validates the endpoint and bridge names; it connects nothing
// until Run.
func NewWatcher(endpoint string, bridges []string, opts ...Option) (*Watcher, error) {
	if _, _, err := ParseEndpoint(endpoint); err != nil {
		return nil, err
	}
	if len(bridges) == 0 {
		return nil, errors.New("no bridge to watch")
	}
	for _, b := range bridges {
		if b == "" {
			return nil, errors.New("empty bridge name")
		}
	}
	o := options{
		backoffMin:     50 * time.Millisecond,
		backoffMax:     2 * time.Second,
		connectTimeout: 5 * time.Second,
		stableAfter:    10 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.backoffMax < o.backoffMin {
		o.backoffMax = o.backoffMin
	}
	return &Watcher{
		endpoint: endpoint,
		bridges:  append([]string(nil), bridges...),
		opts:     o,
		changed:  make(chan struct{}, 1),
	}, nil
}

// Changed receives a value after any change that may alter the Snapshot.
// Sends never block: a full channel means a kick is already pending.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

func (w *Watcher) kick() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// Snapshot returns a copy of what is known now, read from the current
// connection's cache: after a reconnect that is a fresh cache, so rows deleted
// during an outage cannot linger.
func (w *Watcher) Snapshot() Snapshot {
	w.mu.Lock()
	c, connected, lastErr := w.client, w.connected, w.lastErr
	w.mu.Unlock()

	s := Snapshot{Endpoint: w.endpoint, Connected: connected, Err: lastErr, Bridges: make(map[string]BridgeInfo, len(w.bridges))}
	for _, name := range w.bridges {
		s.Bridges[name] = BridgeInfo{Name: name}
	}
	if !connected || c == nil {
		return s
	}
	s.Err = ""
	table := c.Cache().Table("Bridge")
	if table == nil {
		return s
	}
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
	return s
}

// Run connects, monitors and reconnects with capped exponential backoff
// until ctx is done, then returns nil. It owns the reconnect loop instead of
// libovsdb's WithReconnect, whose default backoff gives up (and panics) after
// 15 minutes and which hides disconnects.
func (w *Watcher) Run(ctx context.Context) error {
	delay := time.Duration(0)
	for {
		start := time.Now()
		err := w.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > w.opts.stableAfter {
			delay = 0
		}
		delay = nextDelay(delay, w.opts.backoffMin, w.opts.backoffMax)
		klog.V(4).InfoS("OVSDB reconnect scheduled", "endpoint", w.endpoint, "in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// nextDelay doubles the delay within [min, max] with ±20% jitter.
func nextDelay(cur, lo, hi time.Duration) time.Duration {
	if cur < lo {
		cur = lo
	} else {
		cur = min(2*cur, hi)
	}
	jitter := time.Duration(rand.Int64N(int64(cur)/5 + 1))
	if rand.IntN(2) == 0 {
		return max(cur-jitter, lo)
	}
	return min(cur+jitter, hi)
}

// session runs one connection until it drops or ctx is done.
func (w *Watcher) session(ctx context.Context) error {
	c, err := w.connect(ctx)
	if err != nil {
		w.setDisconnected(err)
		return err
	}
	defer c.Close()

	w.mu.Lock()
	w.client, w.connected, w.lastErr = c, true, ""
	w.mu.Unlock()
	klog.InfoS("OVSDB connected", "endpoint", w.endpoint)
	w.kick()

	select {
	case <-ctx.Done():
		w.setDisconnected(errors.New("stopped"))
		return ctx.Err()
	case <-c.DisconnectNotify():
		err := errors.New("connection lost")
		klog.InfoS("OVSDB connection lost", "endpoint", w.endpoint)
		w.setDisconnected(err)
		return err
	}
}

func (w *Watcher) setDisconnected(err error) {
	w.mu.Lock()
	wasConnected := w.connected
	changed := wasConnected || w.lastErr != err.Error()
	w.client, w.connected, w.lastErr = nil, false, err.Error()
	w.mu.Unlock()
	if changed {
		w.kick()
	}
}

// connect dials, registers the cache handlers and starts the monitor.
func (w *Watcher) connect(ctx context.Context) (client.Client, error) {
	w.attempts.Add(1)
	dbModel, err := model.NewClientDBModel("Open_vSwitch", map[string]model.Model{"Bridge": &bridge{}})
	if err != nil {
		return nil, fmt.Errorf("OVSDB model: %w", err)
	}
	// libovsdb logs every connection attempt; keep that below the default
	// verbosity so an absent OVSDB does not flood the log.
	l := klog.NewKlogr().WithName("libovsdb").V(4)
	c, err := client.NewOVSDBClient(dbModel, client.WithEndpoint(w.endpoint), client.WithLogger(&l))
	if err != nil {
		return nil, fmt.Errorf("OVSDB client: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, w.opts.connectTimeout)
	defer cancel()
	if err := c.Connect(cctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect: %w", unwrapConnectError(err))
	}
	// Handlers before the monitor, so the initial rows are seen too. They
	// only kick the level-triggered consumer and never block libovsdb.
	c.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc:    func(string, model.Model) { w.kick() },
		UpdateFunc: func(string, model.Model, model.Model) { w.kick() },
		DeleteFunc: func(string, model.Model) { w.kick() },
	})
	b := &bridge{}
	conds := make([]model.Condition, 0, len(w.bridges))
	for _, name := range w.bridges {
		conds = append(conds, model.Condition{Field: &b.Name, Function: ovsdb.ConditionEqual, Value: name})
	}
	mon := c.NewMonitor(client.WithConditionalTable(b, conds, &b.Name, &b.DatapathID, &b.DatapathType))
	// monitor_cond, not monitor_cond_since: on the latter libovsdb swallows cache errors.
	mon.Method = ovsdb.ConditionalMonitorRPC
	if _, err := c.Monitor(cctx, mon); err != nil {
		c.Close()
		return nil, fmt.Errorf("monitor: %w", err)
	}
	return c, nil
}

// unwrapConnectError keeps the useful part of libovsdb's connect errors, so
// the reason stays short and stable from one attempt to the next.
func unwrapConnectError(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
