package gate

import (
	"context"
	"errors"
	"fmt"
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
// name. Nothing verified on an earlier instance counts for a new one.
//
// Only the gate loop uses it. It never waits on ovs-vswitchd: calls run on
// their own goroutine (one at a time, as the connection serves them in
// order anyway), and the loop looks at how long the one in flight has been
// out.
type vswitchd struct {
	cfg *Config
	cpu cpuReader

	// The instance; conn is nil when there is none.
	conn       *appctl.Conn
	serial     uint64 // counts connections
	pid        int    // as its pidfile says
	peer       int    // its pid in our namespace; 0 when not visible here
	peerStart  uint64 // its start time, to tell a reused pid apart
	version    string
	since      time.Time // its first answer; zero until then
	lastAnswer time.Time
	answered   uint64 // instances that have answered, this one included

	op    *op // the call in flight, nil when none
	stall stall

	tried    bool      // a look at the pidfile has been made
	nextLook time.Time // no look before this while there is no instance
	down     verdict   // why no instance answers, while none does
	gone     *lostInstance
	looks    backoff.Backoff // between looks while none answers
	faults   backoff.Backoff // between connections that failed other than by an exit
}

// verdict is a check's message and cause.
type verdict struct {
	msg, cause string
}

// lostInstance is the last instance whose connection was lost.
type lostInstance struct {
	pid    int
	exited bool // it closed the connection: it exited
	why    verdict
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
	if v.conn == nil {
		return nil
	}
	return v.conn.Done()
}

func (v *vswitchd) established() bool { return v.conn != nil && !v.since.IsZero() }

// restarts counts the instances that answered after the first.
func (v *vswitchd) restarts() uint64 {
	if v.answered == 0 {
		return 0
	}
	return v.answered - 1
}

// checkLost drops the instance if its connection has ended.
func (v *vswitchd) checkLost(now time.Time) {
	if v.conn == nil {
		return
	}
	select {
	case <-v.conn.Done():
		v.lose(now, v.conn.Err())
	default:
	}
}

// lose drops the instance after its connection failed with err.
func (v *vswitchd) lose(now time.Time, err error) {
	if v.conn == nil {
		return
	}
	g := &lostInstance{pid: v.pid, exited: errors.Is(err, appctl.ErrClosed)}
	if g.exited {
		// The connection is held from the first answer on, so its end
		// is the exit itself (SIGKILL, SIGTERM, "ovs-appctl exit").
		g.why = verdict{fmt.Sprintf("ovs-vswitchd (pid %d) exited", v.pid), CauseVSwitchdNotRunning}
		v.nextLook = now
		v.faults.Reset()
	} else {
		g.why = verdict{fmt.Sprintf("ovs-vswitchd (pid %d): %s", v.pid, err), CauseVSwitchdUnreachable}
		v.nextLook = now.Add(v.faults.Next())
	}
	klog.V(2).InfoS("Lost ovs-vswitchd", "pid", v.pid, "err", err)
	v.conn.Close()
	v.looks.Reset()
	*v = vswitchd{cfg: v.cfg, cpu: v.cpu, serial: v.serial, answered: v.answered, tried: v.tried,
		nextLook: v.nextLook, down: g.why, gone: g, looks: v.looks, faults: v.faults}
}

// close drops the connection for good (the gate stops).
func (v *vswitchd) close() {
	if v.conn != nil {
		v.conn.Close()
		v.conn = nil
	}
}

// look reads the pidfile and connects to the socket it names; it reports
// whether there is a new instance to talk to.
func (v *vswitchd) look(ctx context.Context, now time.Time) bool {
	v.tried = true
	v.nextLook = now.Add(v.looks.Next())
	target, err := appctl.Discover(v.cfg.RunDir)
	if err != nil {
		v.down = v.unreachable(target, err)
		return false
	}
	dctx, cancel := context.WithTimeout(ctx, v.cfg.CallTimeout)
	defer cancel()
	conn, err := appctl.Dial(dctx, target.Socket, appctl.WithObserver(v.cfg.Observer))
	if err != nil {
		v.down = v.unreachable(target, err)
		return false
	}
	v.looks.Reset()
	v.conn, v.pid, v.serial = conn, target.PID, v.serial+1
	v.version, v.since, v.lastAnswer = "", time.Time{}, time.Time{}
	v.peer, v.peerStart = conn.PeerPID(), 0
	if v.peer != 0 {
		if _, start, err := v.cpu(v.peer); err == nil {
			v.peerStart = start
		} else {
			v.peer = 0 // not readable: as good as invisible
		}
	}
	klog.V(2).InfoS("Connected to ovs-vswitchd", "pid", v.pid, "pidHere", v.peer, "socket", target.Socket)
	return true
}

// unreachable says why no instance can be reached. Right after an exit, the
// pidfile and socket the exited instance left (or their absence) still mean
// that exit, and say so, rather than naming the leftovers.
func (v *vswitchd) unreachable(target appctl.Target, err error) verdict {
	if g := v.gone; g != nil && g.exited {
		leftover := errors.Is(err, appctl.ErrNoPidfile) ||
			target.PID == g.pid && (errors.Is(err, appctl.ErrNoSocket) || errors.Is(err, appctl.ErrRefused))
		if leftover {
			return g.why
		}
	}
	switch {
	case errors.Is(err, appctl.ErrNoPidfile):
		return verdict{"ovs-vswitchd is not running: " + err.Error(), CauseVSwitchdNotRunning}
	case errors.Is(err, appctl.ErrBadPidfile):
		return verdict{"ovs-vswitchd: " + err.Error(), CauseVSwitchdNotRunning}
	case errors.Is(err, appctl.ErrNoSocket), errors.Is(err, appctl.ErrRefused):
		return verdict{fmt.Sprintf("ovs-vswitchd (pid %d) is not running (stale pidfile?) or still starting: %s", target.PID, err),
			CauseVSwitchdNotRunning}
	case errors.Is(err, appctl.ErrPermission):
		return verdict{fmt.Sprintf("ovs-vswitchd (pid %d): %s (run ovsgate as the socket's owner)", target.PID, err),
			CauseVSwitchdUnreachable}
	case target.PID != 0:
		return verdict{fmt.Sprintf("ovs-vswitchd (pid %d): %s", target.PID, err), CauseVSwitchdUnreachable}
	default:
		return verdict{"ovs-vswitchd: " + err.Error(), CauseVSwitchdUnreachable}
	}
}

// begin makes o the call in flight and takes the first CPU reading of the
// instance, against which a stall is judged.
func (v *vswitchd) begin(o *op, now time.Time) {
	o.serial, o.pid, o.started = v.serial, v.pid, now
	v.op = o
	v.stall = stall{}
	if v.peer != 0 {
		if used, start, err := v.cpu(v.peer); err == nil && start == v.peerStart {
			v.stall = stall{sample: now, cpu: used, seen: true}
		}
	}
}

// answered records that the instance answered the call in flight.
func (v *vswitchd) gotAnswer(now time.Time) {
	v.op, v.stall, v.lastAnswer = nil, stall{}, now
}

// firstAnswer makes a new instance the one answering now.
func (v *vswitchd) firstAnswer(now time.Time, version string) {
	v.version, v.since = version, now
	v.answered++
	v.down, v.gone = verdict{}, nil
	v.faults.Reset()
	if v.answered > 1 {
		klog.V(2).InfoS("New ovs-vswitchd instance", "pid", v.pid, "version", version, "restarts", v.restarts())
	}
}

// stalled reports whether the call in flight is out longer than the call
// timeout at now.
func (v *vswitchd) stalled(now time.Time) bool {
	return v.op != nil && now.Sub(v.op.started) >= v.cfg.CallTimeout
}

// observe judges a stalled call: busy while ovs-vswitchd's main thread uses
// CPU, hung while it does not, unknown where its CPU time cannot be read
// (its pid is not visible from here). The first verdict looks at the whole
// time the call has been out; later ones at each stallSample.
func (v *vswitchd) observe(now time.Time) {
	if !v.stalled(now) {
		return
	}
	if !v.stall.seen {
		v.stall.kind = stallUnknown
		return
	}
	window := now.Sub(v.stall.sample)
	if v.stall.kind != stallNone && window < stallSample {
		return
	}
	used, start, err := v.cpu(v.peer)
	if err != nil || start != v.peerStart {
		// Gone, or the pid names another process now: the end of the
		// connection will tell.
		v.stall = stall{kind: stallUnknown}
		return
	}
	kind := stallHung
	if (used-v.stall.cpu)*100 >= window*busyShare {
		kind = stallBusy
	}
	if kind != v.stall.kind {
		klog.V(2).InfoS("ovs-vswitchd not answering", "pid", v.pid, "busy", kind == stallBusy, "for", now.Sub(v.op.started).Round(time.Millisecond))
	}
	v.stall = stall{kind: kind, sample: now, cpu: used, seen: true}
}

// view is what the status computation needs to know of the instance.
func (v *vswitchd) view(now time.Time) vswitchdView {
	vw := vswitchdView{Restarts: v.restarts()}
	if v.established() {
		vw.PID, vw.Version, vw.Since = v.pid, v.version, v.since
	}
	switch {
	case v.conn == nil:
		vw.Why = v.down
		if vw.Why.msg == "" {
			vw.Why = verdict{"looking for ovs-vswitchd", CauseVSwitchdNotRunning}
		}
	case v.stalled(now) && v.stall.kind != stallNone:
		within := v.cfg.CallTimeout
		switch v.stall.kind {
		case stallBusy:
			vw.Why = verdict{fmt.Sprintf("ovs-vswitchd (pid %d) is busy: not answering within %s while its main thread uses CPU", v.pid, within),
				CauseVSwitchdBusy}
		case stallHung:
			vw.Why = verdict{fmt.Sprintf("ovs-vswitchd (pid %d) is hung: not answering within %s, and its main thread uses no CPU (stopped or deadlocked)", v.pid, within),
				CauseVSwitchdNotAnswering}
		default:
			vw.Why = verdict{fmt.Sprintf("ovs-vswitchd (pid %d) is not answering within %s (busy or hung: its CPU time cannot be seen from here)", v.pid, within),
				CauseVSwitchdNotAnswering}
		}
	case !v.established():
		// A new connection: until it answers, the reason of the last
		// failure stands, so that a socket that fails every connection
		// the same way reads the same all along.
		vw.Why = v.down
		if vw.Why.msg == "" {
			vw.Why = verdict{fmt.Sprintf("ovs-vswitchd (pid %d) has not answered yet", v.pid), CauseVSwitchdStarting}
		}
	default:
		vw.Answering = true
	}
	return vw
}
