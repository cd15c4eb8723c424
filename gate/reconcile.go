package gate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/ovsdb"
)

// maxInstancePoll bounds the wait between looks at the pidfile while no
// ovs-vswitchd answers.
const maxInstancePoll = 100 * time.Millisecond

// firstContactWait bounds how long the first contact with ovs-vswitchd waits
// for OVSDB's first connection attempt to end. With the datapath known, the
// features go in the same batch as the version: one pass of ovs-vswitchd's
// main loop instead of two, tens of milliseconds with thousands of ports.
// Nothing is lost meanwhile: the gate cannot be ready without OVSDB.
const firstContactWait = 2 * time.Second

// reconciler owns everything the gate knows about ovs-vswitchd. Only the gate
// loop calls it, so it needs no locks. Each reconcile recomputes the status
// from the current OVSDB snapshot and the current ovs-vswitchd instance, so a
// lost or merged event cannot leave it wrong.
type reconciler struct {
	cfg     Config
	watcher snapshotter
	diag    *kernelDiagnosis

	inst      *instance // the ovs-vswitchd answering now, nil when none
	instErr   string    // why there is none
	instTried bool      // a discovery attempt has been made
	coolUntil time.Time // no new dial before this (after a timeout)
	started   time.Time // when the reconciler was made

	bridges map[string]*bridgeState
	backoff backoff

	last Status // computed by the last reconcile
}

type snapshotter interface {
	Snapshot() ovsdb.Snapshot
}

// instance is one ovs-vswitchd process, reached over a held connection whose
// EOF tells at once that the process exited.
type instance struct {
	pid        int
	conn       *appctl.Conn
	version    string
	lastAnswer time.Time
}

// bridgeState remembers the last dp-features answer for one bridge and for
// which ovs-vswitchd and datapath it holds.
type bridgeState struct {
	pid        int
	datapathID string
	features   appctl.Features // nil until queried successfully for (pid, datapathID)
	queryErr   string          // why the last query did not succeed
	tried      bool            // a query was made for the current (pid, datapathID)
	wasMissing bool            // the row vanished since the last query: query again
}

func newReconciler(cfg Config, w snapshotter) *reconciler {
	r := &reconciler{
		cfg:     cfg,
		watcher: w,
		diag:    newKernelDiagnosis(),
		bridges: make(map[string]*bridgeState, len(cfg.Bridges)),
		backoff: backoff{min: cfg.RetryMin, max: cfg.RetryMax},
		started: time.Now(),
	}
	for _, br := range cfg.Bridges {
		r.bridges[br] = &bridgeState{}
	}
	return r
}

// connDone is closed when the held connection to ovs-vswitchd is lost; nil
// (never ready) when there is none.
func (r *reconciler) connDone() <-chan struct{} {
	if r.inst == nil {
		return nil
	}
	return r.inst.conn.Done()
}

func (r *reconciler) close() {
	r.dropInstance("")
}

func (r *reconciler) status() Status { return r.last }

// reconcile brings the view of ovs-vswitchd up to date, recomputes the status
// and returns how long the loop may sleep before it must look again.
func (r *reconciler) reconcile(ctx context.Context) time.Duration {
	snap := r.watcher.Snapshot()
	asked := r.ensureInstance(ctx, snap)
	r.ping(ctx)

	pending := r.inst == nil // ovs-vswitchd may come back at any moment: poll for it
	for _, br := range r.cfg.Bridges {
		if r.queryBridge(ctx, br, snap.Bridges[br], asked[br]) {
			pending = true
		}
	}
	prev := r.last
	r.last = r.compute(snap)
	if r.last.Ready || !r.last.Equivalent(prev) {
		r.backoff.reset() // progress: look again soon if still not ready
	}

	wake := r.cfg.PingInterval
	if r.inst != nil {
		if d := time.Until(r.inst.lastAnswer.Add(r.cfg.PingInterval)); d < wake {
			wake = max(d, time.Millisecond)
		}
	}
	if pending {
		wake = min(wake, r.backoff.next())
	}
	if r.inst == nil {
		// Looking for a new ovs-vswitchd is one read of its pidfile: do it
		// often, so a restarted one is trusted within a tenth of a second.
		wake = min(wake, maxInstancePoll)
	}
	if d := time.Until(r.coolUntil); d > wake {
		wake = d
	}
	return wake
}

// ensureInstance finds the ovs-vswitchd named by the pidfile and holds a
// connection to it; an instance whose connection is lost is dropped first.
// On a new connection it asks for the version and, in the same batch, for
// the features of every bridge that already has a datapath: one pass of
// ovs-vswitchd's main loop instead of two, which matters with thousands of
// ports. It returns those answers by bridge.
func (r *reconciler) ensureInstance(ctx context.Context, snap ovsdb.Snapshot) map[string]*appctl.Result {
	if r.inst != nil {
		select {
		case <-r.inst.conn.Done():
			why := fmt.Sprintf("ovs-vswitchd (pid %d) exited", r.inst.pid)
			if err := r.inst.conn.Err(); err != nil && !strings.Contains(err.Error(), "server closed the connection") && !strings.Contains(err.Error(), "connection reset by peer") {
				why = fmt.Sprintf("ovs-vswitchd (pid %d): %s", r.inst.pid, r.describe(err))
			}
			r.dropInstance(why)
		default:
			return nil
		}
	}
	if time.Now().Before(r.coolUntil) {
		return nil
	}
	if !r.instTried && !snap.Connected && snap.Err == "" && time.Since(r.started) < firstContactWait {
		return nil // OVSDB's first attempt is under way; the loop looks again within maxInstancePoll
	}
	r.instTried = true
	target, err := appctl.Discover(r.cfg.RunDir)
	if err != nil {
		r.instErr = r.describe(err)
		return nil
	}
	callCtx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	conn, err := appctl.Dial(callCtx, target.Socket, appctl.WithObserver(r.cfg.Observer))
	if err != nil {
		r.instErr = fmt.Sprintf("ovs-vswitchd (pid %d): %s", target.PID, r.describe(err))
		r.coolDownAfter(err)
		return nil
	}
	reqs := []appctl.Request{{Method: "version"}}
	var bridges []string
	for _, br := range r.cfg.Bridges {
		if info := snap.Bridges[br]; info.Exists && info.DatapathID != "" {
			reqs = append(reqs, appctl.Request{Method: "dpif/show-dp-features", Args: []string{br}})
			bridges = append(bridges, br)
		}
	}
	res := conn.Batch(callCtx, reqs...)
	ver, err := res[0].Text, res[0].Err
	if err == nil {
		ver, err = appctl.ParseVersion(ver)
	}
	if err != nil {
		conn.Close()
		r.instErr = fmt.Sprintf("ovs-vswitchd (pid %d): %s", target.PID, r.describe(err))
		r.coolDownAfter(err)
		return nil
	}
	r.inst = &instance{pid: target.PID, conn: conn, version: ver, lastAnswer: time.Now()}
	r.instErr = ""
	klog.V(2).InfoS("Connected to ovs-vswitchd", "pid", target.PID, "version", ver)
	asked := make(map[string]*appctl.Result, len(bridges))
	for i, br := range bridges {
		asked[br] = &res[i+1]
	}
	return asked
}

// ping checks that an instance that has been silent for a while still
// answers, so that a hung ovs-vswitchd is noticed.
func (r *reconciler) ping(ctx context.Context) {
	if r.inst == nil || time.Since(r.inst.lastAnswer) < r.cfg.PingInterval {
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	if _, err := r.inst.conn.Call(callCtx, "version"); err != nil {
		r.failInstance(ctx, err)
		return
	}
	r.inst.lastAnswer = time.Now()
}

// failInstance drops the instance after a call failed in a way that says the
// process is gone or stuck (not an error reply).
func (r *reconciler) failInstance(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // shutting down: the call was cut short by us, not by ovs-vswitchd
	}
	pid := r.inst.pid
	r.dropInstance(fmt.Sprintf("ovs-vswitchd (pid %d): %s", pid, r.describe(err)))
	r.coolDownAfter(err)
}

// coolDownAfter keeps a stuck ovs-vswitchd from blocking the loop on every
// attempt: after a timeout, the next one waits for the longest retry delay.
func (r *reconciler) coolDownAfter(err error) {
	if errors.Is(err, appctl.ErrTimeout) {
		r.coolUntil = time.Now().Add(r.cfg.RetryMax)
	}
}

func (r *reconciler) dropInstance(why string) {
	if r.inst == nil {
		return
	}
	r.inst.conn.Close()
	r.inst = nil
	r.instErr = why
	r.backoff.reset()
}

// queryBridge asks the current ovs-vswitchd for the bridge's datapath
// features when what it knows is not for this instance and datapath, or
// takes the answer ensureInstance already got (asked, nil if none). It
// reports whether a retry is pending.
func (r *reconciler) queryBridge(ctx context.Context, br string, info ovsdb.BridgeInfo, asked *appctl.Result) bool {
	st := r.bridges[br]
	if !info.Exists {
		st.wasMissing = true
		return false
	}
	if info.DatapathID == "" || r.inst == nil {
		return false
	}
	if st.pid == r.inst.pid && st.datapathID == info.DatapathID && !st.wasMissing && st.features != nil {
		return false // already verified against this instance and datapath
	}
	if st.pid != r.inst.pid || st.datapathID != info.DatapathID || st.wasMissing {
		*st = bridgeState{pid: r.inst.pid, datapathID: info.DatapathID}
	}
	features, err := r.dpFeatures(ctx, br, asked)
	st.tried = true
	switch {
	case err == nil:
		st.features, st.queryErr = features, ""
		r.inst.lastAnswer = time.Now()
		return false
	case errors.Is(err, appctl.ErrNotRegistered):
		st.queryErr = fmt.Sprintf("ovs-vswitchd (pid %d) has not registered dpif/show-dp-features yet", r.inst.pid)
		r.inst.lastAnswer = time.Now()
	case errors.Is(err, appctl.ErrNoSuchBridge):
		st.queryErr = fmt.Sprintf("ovs-vswitchd (pid %d) has not configured the bridge yet", r.inst.pid)
		r.inst.lastAnswer = time.Now()
	case isServerError(err):
		st.queryErr = "dpif/show-dp-features failed: " + r.describe(err)
		r.inst.lastAnswer = time.Now()
	default:
		st.queryErr = "dpif/show-dp-features: " + r.describe(err)
		if errors.Is(err, appctl.ErrMalformed) {
			break // a garbled answer: the process still answers, try again later
		}
		r.failInstance(ctx, err)
	}
	return true
}

// dpFeatures parses the answer already asked for, or asks for it.
func (r *reconciler) dpFeatures(ctx context.Context, br string, asked *appctl.Result) (appctl.Features, error) {
	if asked != nil {
		if asked.Err != nil {
			return nil, asked.Err
		}
		return appctl.ParseDPFeatures(asked.Text)
	}
	callCtx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	return r.inst.conn.DPFeatures(callCtx, br)
}

func isServerError(err error) bool {
	var se *appctl.ServerError
	return errors.As(err, &se)
}

// settled reports whether every check has had a definite answer.
func (r *reconciler) settled() bool {
	snap := r.watcher.Snapshot()
	if !snap.Connected && snap.Err == "" {
		return false
	}
	if !r.instTried {
		return false
	}
	if r.inst == nil || !snap.Connected {
		return true
	}
	for _, br := range r.cfg.Bridges {
		info := snap.Bridges[br]
		if info.Exists && info.DatapathID != "" && !r.bridges[br].tried {
			return false
		}
	}
	return true
}

// compute derives the status from the snapshot and what the reconciler knows.
func (r *reconciler) compute(snap ovsdb.Snapshot) Status {
	s := Status{
		OVSDB:   OVSDBStatus{Endpoint: r.cfg.OVSDB, Connected: snap.Connected},
		Bridges: make([]BridgeStatus, 0, len(r.cfg.Bridges)),
		Checks:  make([]Check, 0, 2+2*len(r.cfg.Bridges)),
	}
	ovsdbMsg := ""
	switch {
	case !snap.Connected && snap.Err == "":
		ovsdbMsg = "connecting to " + r.cfg.OVSDB
	case !snap.Connected:
		ovsdbMsg = "not connected to " + r.cfg.OVSDB + ": " + snap.Err
	}
	s.Checks = append(s.Checks, Check{Name: CheckOVSDB, OK: snap.Connected, Message: ovsdbMsg})

	vsMsg := ""
	if r.inst != nil {
		s.VSwitchd = VSwitchdStatus{PID: r.inst.pid, Version: r.inst.version}
	} else {
		vsMsg = r.instErr
		if vsMsg == "" {
			vsMsg = "looking for ovs-vswitchd"
		}
	}
	s.Checks = append(s.Checks, Check{Name: CheckVSwitchd, OK: r.inst != nil, Message: vsMsg})

	var reasons []string
	for _, br := range r.cfg.Bridges {
		b, dpCheck, featCheck := r.computeBridge(br, snap)
		s.Bridges = append(s.Bridges, b)
		s.Checks = append(s.Checks, dpCheck, featCheck)
		if !b.Ready {
			reasons = append(reasons, "bridge "+br+": "+b.Reason)
		}
	}
	switch {
	case !snap.Connected:
		s.Reason = "OVSDB: " + ovsdbMsg
	case r.inst == nil && strings.HasPrefix(vsMsg, "ovs-vswitchd"):
		s.Reason = vsMsg
	case r.inst == nil:
		s.Reason = "ovs-vswitchd: " + vsMsg
	default:
		s.Reason = strings.Join(reasons, "; ")
	}
	s.Ready = snap.Connected && r.inst != nil && len(reasons) == 0
	if s.Ready {
		s.Reason = ""
	}
	return s
}

func (r *reconciler) computeBridge(br string, snap ovsdb.Snapshot) (BridgeStatus, Check, Check) {
	info := snap.Bridges[br]
	st := r.bridges[br]
	b := BridgeStatus{Name: br, DatapathID: info.DatapathID, DatapathType: info.DatapathType, Features: map[string]any{}}

	var dpReason string
	switch {
	case !snap.Connected:
		dpReason = "waiting for OVSDB"
	case !info.Exists:
		dpReason = "bridge does not exist in OVSDB"
	case info.DatapathID == "":
		dpReason = "waiting for datapath ID"
	case r.inst == nil:
		dpReason = "waiting for ovs-vswitchd"
	case st.features == nil || st.pid != r.inst.pid || st.datapathID != info.DatapathID || st.wasMissing:
		dpReason = st.queryErr
		if dpReason == "" || st.pid != r.inst.pid || st.datapathID != info.DatapathID {
			dpReason = "waiting for datapath features"
		}
	}
	if dpReason != "" {
		if d := r.diag.explain(info); d != "" {
			dpReason += " (" + d + ")"
		}
		b.Reason = dpReason
		return b, Check{Name: DatapathCheck(br), Message: dpReason},
			Check{Name: FeaturesCheck(br), Message: "datapath not ready"}
	}

	b.Features = st.features.Map()
	var unmet []string
	for _, req := range r.cfg.Requirements {
		f, ok := st.features.Get(req.Name)
		if msg := req.Check(f.Value, ok); msg != "" {
			unmet = append(unmet, msg)
		}
	}
	featMsg := strings.Join(unmet, "; ")
	b.Ready = featMsg == ""
	b.Reason = featMsg
	return b, Check{Name: DatapathCheck(br), OK: true}, Check{Name: FeaturesCheck(br), OK: b.Ready, Message: featMsg}
}

// describe turns an appctl error into the words of a reason. They must not
// vary from one attempt to the next, or every retry would be a state change.
func (r *reconciler) describe(err error) string {
	if errors.Is(err, appctl.ErrTimeout) {
		return fmt.Sprintf("not answering within %s", r.cfg.CallTimeout)
	}
	return err.Error()
}

// backoff doubles a delay from min up to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
