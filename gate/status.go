package gate

import (
	"encoding/json"
	"reflect"
	"time"
)

// Check names, as the probe and the README spell them.
const (
	CheckOVSDB    = "ovsdb"
	CheckVSwitchd = "vswitchd"
	CheckFlows    = "flows" // with RequireFlowsRestored
)

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

// DatapathCheck is the name of a bridge's datapath check.
func DatapathCheck(bridge string) string { return "datapath/" + bridge }

// FeaturesCheck is the name of a bridge's feature-requirements check.
func FeaturesCheck(bridge string) string { return "features/" + bridge }

// Status is what the gate knows at one moment. It is the status file, the
// body of GET /status and the output of `check -o json`.
type Status struct {
	Ready    bool           `json:"ready"`
	Reason   string         `json:"reason"`
	Updated  Timestamp      `json:"updated"`
	OVSDB    OVSDBStatus    `json:"ovsdb"`
	VSwitchd VSwitchdStatus `json:"vswitchd"`
	Bridges  []BridgeStatus `json:"bridges"`
	Ports    []PortStatus   `json:"ports,omitempty"` // the required ports, in the order given
	Checks   []Check        `json:"checks"`

	// Cause is Reason as one of the Cause words; CauseReady when ready.
	Cause string `json:"-"`
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

	// Restarts counts the instances that answered after the first one.
	Restarts uint64 `json:"-"`
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

// Equivalent reports whether s and o differ in nothing but their timestamps,
// so that subscribers are not told about a status they already have.
func (s Status) Equivalent(o Status) bool {
	s.Updated, o.Updated = Timestamp{}, Timestamp{}
	return reflect.DeepEqual(s, o)
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
