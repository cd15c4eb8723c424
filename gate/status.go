package gate

import (
	"encoding/json"
	"reflect"
	"time"
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
const ReasonStopped = "ovsgate stopped"

// Stopped is what s becomes when the daemon that kept it stops: not ready,
// whatever it was, since nobody watches Open vSwitch any more. What is
// known of OVS is left as it was last seen.
func (s State) Stopped() State {
	s.Ready, s.Reason = false, ReasonStopped
	s.Updated = Timestamp{time.Now()}
	return s
}

// Equivalent reports whether s and o differ in nothing but their timestamps,
// so that subscribers are not told about a state they already have.
func (s State) Equivalent(o State) bool {
	s.Updated, o.Updated = Timestamp{}, Timestamp{}
	return reflect.DeepEqual(s, o)
}

// Status is what the gate shows: the status file, the body of GET /status
// and the output of `check -o json`.
type Status struct {
	Ready    bool           `json:"ready"`
	Reason   string         `json:"reason"`
	Updated  Timestamp      `json:"updated"`
	OVSDB    OVSDBStatus    `json:"ovsdb"`
	VSwitchd VSwitchdStatus `json:"vswitchd"`
	Bridges  []BridgeStatus `json:"bridges"`
	Ports    []PortStatus   `json:"ports,omitempty"` // the required ports, in the order given
	Checks   []Check        `json:"checks"`
}

// OVSDBStatus describes the OVSDB connection.
type OVSDBStatus struct {
	Endpoint  string `json:"endpoint"`
	Connected bool   `json:"connected"`
}

// VSwitchdStatus names the ovs-vswitchd instance the status was checked
// against; PID is 0 and Since nil when none answers.
type VSwitchdStatus struct {
	PID     int    `json:"pid"` // as its pidfile says: 1 for a pid namespace of its own
	Version string `json:"version"`
	// Since is when ovsgate first reached the instance answering now. Every
	// new instance has a new one, also when the pid number repeats (a pid
	// namespace of its own), so a reader can tell a restart from the file.
	Since *Timestamp `json:"since,omitempty"`

	// FlowRestoreWait mirrors other_config:flow-restore-wait; Since is when
	// ovsgate first saw it set (not when it was set, which OVSDB does not
	// keep), and By who manages it, where a key says so.
	FlowRestoreWait      bool       `json:"flowRestoreWait"`
	FlowRestoreWaitSince *Timestamp `json:"flowRestoreWaitSince,omitempty"`
	FlowRestoreWaitBy    string     `json:"flowRestoreWaitBy,omitempty"`
	// DPDK is shown when other_config:dpdk-init asks for DPDK.
	DPDK *DPDKStatus `json:"dpdk,omitempty"`
}

// DPDKStatus is DPDK's state: Init is other_config:dpdk-init ("true" or
// "try"), Initialized is the Open_vSwitch row's dpdk_initialized.
type DPDKStatus struct {
	Init        string `json:"init"`
	Initialized bool   `json:"initialized"`
}

// PortStatus is one required port: its interface in OVSDB, and whether the
// ovs-vswitchd answering now has opened it with that OpenFlow port number.
type PortStatus struct {
	Name   string `json:"name"`
	Ready  bool   `json:"ready"`
	Reason string `json:"reason"`
	OFPort int    `json:"ofport"` // 0 while none is assigned, -1 when it could not be opened
	Error  string `json:"error"`
}

// BridgeStatus is one gated bridge. Features holds the datapath features as
// OVS names them: bool for Yes/No, int64 for numbers, string otherwise.
type BridgeStatus struct {
	Name         string         `json:"name"`
	Ready        bool           `json:"ready"`
	Reason       string         `json:"reason"`
	DatapathID   string         `json:"datapathID"`
	DatapathType string         `json:"datapathType"`
	Features     map[string]any `json:"features"`
}

// Check is one named readiness check; Message is empty when OK.
type Check struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

// Check returns the named check.
func (s Status) Check(name string) (Check, bool) {
	for _, c := range s.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Timestamp is a time that marshals as RFC 3339 in UTC with nanoseconds
// always written out, so every status file has the same shape.
type Timestamp struct{ time.Time }

const timestampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.UTC().Format(timestampLayout))
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	p, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = p
	return nil
}
