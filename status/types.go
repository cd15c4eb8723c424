package status

import (
	_ "embed"
	"encoding/json"
	"time"
)

// Schema is the JSON Schema (draft 2020-12) of the status file, for agents
// written in other languages.
//
//go:embed schema.json
var Schema []byte

// ReasonStopped is the reason `ovsgate serve` leaves in the file when it
// exits: ovs-vswitchd may be fine, but nobody watches it any more.
const ReasonStopped = "ovsgate stopped"

// Status is the whole status file, the body of GET /status and the output
// of `ovsgate check -o json`.
type Status struct {
	// Ready is true when every gated bridge is ready.
	Ready bool `json:"ready"`
	// Reason says in plain words what is missing; empty when ready.
	Reason string `json:"reason"`
	// Updated is when the status last changed.
	Updated  Timestamp `json:"updated"`
	OVSDB    OVSDB     `json:"ovsdb"`
	VSwitchd VSwitchd  `json:"vswitchd"`
	Bridges  []Bridge  `json:"bridges"`
	// Ports are the required ports (--require-port), in the order given;
	// absent when none is required.
	Ports  []Port  `json:"ports,omitempty"`
	Checks []Check `json:"checks"`
}

// OVSDB describes ovsgate's connection to the Open vSwitch database.
type OVSDB struct {
	Endpoint  string `json:"endpoint"`
	Connected bool   `json:"connected"`
}

// VSwitchd names the ovs-vswitchd instance the status was checked against.
type VSwitchd struct {
	// PID is the instance's pid as its pidfile says: 0 when none answers, and
	// the same number on every start when ovs-vswitchd has a pid namespace
	// of its own (so compare Since, not PID, to detect a restart).
	PID     int    `json:"pid"`
	Version string `json:"version"`
	// Since is when ovsgate first reached the instance answering now; nil
	// while none answers. Every new instance has a new one.
	Since *Timestamp `json:"since,omitempty"`
	// FlowRestoreWait mirrors other_config:flow-restore-wait; nil while
	// ovsgate has not read it (OVSDB down or not yet connected).
	FlowRestoreWait *bool `json:"flowRestoreWait,omitempty"`
	// FlowRestoreWaitSince is when ovsgate first saw flow-restore-wait set
	// (OVSDB keeps no time); set only while it is set.
	FlowRestoreWaitSince *Timestamp `json:"flowRestoreWaitSince,omitempty"`
	// FlowRestoreWaitBy names who manages flow-restore-wait where a key says
	// so, e.g. "ovn-controller".
	FlowRestoreWaitBy string `json:"flowRestoreWaitBy,omitempty"`
	// DPDK is there when other_config:dpdk-init asks for DPDK.
	DPDK *DPDK `json:"dpdk,omitempty"`
}

// DPDK is DPDK's state: Init is other_config:dpdk-init ("true" or "try"),
// Initialized the Open_vSwitch row's dpdk_initialized.
type DPDK struct {
	Init        string `json:"init"`
	Initialized bool   `json:"initialized"`
}

// Bridge is one gated bridge.
type Bridge struct {
	Name         string `json:"name"`
	Ready        bool   `json:"ready"`
	Reason       string `json:"reason"`
	DatapathID   string `json:"datapathID"`
	DatapathType string `json:"datapathType"`
	// Features are the datapath's features as OVS names them: bool for
	// Yes/No, a number for numbers (float64 when decoded by this package,
	// as encoding/json decodes numbers into any), string otherwise.
	Features map[string]any `json:"features"`
}

// Port is one required port: its interface in OVSDB, and whether the
// ovs-vswitchd answering now has opened it with that OpenFlow port number.
type Port struct {
	Name   string `json:"name"`
	Ready  bool   `json:"ready"`
	Reason string `json:"reason"`
	// OFPort is 0 while none is assigned, -1 when the port could not be opened.
	OFPort int `json:"ofport"`
	// Error is the interface's error column.
	Error string `json:"error"`
}

// Check is one named readiness check (the /readyz/NAME checks); Message is
// empty when OK.
type Check struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

// Check returns the named check and whether the status has it.
func (s Status) Check(name string) (Check, bool) {
	for _, c := range s.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Stopped reports whether the file was left by an ovsgate that exited.
func (s Status) Stopped() bool { return !s.Ready && s.Reason == ReasonStopped }

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
