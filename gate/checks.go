package gate

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/ovsdb"
)

// The readiness rule: one table of named checks in the order of their
// priority, built from the configuration. Each check judges the inputs of
// one reconcile pass; the state is a loop over the table. Every reason
// about Open vSwitch is worded in this file.

// Check names, as the probe and the README spell them.
const (
	CheckOVSDB    = "ovsdb"
	CheckVSwitchd = "vswitchd"
	CheckFlows    = "flows" // with RequireFlowsRestored
)

// DatapathCheck is the name of a bridge's datapath check.
func DatapathCheck(bridge string) string { return "datapath/" + bridge }

// FeaturesCheck is the name of a bridge's feature-requirements check.
func FeaturesCheck(bridge string) string { return "features/" + bridge }

// PortCheck is the name of a required port's check.
func PortCheck(name string) string { return "port/" + name }

// Causes: one CamelCase word for what keeps the gate from being ready, for
// readers that want a fixed set (a node condition's reason) rather than the
// reason's plain words.
const (
	CauseReady                = "OVSReady"
	CauseStarting             = "Starting"
	CauseOVSDBUnreachable     = "OVSDBUnreachable"
	CauseVSwitchdNotRunning   = "VSwitchdNotRunning"
	CauseVSwitchdStarting     = "VSwitchdStarting"
	CauseVSwitchdUnreachable  = "VSwitchdUnreachable"
	CauseVSwitchdNotAnswering = "VSwitchdNotAnswering"
	CauseVSwitchdBusy         = "VSwitchdBusy"
	CauseDPDKNotInitialized   = "DPDKNotInitialized"
	CauseBridgeNotReady       = "BridgeNotReady"
	CauseFeaturesMissing      = "FeaturesMissing"
	CausePortNotReady         = "PortNotReady"
	CauseFlowRestoreWait      = "FlowRestoreWait"
)

// check is one row of the rule.
type check struct {
	name  string
	cause string // the cause it gives when it is the first to fail, unless its outcome names one
	// prefix introduces its message in the gate's reason: "bridge br-int: ".
	prefix string
	// bridge and port name what it is about, if anything: its failure
	// also makes that bridge or port not ready, with its message.
	bridge, port string
	// blocks: once it fails, the checks after it only wait for it, and
	// add nothing to the reason.
	blocks bool
	eval   func(in *inputs) outcome
}

// outcome is one check's answer.
type outcome struct {
	msg     string // why it fails; "" when it passes
	cause   string // the cause, where it is not the check's own
	pending bool   // a question is still out: no definite answer yet
	moot    bool   // it fails because an earlier check does, which says why
}

// rule is the table of one configuration.
type rule struct {
	endpoint string
	bridges  []string
	ports    []string
	checks   []check
}

// newRule builds the table in the order of priority: OVSDB, ovs-vswitchd
// (DPDK included), each bridge's datapath and features, each required port,
// flow-restore-wait.
func newRule(cfg *Config) *rule {
	checks := []check{
		{name: CheckOVSDB, cause: CauseOVSDBUnreachable, prefix: "OVSDB: ", blocks: true, eval: ovsdbCheck(cfg.OVSDB)},
		{name: CheckVSwitchd, blocks: true, eval: vswitchdCheck(cfg.CallTimeout)}, // the cause is its verdict's
	}
	for _, br := range cfg.Bridges {
		about := "bridge " + br + ": "
		checks = append(checks,
			check{name: DatapathCheck(br), cause: CauseBridgeNotReady, prefix: about, bridge: br, eval: datapathCheck(br)},
			check{name: FeaturesCheck(br), cause: CauseFeaturesMissing, prefix: about, bridge: br, eval: featuresCheck(br, cfg.Requirements)})
	}
	for _, name := range cfg.RequirePorts {
		checks = append(checks, check{name: PortCheck(name), cause: CausePortNotReady, prefix: "port " + name + ": ", port: name, eval: portCheck(name)})
	}
	if cfg.RequireFlowsRestored {
		checks = append(checks, check{name: CheckFlows, cause: CauseFlowRestoreWait, eval: flowsCheck})
	}
	return &rule{endpoint: cfg.OVSDB, bridges: cfg.Bridges, ports: cfg.RequirePorts, checks: checks}
}

// inputs is what one reconcile pass saw; every check is a pure function of
// it.
type inputs struct {
	snap                 ovsdb.Snapshot
	system               system    // snap.System as ovs-vswitchd reads it
	flowRestoreWaitSince time.Time // when flow-restore-wait was first seen on
	vswitchd             vswitchdView
	bridge               map[string]bridgeView
	port                 map[string]portView
}

// vswitchdView is what is known of ovs-vswitchd.
type vswitchdView struct {
	connected bool // a connection to an instance is held
	answering bool // that instance has answered, and leaves no call unanswered past the call timeout
	// pid is the held instance's, as its pidfile says. version and since
	// are set once it has answered.
	pid      int
	version  string
	since    time.Time
	stall    stallKind // what a call out past the call timeout says of it
	down     absence   // why no instance answers, while none does
	restarts uint64
}

// absence is why no instance answers: the error of the last look at the
// pidfile and socket, or of the connection that was lost, and the pid it
// concerned.
type absence struct {
	pid int
	err error
}

// bridgeView is what the instance answering now said of one bridge.
type bridgeView struct {
	// features were answered by the instance answering now, for the
	// datapath ID OVSDB shows now; nil otherwise.
	features appctl.Features
	// err is why the last question about that datapath, to that instance,
	// got no features; nil when not asked yet. pid is that instance's.
	err error
	pid int
	// diagnosis explains a bridge on the kernel datapath that is not ready.
	diagnosis string
}

// portView is what the instance answering now said of one required port.
type portView struct {
	listed bool  // that instance was asked which ports it opened
	opened int   // the OpenFlow port number it listed for the port; 0: not listed
	err    error // why its answer could not be read
}

// evaluate is the state the inputs make: the checks in order; the first
// that fails gives the cause; the reason is the failures joined, up to one
// that blocks the rest.
func (r *rule) evaluate(in *inputs) State {
	return r.assemble(in, func(c *check) outcome { return c.eval(in) })
}

// initial is the state before the first reconcile: every check starting.
func (r *rule) initial() State {
	st := r.assemble(&inputs{}, func(*check) outcome { return outcome{msg: "starting", pending: true} })
	st.Reason, st.Cause = "starting", CauseStarting
	return st
}

func (r *rule) assemble(in *inputs, judge func(*check) outcome) State {
	vs := in.vswitchd
	st := State{
		Status: Status{
			OVSDB:    OVSDBStatus{Endpoint: r.endpoint, Connected: in.snap.Connected},
			VSwitchd: vswitchdStatus(in),
			Bridges:  make([]BridgeStatus, len(r.bridges)),
			Checks:   make([]Check, 0, len(r.checks)),
		},
		Settled:  true,
		Busy:     vs.stall == stallBusy,
		Hung:     vs.stall == stallHung || vs.stall == stallUnknown,
		Restarts: vs.restarts,
	}
	bridge := make(map[string]*BridgeStatus, len(r.bridges))
	for i, br := range r.bridges {
		info := in.snap.Bridges[br]
		st.Bridges[i] = BridgeStatus{Name: br, Ready: true, DatapathID: info.DatapathID, DatapathType: info.DatapathType, Features: map[string]any{}}
		bridge[br] = &st.Bridges[i]
	}
	if len(r.ports) > 0 {
		st.Ports = make([]PortStatus, len(r.ports))
	}
	port := make(map[string]*PortStatus, len(r.ports))
	for i, name := range r.ports {
		info := in.snap.Ports[name]
		st.Ports[i] = PortStatus{Name: name, Ready: true, OFPort: info.OFPort, Error: info.Error}
		port[name] = &st.Ports[i]
	}

	var reasons []string
	blocked := false
	st.Ready = true
	for i := range r.checks {
		c := &r.checks[i]
		o := judge(c)
		ok := o.msg == ""
		st.Checks = append(st.Checks, Check{Name: c.name, OK: ok, Message: o.msg})
		st.Settled = st.Settled && !o.pending
		if ok {
			continue
		}
		st.Ready = false
		if b := bridge[c.bridge]; b != nil && b.Ready {
			b.Ready, b.Reason = false, o.msg
		}
		if p := port[c.port]; p != nil && p.Ready {
			p.Ready, p.Reason = false, o.msg
		}
		if o.moot || blocked {
			continue
		}
		if st.Cause == "" {
			st.Cause = cmp.Or(o.cause, c.cause)
		}
		reasons = append(reasons, c.prefix+o.msg)
		blocked = c.blocks
	}
	st.Reason = strings.Join(reasons, "; ")
	if st.Ready {
		st.Cause = CauseReady
	}
	// A bridge shows the features the instance answering now gave for its
	// datapath.
	for i, br := range r.bridges {
		if c, _ := st.Check(DatapathCheck(br)); c.OK {
			st.Bridges[i].Features = in.bridge[br].features.Map()
		}
	}
	return st
}

// vswitchdStatus is the status file's block on ovs-vswitchd.
func vswitchdStatus(in *inputs) VSwitchdStatus {
	vs, sys := in.vswitchd, in.system
	s := VSwitchdStatus{FlowRestoreWaitBy: sys.flowRestoreWaitBy}
	// Unknown stays unknown: while OVSDB is away the file has no value.
	if sys.flowRestoreWait != flagUnknown {
		on := sys.flowRestoreWait == flagOn
		s.FlowRestoreWait = &on
	}
	if !vs.since.IsZero() {
		s.PID, s.Version, s.Since = vs.pid, vs.version, &Timestamp{Time: vs.since}
	}
	if sys.flowRestoreWait == flagOn && !in.flowRestoreWaitSince.IsZero() {
		s.FlowRestoreWaitSince = &Timestamp{Time: in.flowRestoreWaitSince}
	}
	if sys.dpdkInit != "" {
		s.DPDK = &DPDKStatus{Init: sys.dpdkInit, Initialized: sys.dpdkInitialized}
	}
	return s
}

// ovsdbCheck: the OVSDB monitor is established.
func ovsdbCheck(endpoint string) func(*inputs) outcome {
	return func(in *inputs) outcome {
		err := in.snap.Err
		switch {
		case in.snap.Connected:
			return outcome{}
		case err == nil:
			return outcome{msg: "connecting to " + endpoint, pending: true}
		case errors.Is(err, ovsdb.ErrNotAnswering):
			return outcome{msg: err.Error() + " at " + endpoint}
		}
		return outcome{msg: "not connected to " + endpoint + ": " + err.Error()}
	}
}

// vswitchdCheck: an ovs-vswitchd instance answers, within callTimeout,
// and has DPDK running if other_config:dpdk-init=true asks for it.
func vswitchdCheck(callTimeout time.Duration) func(*inputs) outcome {
	return func(in *inputs) outcome {
		vs := in.vswitchd
		switch {
		case vs.stall == stallBusy:
			return outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d) is busy: not answering within %s while its main thread uses CPU", vs.pid, callTimeout),
				cause: CauseVSwitchdBusy}
		case vs.stall == stallHung:
			return outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d) is hung: not answering within %s, and its main thread uses no CPU (stopped or deadlocked)", vs.pid, callTimeout),
				cause: CauseVSwitchdNotAnswering}
		case vs.stall == stallUnknown:
			return outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d) is not answering within %s (busy or hung: its CPU time cannot be seen from here)", vs.pid, callTimeout),
				cause: CauseVSwitchdNotAnswering}
		case vs.answering:
			// With dpdk-init=true, userspace ports never come up until
			// DPDK is initialised; with "try" it runs without DPDK on
			// purpose. The bridges, answered for, stay as they are.
			if in.system.dpdkInit == "true" && !in.system.dpdkInitialized {
				return outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d) has not initialised DPDK (other_config:dpdk-init=true, dpdk_initialized=false)", vs.pid),
					cause: CauseDPDKNotInitialized}
			}
			return outcome{}
		case vs.connected:
			// A new connection: until it answers, the reason of the last
			// failure stands, so that a socket that fails every
			// connection the same way reads the same all along.
			o := outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d) has not answered yet", vs.pid), cause: CauseVSwitchdStarting}
			if vs.down.err != nil {
				o = absent(vs.down)
			}
			o.pending = true
			return o
		case vs.down.err == nil:
			return outcome{msg: "looking for ovs-vswitchd", cause: CauseVSwitchdNotRunning, pending: true}
		}
		return absent(vs.down)
	}
}

// absent says why no instance answers.
func absent(a absence) outcome {
	err := a.err
	switch {
	case errors.Is(err, appctl.ErrClosed):
		// The connection is held from the first answer on, so its end is
		// the exit itself (SIGKILL, SIGTERM, "ovs-appctl exit").
		return outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d) exited", a.pid), cause: CauseVSwitchdNotRunning}
	case errors.Is(err, appctl.ErrNoPidfile):
		return outcome{msg: "ovs-vswitchd is not running: " + err.Error(), cause: CauseVSwitchdNotRunning}
	case errors.Is(err, appctl.ErrBadPidfile):
		return outcome{msg: "ovs-vswitchd: " + err.Error(), cause: CauseVSwitchdNotRunning}
	case errors.Is(err, appctl.ErrNoSocket), errors.Is(err, appctl.ErrRefused):
		return outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d) is not running (stale pidfile?) or still starting: %s", a.pid, err),
			cause: CauseVSwitchdNotRunning}
	case errors.Is(err, appctl.ErrPermission):
		return outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d): %s (run ovsgate as the socket's owner)", a.pid, err), cause: CauseVSwitchdUnreachable}
	case a.pid != 0:
		return outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d): %s", a.pid, err), cause: CauseVSwitchdUnreachable}
	}
	return outcome{msg: "ovs-vswitchd: " + err.Error(), cause: CauseVSwitchdUnreachable}
}

// datapathCheck: the bridge has a datapath ID in OVSDB, and the instance
// answering now has answered for its features.
func datapathCheck(br string) func(*inputs) outcome {
	return func(in *inputs) outcome {
		info, bv := in.snap.Bridges[br], in.bridge[br]
		var o outcome
		switch {
		case !in.snap.Connected:
			o.msg = "waiting for OVSDB"
		case !info.Exists:
			o.msg = "bridge does not exist in OVSDB"
		case info.DatapathID == "":
			o.msg = "waiting for datapath ID"
		case !in.vswitchd.answering:
			o.msg = "waiting for ovs-vswitchd"
		case bv.features != nil:
			return outcome{}
		case bv.err != nil:
			o.msg = featuresError(bv.err, bv.pid)
		default:
			o = outcome{msg: "waiting for datapath features", pending: true}
		}
		// The kernel's view explains a datapath that an answering
		// ovs-vswitchd has not made; while none answers, that is the cause.
		if bv.diagnosis != "" && in.snap.Connected && in.vswitchd.answering && (info.DatapathID == "" || bv.err != nil) {
			o.msg += " (" + bv.diagnosis + ")"
		}
		return o
	}
}

// featuresError says why dpif/show-dp-features gave no features. The first
// two answers mean "not yet" from a freshly started ovs-vswitchd.
func featuresError(err error, pid int) string {
	var se *appctl.ServerError
	switch {
	case errors.Is(err, appctl.ErrNotRegistered) && errors.As(err, &se):
		return fmt.Sprintf("ovs-vswitchd (pid %d) has not registered %s yet", pid, se.Method)
	case errors.Is(err, appctl.ErrNoSuchBridge):
		return fmt.Sprintf("ovs-vswitchd (pid %d) has not configured the bridge yet", pid)
	case errors.As(err, &se):
		return se.Method + " failed: " + se.Text
	}
	return err.Error() // a garbled answer
}

// featuresCheck: every required feature holds on the bridge's datapath.
func featuresCheck(br string, reqs []Requirement) func(*inputs) outcome {
	datapath := datapathCheck(br)
	return func(in *inputs) outcome {
		if datapath(in).msg != "" {
			return outcome{msg: "datapath not ready", moot: true}
		}
		fs := in.bridge[br].features
		var unmet []string
		for _, req := range reqs {
			f, ok := fs.Get(req.Name)
			if !ok {
				unmet = append(unmet, notReported(req.Name, featureNames(fs)))
			} else if msg := req.Unmet(f.Value, true); msg != "" {
				unmet = append(unmet, msg)
			}
		}
		return outcome{msg: strings.Join(unmet, "; ")}
	}
}

// notReported says that a datapath, which reports names, does not report
// the required feature at all, and which of its names are closest: most
// such requirements are typos, which no amount of waiting mends.
func notReported(name string, names []string) string {
	msg := fmt.Sprintf("feature %q is not reported by the datapath", name)
	if near := closest(name, names, maxSuggestions); len(near) > 0 {
		msg += " (did you mean " + orList(near) + "?)"
	}
	return msg
}

// featureNames are the names of fs, sorted.
func featureNames(fs appctl.Features) []string {
	names := make([]string, 0, len(fs))
	for _, f := range fs {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	return names
}

// maxSuggestions bounds the names a not-reported feature suggests.
const maxSuggestions = 3

// Unreported are the required features that an answered datapath does not
// report at all, one line per bridge and feature, worded as in the reason:
// what `wait` points out once, since waiting does not mend a typo (a later
// Open vSwitch could still report the name, so it does not stop waiting).
func Unreported(reqs []Requirement, st Status) []string {
	var lines []string
	for _, b := range st.Bridges {
		if c, _ := st.Check(DatapathCheck(b.Name)); !c.OK || len(b.Features) == 0 {
			continue
		}
		names := make([]string, 0, len(b.Features))
		for n := range b.Features {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, req := range reqs {
			if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, req.Name) }) {
				lines = append(lines, "bridge "+b.Name+": "+notReported(req.Name, names))
			}
		}
	}
	return lines
}

// closest returns up to n of names within a small edit distance of name,
// ignoring case, nearest first (in the order given among equals): a third
// of the name's length, at least one edit.
func closest(name string, names []string, n int) []string {
	limit := max(1, utf8.RuneCountInString(name)/3)
	type near struct {
		name string
		d    int
	}
	var found []near
	for _, c := range names {
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d <= limit {
			found = append(found, near{c, d})
		}
	}
	slices.SortStableFunc(found, func(a, b near) int { return cmp.Compare(a.d, b.d) })
	out := make([]string, 0, min(n, len(found)))
	for _, f := range found[:min(n, len(found))] {
		out = append(out, f.name)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			sub := prev[j-1]
			if ra[i-1] != rb[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// orList joins names as "A", "A or B", "A, B or C".
func orList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// portCheck: the interface exists, has an OpenFlow port number and no
// error, and the instance answering now has opened it with that number.
func portCheck(name string) func(*inputs) outcome {
	return func(in *inputs) outcome {
		info, pv, vs := in.snap.Ports[name], in.port[name], in.vswitchd
		switch {
		case !in.snap.Connected:
			return outcome{msg: "waiting for OVSDB"}
		case !info.Exists:
			return outcome{msg: "does not exist in OVSDB"}
		case info.OFPort == -1 || info.Error != "":
			msg := fmt.Sprintf("cannot be opened (ofport %d)", info.OFPort)
			if info.Error != "" {
				msg += ": " + info.Error
			}
			return outcome{msg: msg}
		case info.OFPort == 0:
			return outcome{msg: "waiting for an OpenFlow port number"}
		case !vs.answering:
			return outcome{msg: "waiting for ovs-vswitchd"}
		case pv.err != nil:
			return outcome{msg: pv.err.Error()}
		case !pv.listed:
			return outcome{msg: "waiting for the ports ovs-vswitchd opened", pending: true}
		case pv.opened == 0:
			return outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d) has not opened it (yet)", vs.pid)}
		case pv.opened != info.OFPort:
			return outcome{msg: fmt.Sprintf("ovs-vswitchd (pid %d) has it as OpenFlow port %d, OVSDB says %d", vs.pid, pv.opened, info.OFPort)}
		}
		return outcome{}
	}
}

// flowsCheck: other_config:flow-restore-wait is not set.
func flowsCheck(in *inputs) outcome {
	sys := in.system
	switch sys.flowRestoreWait {
	case flagUnknown:
		return outcome{msg: "flow-restore-wait: waiting for OVSDB"}
	case flagOff:
		return outcome{}
	}
	msg := "flow-restore-wait is set (other_config:flow-restore-wait=true): ovs-vswitchd neither forwards nor flushes datapath flows until it is cleared"
	if sys.flowRestoreWaitBy != "" {
		return outcome{msg: msg + " (set by " + sys.flowRestoreWaitBy + ", which clears it once it has installed its flows)"}
	}
	return outcome{msg: msg + " (the CNI agent clears it after replaying its flows)"}
}
