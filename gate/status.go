package gate

import (
	"reflect"
	"time"

	"github.com/ovsgate/ovsgate/status"
)

// State is what the gate knows at one moment: the Status that readers of
// the status file see, and what only the daemon's own parts read.
type State struct {
	Status
	// Cause is Reason as one of the Cause words; CauseReady when ready.
	Cause string
	// Settled: every check has had a definite answer, in this state or an
	// earlier one. What comes before (starting, connecting) is no verdict
	// on Open vSwitch yet.
	Settled bool
	// What ovs-vswitchd is doing, whatever else is down. Busy and Hung hold
	// while a call is out past the call timeout: Busy while its main thread
	// uses CPU, Hung while it does not or cannot be seen. Restarts counts
	// the instances that answered after the first one.
	Busy, Hung bool
	Restarts   uint64
}

// ReasonStopped is the reason of the state a daemon leaves when it stops.
const ReasonStopped = status.ReasonStopped

// Stopped is what s becomes when the daemon that kept it stops: not ready,
// whatever it was, since nobody watches Open vSwitch any more. What is
// known of OVS is left as it was last seen.
func (s State) Stopped() State {
	s.Ready, s.Reason = false, ReasonStopped
	s.Updated = Timestamp{Time: time.Now()}
	return s
}

// Equivalent reports whether s and o differ in nothing but their timestamps,
// so that subscribers are not told about a state they already have.
func (s State) Equivalent(o State) bool {
	s.Updated, o.Updated = Timestamp{}, Timestamp{}
	return reflect.DeepEqual(s, o)
}

// The status file's types are those of the public status package, which
// agents use to read it: what the daemon writes is, field for field, what
// they decode.
type (
	// Status is what the gate shows: the status file, the body of GET
	// /status and the output of `check -o json`.
	Status = status.Status
	// OVSDBStatus describes the OVSDB connection.
	OVSDBStatus = status.OVSDB
	// VSwitchdStatus names the ovs-vswitchd instance the status was
	// checked against; PID is 0 and Since nil when none answers. A value
	// not read (flow-restore-wait, DPDK while OVSDB is away) is nil.
	VSwitchdStatus = status.VSwitchd
	// DPDKStatus is DPDK's state.
	DPDKStatus = status.DPDK
	// PortStatus is one required port.
	PortStatus = status.Port
	// BridgeStatus is one gated bridge. Features holds the datapath
	// features as OVS names them: bool for Yes/No, int64 for numbers,
	// string otherwise.
	BridgeStatus = status.Bridge
	// Check is one named readiness check; Message is empty when OK.
	Check = status.Check
	// Timestamp marshals as RFC 3339 in UTC with nanoseconds written out.
	Timestamp = status.Timestamp
)
