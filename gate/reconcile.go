package gate

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/internal/backoff"
	"github.com/ovsgate/ovsgate/ovsdb"
)

// firstContactWait bounds how long the first contact with ovs-vswitchd waits
// for OVSDB's first connection attempt to end. With the datapath known, the
// features go in the same batch as the version (see opConnect). Nothing is
// lost meanwhile: the gate cannot be ready without OVSDB.
const firstContactWait = 2 * time.Second

// minWake keeps the loop from spinning when something is due right now.
const minWake = 100 * time.Microsecond

// reconciler owns everything the gate knows beyond the OVSDB snapshot. Only
// the gate loop calls it, so it needs no locks. Each reconcile recomputes the
// status from the current snapshot and what the instance answering now said,
// so a lost or merged event cannot leave it wrong.
type reconciler struct {
	cfg     Config
	watcher snapshotter
	diag    *kernelDiagnosis
	vs      *vswitchd
	bridges map[string]*bridgeState

	opened openedPorts // what the instance answering now listed in dpif/show

	// Retries of "not yet" answers (a new ovs-vswitchd that has not
	// registered dp-features or configured the bridge yet, or has not opened
	// a required port yet).
	retry     backoff.Backoff
	nextRetry time.Time

	flowRestoreWaitSince time.Time // when flow-restore-wait was first seen set; zero while clear

	rule    *rule
	ctx     context.Context // ends the calls in flight
	calls   *sync.WaitGroup // the goroutines running them
	results chan opResult
	started time.Time
	last    State
}

type snapshotter interface {
	Snapshot() ovsdb.Snapshot
}

// bridgeState is the last dp-features answer for one bridge, and the
// instance and datapath it was asked about.
type bridgeState struct {
	serial     uint64
	datapathID string
	features   appctl.Features // nil unless the answer was the features
	err        error           // why not
	pid        int             // of the instance asked
}

func newReconciler(ctx context.Context, calls *sync.WaitGroup, cfg Config, w snapshotter, rl *rule) *reconciler {
	r := &reconciler{
		cfg:     cfg,
		rule:    rl,
		watcher: w,
		diag:    newKernelDiagnosis(),
		bridges: make(map[string]*bridgeState, len(cfg.Bridges)),
		retry:   backoff.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax},
		ctx:     ctx,
		calls:   calls,
		results: make(chan opResult),
		started: time.Now(),
	}
	r.vs = newVSwitchd(&r.cfg)
	for _, br := range cfg.Bridges {
		r.bridges[br] = &bridgeState{}
	}
	return r
}

func (r *reconciler) close() { r.vs.close() }

// reconcile looks at everything again, starts the call that is due, if any,
// recomputes the state and returns how long the loop may sleep before it
// must look again. It never waits on ovs-vswitchd.
func (r *reconciler) reconcile(now time.Time) time.Duration {
	snap := r.watcher.Snapshot()
	sys := readSystem(snap.System)
	want := portsToConfirm(r.cfg.RequirePorts, snap)
	r.vs.checkLost(now)
	// While OVSDB is away the row is unknown, not cleared: a flag that is
	// still set after a reconnect keeps the time it was first seen.
	switch {
	case sys.flowRestoreWait == flagOff:
		r.flowRestoreWaitSince = time.Time{}
	case sys.flowRestoreWait == flagOn && r.flowRestoreWaitSince.IsZero():
		r.flowRestoreWaitSince = now
	}
	for br, st := range r.bridges {
		if !snap.Bridges[br].Exists {
			*st = bridgeState{} // deleted (or OVSDB away): ask again once it is back
		}
	}
	switch {
	case r.vs.cur.conn == nil:
		if r.mayLook(now, snap) && r.vs.look(r.ctx, now) {
			r.connect(now, snap, want)
		}
	case r.vs.cur.op == nil:
		r.next(now, snap, want)
	default:
		r.vs.observe(now)
	}
	in := r.inputs(now, snap, sys)
	r.last = r.rule.evaluate(&in)
	return r.wake(now, snap, want)
}

// mayLook reports whether it is time to look for an instance. The very first
// look waits for OVSDB's first attempt, so that the first batch can carry
// the features of bridges OVSDB already shows configured.
func (r *reconciler) mayLook(now time.Time, snap ovsdb.Snapshot) bool {
	if now.Before(r.vs.nextLook) {
		return false
	}
	return !r.waitingForOVSDB(now, snap)
}

// waitingForOVSDB reports whether the first look waits for OVSDB's first
// attempt to end; the watcher's change wakes the loop when it does.
func (r *reconciler) waitingForOVSDB(now time.Time, snap ovsdb.Snapshot) bool {
	return !r.vs.tried && !snap.Connected && snap.Err == nil && now.Sub(r.started) < firstContactWait
}

// connect asks a new instance for its version and, in the same batch (one
// pass of ovs-vswitchd's main loop: see appctl.Conn.Batch), for the features
// of every bridge that already has a datapath.
func (r *reconciler) connect(now time.Time, snap ovsdb.Snapshot, want map[string]int) {
	o := &op{kind: opConnect, reqs: []appctl.Request{appctl.Version().Request}}
	for _, br := range r.cfg.Bridges {
		if info := snap.Bridges[br]; info.Exists && info.DatapathID != "" {
			o.add(br, info.DatapathID)
		}
	}
	if len(want) > 0 {
		o.showPorts(want)
	}
	r.retry.Reset()
	r.nextRetry = time.Time{}
	r.start(o, now)
}

func (o *op) add(br, dpid string) {
	o.reqs = append(o.reqs, appctl.DPFeatures(br).Request)
	o.bridges = append(o.bridges, br)
	o.dpids = append(o.dpids, dpid)
}

// showPorts asks for dpif/show, last in the batch.
func (o *op) showPorts(ofports map[string]int) {
	o.reqs = append(o.reqs, appctl.DPIFShow(nil).Request)
	o.ports = ofports
}

// next starts the call an answering instance is due: the features of
// bridges and the opened ports that need asking, else a ping once it has
// been silent for the ping interval, so that a hung ovs-vswitchd is noticed.
func (r *reconciler) next(now time.Time, snap ovsdb.Snapshot, want map[string]int) {
	if !r.vs.established() {
		return
	}
	o := &op{kind: opQuery}
	for _, br := range r.cfg.Bridges {
		if r.needsQuery(now, br, snap.Bridges[br]) {
			o.add(br, snap.Bridges[br].DatapathID)
		}
	}
	if r.needsDPIFShow(now, want) {
		o.showPorts(want)
	}
	switch {
	case len(o.reqs) > 0:
		r.start(o, now)
	case now.Sub(r.vs.cur.lastAnswer) >= r.cfg.PingInterval:
		r.start(&op{kind: opPing, reqs: []appctl.Request{appctl.Version().Request}}, now)
	}
}

// needsQuery reports whether the bridge's features must be asked of the
// instance answering now: never asked about this datapath, or a "not yet"
// answer whose retry is due.
func (r *reconciler) needsQuery(now time.Time, br string, info ovsdb.BridgeInfo) bool {
	if !info.Exists || info.DatapathID == "" {
		return false
	}
	st := r.bridges[br]
	if st.serial != r.vs.cur.serial || st.datapathID != info.DatapathID {
		return true
	}
	return st.features == nil && !now.Before(r.nextRetry)
}

// start runs o on its own goroutine; its result comes back through results.
func (r *reconciler) start(o *op, now time.Time) {
	r.vs.begin(o, now)
	conn := r.vs.cur.conn
	r.calls.Add(1)
	go func() {
		defer r.calls.Done()
		res := conn.Batch(r.ctx, o.reqs...)
		select {
		case r.results <- opResult{op: o, res: res}:
		case <-r.ctx.Done():
		}
	}()
}

// apply takes the answers to a call. Answers from an instance that has been
// given up on since are dropped.
func (r *reconciler) apply(now time.Time, res opResult) {
	o := res.op
	if r.vs.cur.op != o {
		return
	}
	// An error that is not an error reply means the connection is gone
	// (Batch closes it): the instance is lost.
	for _, x := range res.res {
		var se *appctl.ServerError
		if x.Err != nil && !errors.As(x.Err, &se) {
			r.vs.lose(now, x.Err)
			return
		}
	}
	r.vs.gotAnswer(now)
	answers := res.res
	if o.kind == opConnect {
		version, err := appctl.Version().Read(answers[0])
		if err != nil {
			r.vs.lose(now, err)
			return
		}
		r.vs.firstAnswer(now, version)
		answers = answers[1:]
	}
	if o.kind == opPing {
		return
	}
	notYet := r.features(o, answers[:len(o.bridges)])
	if o.ports != nil && r.dpifShow(o, answers[len(o.bridges)]) {
		notYet = true
	}
	if notYet {
		r.nextRetry = now.Add(r.retry.Next())
	} else {
		r.retry.Reset()
	}
}

// features records the dp-features answers of o; it reports whether one of
// them means "not yet": any error answer, for the process still answers.
func (r *reconciler) features(o *op, answers []appctl.Result) (notYet bool) {
	for i, br := range o.bridges {
		st := r.bridges[br]
		*st = bridgeState{serial: o.serial, datapathID: o.dpids[i], pid: o.pid}
		st.features, st.err = appctl.DPFeatures(br).Read(answers[i])
		if st.err != nil {
			notYet = true
		}
	}
	return notYet
}

// inputs gathers what the checks judge.
func (r *reconciler) inputs(now time.Time, snap ovsdb.Snapshot, sys system) inputs {
	in := inputs{
		snap:                 snap,
		system:               sys,
		flowRestoreWaitSince: r.flowRestoreWaitSince,
		vswitchd:             r.vs.view(now),
		bridge:               make(map[string]bridgeView, len(r.bridges)),
		port:                 make(map[string]portView, len(r.cfg.RequirePorts)),
	}
	serial := r.vs.cur.serial
	for _, name := range r.cfg.RequirePorts {
		var pv portView
		if in.vswitchd.answering && r.opened.serial == serial {
			pv = portView{listed: true, opened: r.opened.ofport[name], err: r.opened.err}
		}
		in.port[name] = pv
	}
	for br, st := range r.bridges {
		info := snap.Bridges[br]
		var bv bridgeView
		if in.vswitchd.answering && st.serial == serial && st.datapathID == info.DatapathID && info.DatapathID != "" {
			bv.features, bv.err, bv.pid = st.features, st.err, st.pid
		}
		if bv.features == nil {
			bv.diagnosis = r.diag.explain(info)
		}
		in.bridge[br] = bv
	}
	return in
}

// wake is how long the loop may sleep: until the next look for an instance,
// the moment a call in flight would count as stalled (then each stall
// sample), the next retry, or the next ping.
func (r *reconciler) wake(now time.Time, snap ovsdb.Snapshot, want map[string]int) time.Duration {
	d := r.cfg.PingInterval
	v := r.vs
	switch {
	case r.waitingForOVSDB(now, snap):
		d = min(d, maxInstancePoll)
	case v.cur.conn == nil:
		d = min(d, v.nextLook.Sub(now))
	case v.cur.op != nil:
		if out := now.Sub(v.cur.op.started); out < r.cfg.CallTimeout {
			d = min(d, r.cfg.CallTimeout-out)
		} else {
			d = min(d, stallSample)
		}
	default:
		d = min(d, v.cur.lastAnswer.Add(r.cfg.PingInterval).Sub(now))
		for _, br := range r.cfg.Bridges {
			st := r.bridges[br]
			if info := snap.Bridges[br]; st.serial == v.cur.serial && st.features == nil && st.datapathID == info.DatapathID && info.Exists {
				d = min(d, r.nextRetry.Sub(now))
			}
		}
		if r.opened.serial == v.cur.serial {
			for name, of := range want {
				if r.opened.ofport[name] != of {
					d = min(d, r.nextRetry.Sub(now))
				}
			}
		}
	}
	return max(d, minWake)
}
