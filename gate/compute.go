package gate

import (
	"errors"
	"strings"
	"time"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/ovsdb"
)

// inputs is everything the status is made of. computeStatus is a pure
// function of it, so the decision can be tested without Open vSwitch.
type inputs struct {
	endpoint     string
	bridges      []string // in the order given
	requirements []Requirement
	snap         ovsdb.Snapshot
	vswitchd     vswitchdView
	bridge       map[string]bridgeView
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
// names the first thing missing: OVSDB, then ovs-vswitchd, then each bridge.
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
	s.VSwitchd = VSwitchdStatus{PID: vs.PID, Version: vs.Version, Restarts: vs.Restarts}
	if !vs.Since.IsZero() {
		s.VSwitchd.Since = &Timestamp{vs.Since}
	}
	s.Checks = append(s.Checks, Check{Name: CheckVSwitchd, OK: vs.Answering, Message: vs.Why.msg})

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
	switch {
	case !in.snap.Connected:
		s.Reason, s.Cause = "OVSDB: "+ovsdbMsg, CauseOVSDBUnreachable
	case !vs.Answering:
		s.Reason, s.Cause = vs.Why.msg, vs.Why.cause
	case len(reasons) > 0:
		s.Reason, s.Cause = strings.Join(reasons, "; "), cause
	default:
		s.Ready, s.Cause = true, CauseReady
	}
	return s
}

func isNotAnswering(err error) bool { return errors.Is(err, ovsdb.ErrNotAnswering) }

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
