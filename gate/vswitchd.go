package gate

import (
	"context"
	"errors"
	"time"

	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/internal/backoff"
)

// maxInstancePoll bounds the wait between looks at the pidfile while no
// ovs-vswitchd answers: a look is two file reads and a connect, so a
// restarted ovs-vswitchd is reached within a tenth of a second. Right after
// an instance is lost the looks start at the retry minimum and double up to
// this, since a restart usually follows at once.
const maxInstancePoll = 100 * time.Millisecond

// vswitchd follows the ovs-vswitchd instance answering now. An instance is
// one held connection to a control socket: each new connection that follows
// a lost one is a new instance, whatever pid its pidfile shows, because in a
// pid namespace of its own every ovs-vswitchd has the same pid and socket
// name. Nothing verified on an earlier instance counts for a new one: a lost
// instance leaves a zero instance behind, and only what vswitchd keeps
// beside it survives.
//
// Only the gate loop uses it. It never waits on ovs-vswitchd: calls run on
// their own goroutine (one at a time, as the connection serves them in
// order anyway), and the loop looks at how long the one in flight has been
// out.
type vswitchd struct {
	cfg *Config
	cpu cpuReader
	cur instance // the connection held now; zero when none

	// What outlives an instance.
	serial   uint64          // counts connections
	answered uint64          // instances that have answered, the current one included
	tried    bool            // a look at the pidfile has been made
	nextLook time.Time       // no look before this while there is no instance
	down     absence         // why no instance answers, while none does
	gone     absence         // the last instance lost, until a new one answers
	looks    backoff.Backoff // between looks while none answers
	faults   backoff.Backoff // between connections that failed other than by an exit
}

// instance is one held connection and what it has said.
type instance struct {
	conn       *appctl.Conn
	serial     uint64
	pid        int    // as its pidfile says
	peer       int    // its pid in our namespace; 0 when not visible here
	peerStart  uint64 // its start time, to tell a reused pid apart
	version    string
	since      time.Time // its first answer; zero until then
	lastAnswer time.Time
	op         *op // the call in flight, nil when none
	stall      stall
}

// op is one batch of calls on the instance's connection: a version request
// (opConnect, opPing), then dp-features of bridges, then dpif/show when
// ports is not nil.
type op struct {
	kind    opKind
	serial  uint64 // the instance it was sent to
	pid     int
	reqs    []appctl.Request
	bridges []string       // whose dp-features it asks for
	dpids   []string       // the datapath ID each of them had when asked
	ports   map[string]int // the ports a dpif/show asks about, with their ofports in OVSDB then
	started time.Time
}

type opKind int

const (
	opConnect opKind = iota // version and dp-features of a new instance, in one batch
	opQuery                 // dp-features of bridges that need them
	opPing                  // version, to see that the instance still answers
)

// opResult is what the goroutine that ran an op hands back to the loop.
type opResult struct {
	op  *op
	res []appctl.Result
}

// stall tells, for a call out longer than the call timeout, whether
// ovs-vswitchd is busy (its main thread runs) or hung (it does not).
type stall struct {
	kind   stallKind
	sample time.Time     // when cpu was read last
	cpu    time.Duration // main thread CPU time then
	seen   bool          // sample and cpu hold a reading
}

type stallKind int

const (
	stallNone    stallKind = iota
	stallUnknown           // its CPU time cannot be read from here
	stallBusy
	stallHung
)

func newVSwitchd(cfg *Config) *vswitchd {
	return &vswitchd{cfg: cfg, cpu: mainThreadCPU,
		looks:  backoff.Backoff{Min: cfg.RetryMin, Max: maxInstancePoll},
		faults: backoff.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax}}
}

// lostC is closed when the held connection is lost; nil (never ready) when
// there is none.
func (v *vswitchd) lostC() <-chan struct{} {
	if v.cur.conn == nil {
		return nil
	}
	return v.cur.conn.Done()
}

func (v *vswitchd) established() bool { return v.cur.conn != nil && !v.cur.since.IsZero() }

// restarts counts the instances that answered after the first.
func (v *vswitchd) restarts() uint64 {
	if v.answered == 0 {
		return 0
	}
	return v.answered - 1
}

// checkLost drops the instance if its connection has ended.
func (v *vswitchd) checkLost(now time.Time) {
	if v.cur.conn == nil {
		return
	}
	select {
	case <-v.cur.conn.Done():
		v.lose(now, v.cur.conn.Err())
	default:
	}
}

// lose drops the instance after its connection failed with err. An exit
// (the held connection closed by ovs-vswitchd) is looked for again at once,
// since a restart usually follows; other faults after a backoff.
func (v *vswitchd) lose(now time.Time, err error) {
	if v.cur.conn == nil {
		return
	}
	klog.V(2).InfoS("Lost ovs-vswitchd", "pid", v.cur.pid, "err", err)
	v.down = absence{pid: v.cur.pid, err: err}
	v.gone = v.down
	if errors.Is(err, appctl.ErrClosed) {
		v.nextLook = now
		v.faults.Reset()
	} else {
		v.nextLook = now.Add(v.faults.Next())
	}
	v.looks.Reset()
	v.cur.conn.Close()
	v.cur = instance{}
}

// close drops the connection for good (the gate stops).
func (v *vswitchd) close() {
	if v.cur.conn != nil {
		v.cur.conn.Close()
		v.cur = instance{}
	}
}

// look reads the pidfile and connects to the socket it names; it reports
// whether there is a new instance to talk to.
func (v *vswitchd) look(ctx context.Context, now time.Time) bool {
	v.tried = true
	v.nextLook = now.Add(v.looks.Next())
	target, err := appctl.Discover(v.cfg.RunDir)
	if err != nil {
		v.notFound(target, err)
		return false
	}
	dctx, cancel := context.WithTimeout(ctx, v.cfg.CallTimeout)
	defer cancel()
	conn, err := appctl.Dial(dctx, target.Socket, appctl.WithObserver(v.cfg.Observer))
	if err != nil {
		v.notFound(target, err)
		return false
	}
	v.looks.Reset()
	v.serial++
	v.cur = instance{conn: conn, serial: v.serial, pid: target.PID, peer: conn.PeerPID()}
	if v.cur.peer != 0 {
		if _, start, err := v.cpu(v.cur.peer); err == nil {
			v.cur.peerStart = start
		} else {
			v.cur.peer = 0 // not readable: as good as invisible
		}
	}
	klog.V(2).InfoS("Connected to ovs-vswitchd", "pid", target.PID, "pidHere", v.cur.peer, "socket", target.Socket)
	return true
}

// notFound records why a look found no instance to talk to. Right after an
// exit, the pidfile and socket the exited instance left (or their absence)
// still mean that exit, and say so, rather than naming the leftovers.
func (v *vswitchd) notFound(target appctl.Target, err error) {
	if g := v.gone; errors.Is(g.err, appctl.ErrClosed) {
		leftover := errors.Is(err, appctl.ErrNoPidfile) ||
			target.PID == g.pid && (errors.Is(err, appctl.ErrNoSocket) || errors.Is(err, appctl.ErrRefused))
		if leftover {
			v.down = g
			return
		}
	}
	v.down = absence{pid: target.PID, err: err}
}

// begin makes o the call in flight and takes the first CPU reading of the
// instance, against which a stall is judged.
func (v *vswitchd) begin(o *op, now time.Time) {
	o.serial, o.pid, o.started = v.cur.serial, v.cur.pid, now
	v.cur.op = o
	v.cur.stall = stall{}
	if v.cur.peer != 0 {
		if used, start, err := v.cpu(v.cur.peer); err == nil && start == v.cur.peerStart {
			v.cur.stall = stall{sample: now, cpu: used, seen: true}
		}
	}
}

// gotAnswer records that the instance answered the call in flight.
func (v *vswitchd) gotAnswer(now time.Time) {
	v.cur.op, v.cur.stall, v.cur.lastAnswer = nil, stall{}, now
}

// firstAnswer makes a new instance the one answering now.
func (v *vswitchd) firstAnswer(now time.Time, version string) {
	v.cur.version, v.cur.since = version, now
	v.answered++
	v.down, v.gone = absence{}, absence{}
	v.faults.Reset()
	if v.answered > 1 {
		klog.V(2).InfoS("New ovs-vswitchd instance", "pid", v.cur.pid, "version", version, "restarts", v.restarts())
	}
}

// stalled reports whether the call in flight is out longer than the call
// timeout at now.
func (v *vswitchd) stalled(now time.Time) bool {
	return v.cur.op != nil && now.Sub(v.cur.op.started) >= v.cfg.CallTimeout
}

// observe judges a stalled call: busy while ovs-vswitchd's main thread uses
// CPU, hung while it does not, unknown where its CPU time cannot be read
// (its pid is not visible from here). The first verdict looks at the whole
// time the call has been out; later ones at each stallSample.
func (v *vswitchd) observe(now time.Time) {
	if !v.stalled(now) {
		return
	}
	st := &v.cur.stall
	if !st.seen {
		st.kind = stallUnknown
		return
	}
	window := now.Sub(st.sample)
	if st.kind != stallNone && window < stallSample {
		return
	}
	used, start, err := v.cpu(v.cur.peer)
	if err != nil || start != v.cur.peerStart {
		// Gone, or the pid names another process now: the end of the
		// connection will tell.
		*st = stall{kind: stallUnknown}
		return
	}
	kind := stallHung
	if (used-st.cpu)*100 >= window*busyShare {
		kind = stallBusy
	}
	if kind != st.kind {
		klog.V(2).InfoS("ovs-vswitchd not answering", "pid", v.cur.pid, "busy", kind == stallBusy, "for", now.Sub(v.cur.op.started).Round(time.Millisecond))
	}
	*st = stall{kind: kind, sample: now, cpu: used, seen: true}
}

// view is what the checks need to know of ovs-vswitchd at now.
func (v *vswitchd) view(now time.Time) vswitchdView {
	vw := vswitchdView{connected: v.cur.conn != nil, pid: v.cur.pid, down: v.down, restarts: v.restarts()}
	if v.established() {
		vw.version, vw.since = v.cur.version, v.cur.since
	}
	if v.stalled(now) {
		vw.stall = v.cur.stall.kind
	}
	vw.answering = v.established() && vw.stall == stallNone
	return vw
}
