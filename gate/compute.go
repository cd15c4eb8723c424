package gate

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/ovsdb"
)

// inputs is everything the status is made of. computeStatus is a pure
// function of it, so the decision can be tested without Open vSwitch.
type inputs struct {
	endpoint             string
	bridges              []string // in the order given
	requirements         []Requirement
	ports                []string // required, in the order given
	requireFlowsRestored bool
	flowRestoreWaitSince time.Time
	snap                 ovsdb.Snapshot
	system               system // snap.System as ovs-vswitchd reads it
	vswitchd             vswitchdView
	bridge               map[string]bridgeView
	port                 map[string]portView
}

// vswitchdView is what is known of the ovs-vswitchd instance.
type vswitchdView struct {
	Answering bool
	// PID, Version and Since name the instance once it has answered; zero
	// before, and after it is lost.
	PID      int
	Version  string
	Since    time.Time
	Restarts uint64
	Why      verdict // why it does not answer, when it does not
}

// bridgeView is what the instance answering now said of one bridge.
type bridgeView struct {
	// Features were answered by the instance answering now, for the
	// datapath ID OVSDB shows now; nil otherwise.
	Features appctl.Features
	// Err is why the last question about that datapath, to that instance,
	// got no features; "" when not asked yet.
	Err string
	// Diagnosis explains a bridge on the kernel datapath that is not ready.
	Diagnosis string
}

// computeStatus decides readiness and says why not. The top-level reason
// names the first thing missing: OVSDB, then ovs-vswitchd (DPDK included),
// then each bridge, each required port and flow-restore-wait.
func computeStatus(in inputs) Status {
	s := Status{
		OVSDB:   OVSDBStatus{Endpoint: in.endpoint, Connected: in.snap.Connected},
		Bridges: make([]BridgeStatus, 0, len(in.bridges)),
		Checks:  make([]Check, 0, 2+2*len(in.bridges)),
	}
	ovsdbMsg := ""
	switch {
	case in.snap.Connected:
	case in.snap.Err == nil:
		ovsdbMsg = "connecting to " + in.endpoint
	case isNotAnswering(in.snap.Err):
		ovsdbMsg = in.snap.Err.Error() + " at " + in.endpoint
	default:
		ovsdbMsg = "not connected to " + in.endpoint + ": " + in.snap.Err.Error()
	}
	s.Checks = append(s.Checks, Check{Name: CheckOVSDB, OK: in.snap.Connected, Message: ovsdbMsg})

	vs := in.vswitchd
	sys := in.system
	s.VSwitchd = VSwitchdStatus{PID: vs.PID, Version: vs.Version, Restarts: vs.Restarts,
		FlowRestoreWait: sys.flowRestoreWait == flagOn, FlowRestoreWaitBy: sys.flowRestoreWaitBy}
	if !vs.Since.IsZero() {
		s.VSwitchd.Since = &Timestamp{vs.Since}
	}
	if sys.flowRestoreWait == flagOn && !in.flowRestoreWaitSince.IsZero() {
		s.VSwitchd.FlowRestoreWaitSince = &Timestamp{in.flowRestoreWaitSince}
	}
	if sys.dpdkInit != "" {
		s.VSwitchd.DPDK = &DPDKStatus{Init: sys.dpdkInit, Initialized: sys.dpdkInitialized}
	}
	// With dpdk-init=true, userspace ports never come up until DPDK is
	// initialised: the vswitchd check fails (the bridges, answered for,
	// stay as they are). With "try" it runs without DPDK on purpose.
	vsWhy := vs.Why
	if vs.Answering && sys.dpdkInit == "true" && !sys.dpdkInitialized {
		vsWhy = verdict{fmt.Sprintf("ovs-vswitchd (pid %d) has not initialised DPDK (other_config:dpdk-init=true, dpdk_initialized=false)", vs.PID),
			CauseDPDKNotInitialized}
	}
	s.Checks = append(s.Checks, Check{Name: CheckVSwitchd, OK: vsWhy.msg == "", Message: vsWhy.msg})

	var reasons []string
	cause := ""
	for _, br := range in.bridges {
		b, dp, feat := computeBridge(br, in)
		s.Bridges = append(s.Bridges, b)
		s.Checks = append(s.Checks, dp, feat)
		if b.Ready {
			continue
		}
		reasons = append(reasons, "bridge "+br+": "+b.Reason)
		if cause == "" {
			cause = CauseBridgeNotReady
			if dp.OK {
				cause = CauseFeaturesMissing
			}
		}
	}
	for _, name := range in.ports {
		pv := in.port[name]
		p := PortStatus{Name: name, OFPort: pv.OVSDB.OFPort, Error: pv.OVSDB.Error, Reason: portReason(pv, in)}
		p.Ready = p.Reason == ""
		s.Ports = append(s.Ports, p)
		s.Checks = append(s.Checks, Check{Name: PortCheck(name), OK: p.Ready, Message: p.Reason})
		if !p.Ready {
			reasons = append(reasons, "port "+name+": "+p.Reason)
			if cause == "" {
				cause = CausePortNotReady
			}
		}
	}
	if in.requireFlowsRestored {
		msg := flowsReason(in)
		s.Checks = append(s.Checks, Check{Name: CheckFlows, OK: msg == "", Message: msg})
		if msg != "" {
			reasons = append(reasons, msg)
			if cause == "" {
				cause = CauseFlowRestoreWait
			}
		}
	}
	switch {
	case !in.snap.Connected:
		s.Reason, s.Cause = "OVSDB: "+ovsdbMsg, CauseOVSDBUnreachable
	case vsWhy.msg != "":
		s.Reason, s.Cause = vsWhy.msg, vsWhy.cause
	case len(reasons) > 0:
		s.Reason, s.Cause = strings.Join(reasons, "; "), cause
	default:
		s.Ready, s.Cause = true, CauseReady
	}
	return s
}

func isNotAnswering(err error) bool { return errors.Is(err, ovsdb.ErrNotAnswering) }

// flowsReason says why flows are not restored yet, or "" when they are.
func flowsReason(in inputs) string {
	sys := in.system
	switch sys.flowRestoreWait {
	case flagUnknown:
		return "flow-restore-wait: waiting for OVSDB"
	case flagOff:
		return ""
	}
	msg := "flow-restore-wait is set (other_config:flow-restore-wait=true): ovs-vswitchd neither forwards nor flushes datapath flows until it is cleared"
	if sys.flowRestoreWaitBy != "" {
		msg += " (set by " + sys.flowRestoreWaitBy + ", which clears it once it has installed its flows)"
	} else {
		msg += " (the CNI agent clears it after replaying its flows)"
	}
	return msg
}

func computeBridge(br string, in inputs) (BridgeStatus, Check, Check) {
	info := in.snap.Bridges[br]
	bv := in.bridge[br]
	b := BridgeStatus{Name: br, DatapathID: info.DatapathID, DatapathType: info.DatapathType, Features: map[string]any{}}

	var dpReason string
	switch {
	case !in.snap.Connected:
		dpReason = "waiting for OVSDB"
	case !info.Exists:
		dpReason = "bridge does not exist in OVSDB"
	case info.DatapathID == "":
		dpReason = "waiting for datapath ID"
	case !in.vswitchd.Answering:
		dpReason = "waiting for ovs-vswitchd"
	case bv.Features == nil:
		dpReason = bv.Err
		if dpReason == "" {
			dpReason = "waiting for datapath features"
		}
	}
	if dpReason != "" {
		if bv.Diagnosis != "" {
			dpReason += " (" + bv.Diagnosis + ")"
		}
		b.Reason = dpReason
		return b, Check{Name: DatapathCheck(br), Message: dpReason},
			Check{Name: FeaturesCheck(br), Message: "datapath not ready"}
	}

	b.Features = bv.Features.Map()
	var unmet []string
	for _, req := range in.requirements {
		f, ok := bv.Features.Get(req.Name)
		if msg := req.Unmet(f.Value, ok); msg != "" {
			unmet = append(unmet, msg)
		}
	}
	featMsg := strings.Join(unmet, "; ")
	b.Ready = featMsg == ""
	b.Reason = featMsg
	return b, Check{Name: DatapathCheck(br), OK: true}, Check{Name: FeaturesCheck(br), OK: b.Ready, Message: featMsg}
}
