package gate

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/ovsdb"
)

// The decision, without Open vSwitch: every row is one situation and what
// the gate must say about it.
func TestComputeStatus(t *testing.T) {
	const endpoint = "unix:/run/openvswitch/db.sock"
	since := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	features := appctl.Features{{Name: "Recirc", Value: true}, {Name: "Max VLAN headers", Value: int64(1)}}
	answering := vswitchdView{Answering: true, PID: 1, Version: "3.1.0", Since: since}
	connected := func(bridges ...ovsdb.BridgeInfo) ovsdb.Snapshot {
		s := ovsdb.Snapshot{Endpoint: endpoint, Connected: true, Bridges: map[string]ovsdb.BridgeInfo{}}
		for _, b := range bridges {
			b.Exists = true
			s.Bridges[b.Name] = b
		}
		return s
	}
	brInt := ovsdb.BridgeInfo{Name: "br-int", DatapathID: "0000aabbccddeeff", DatapathType: "netdev"}
	brEx := ovsdb.BridgeInfo{Name: "br-ex", DatapathID: "0000112233445566", DatapathType: "system"}
	verified := map[string]bridgeView{"br-int": {Features: features}, "br-ex": {Features: features}}

	tests := []struct {
		name    string
		bridges []string
		reqs    []string
		snap    ovsdb.Snapshot
		vs      vswitchdView
		bridge  map[string]bridgeView
		ready   bool
		reason  string
		cause   string
		checks  map[string]string // failing checks and their messages; every other one passes
	}{
		{
			name: "OVSDB connecting", snap: ovsdb.Snapshot{}, vs: answering,
			reason: "OVSDB: connecting to " + endpoint, cause: CauseOVSDBUnreachable,
			checks: map[string]string{"ovsdb": "connecting to " + endpoint, "datapath/br-int": "waiting for OVSDB", "features/br-int": "datapath not ready"},
		},
		{
			name: "OVSDB hung", snap: ovsdb.Snapshot{Err: fmt.Errorf("%w within 5s", ovsdb.ErrNotAnswering)}, vs: answering,
			reason: "OVSDB: not answering within 5s at " + endpoint, cause: CauseOVSDBUnreachable,
			checks: map[string]string{"ovsdb": "not answering within 5s at " + endpoint, "datapath/br-int": "waiting for OVSDB", "features/br-int": "datapath not ready"},
		},
		{
			name: "OVSDB refused", snap: ovsdb.Snapshot{Err: errors.New("connect: connection refused")}, vs: answering,
			reason: "OVSDB: not connected to " + endpoint + ": connect: connection refused", cause: CauseOVSDBUnreachable,
			checks: map[string]string{"ovsdb": "not connected to " + endpoint + ": connect: connection refused", "datapath/br-int": "waiting for OVSDB", "features/br-int": "datapath not ready"},
		},
		{
			name: "ovs-vswitchd exited", snap: connected(brInt), bridge: verified,
			vs:     vswitchdView{Why: verdict{"ovs-vswitchd (pid 1) exited", CauseVSwitchdNotRunning}, Restarts: 2},
			reason: "ovs-vswitchd (pid 1) exited", cause: CauseVSwitchdNotRunning,
			checks: map[string]string{"vswitchd": "ovs-vswitchd (pid 1) exited", "datapath/br-int": "waiting for ovs-vswitchd", "features/br-int": "datapath not ready"},
		},
		{
			name: "ovs-vswitchd busy", snap: connected(brInt), bridge: verified,
			vs:     vswitchdView{PID: 1, Version: "3.1.0", Since: since, Why: verdict{"ovs-vswitchd (pid 1) is busy: ...", CauseVSwitchdBusy}},
			reason: "ovs-vswitchd (pid 1) is busy: ...", cause: CauseVSwitchdBusy,
			checks: map[string]string{"vswitchd": "ovs-vswitchd (pid 1) is busy: ...", "datapath/br-int": "waiting for ovs-vswitchd", "features/br-int": "datapath not ready"},
		},
		{
			name: "bridge missing", snap: connected(), vs: answering,
			reason: "bridge br-int: bridge does not exist in OVSDB", cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "bridge does not exist in OVSDB", "features/br-int": "datapath not ready"},
		},
		{
			name: "no datapath ID yet, kernel diagnosis", snap: connected(ovsdb.BridgeInfo{Name: "br-int", DatapathType: "system"}), vs: answering,
			bridge: map[string]bridgeView{"br-int": {Diagnosis: "kernel datapath: openvswitch kernel module not loaded"}},
			reason: "bridge br-int: waiting for datapath ID (kernel datapath: openvswitch kernel module not loaded)", cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "waiting for datapath ID (kernel datapath: openvswitch kernel module not loaded)", "features/br-int": "datapath not ready"},
		},
		{
			name: "features not asked yet", snap: connected(brInt), vs: answering,
			reason: "bridge br-int: waiting for datapath features", cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "waiting for datapath features", "features/br-int": "datapath not ready"},
		},
		{
			name: "not registered yet", snap: connected(brInt), vs: answering,
			bridge: map[string]bridgeView{"br-int": {Err: "ovs-vswitchd (pid 1) has not registered dpif/show-dp-features yet"}},
			reason: "bridge br-int: ovs-vswitchd (pid 1) has not registered dpif/show-dp-features yet", cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "ovs-vswitchd (pid 1) has not registered dpif/show-dp-features yet", "features/br-int": "datapath not ready"},
		},
		{
			name: "requirement unmet", snap: connected(brInt), vs: answering, bridge: verified, reqs: []string{"Recirc", "Max VLAN headers>=2"},
			reason: `bridge br-int: feature "Max VLAN headers" is 1, want >= 2`, cause: CauseFeaturesMissing,
			checks: map[string]string{"features/br-int": `feature "Max VLAN headers" is 1, want >= 2`},
		},
		{
			name: "ready", snap: connected(brInt), vs: answering, bridge: verified, reqs: []string{"recirc"},
			ready: true, cause: CauseReady,
		},
		{
			name: "two bridges, both short", bridges: []string{"br-int", "br-ex"}, snap: connected(brEx), vs: answering, bridge: verified,
			reqs:   []string{"Teleport"},
			reason: `bridge br-int: bridge does not exist in OVSDB; bridge br-ex: feature "Teleport" is not reported by the datapath`, cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "bridge does not exist in OVSDB", "features/br-int": "datapath not ready",
				"features/br-ex": `feature "Teleport" is not reported by the datapath`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bridges := tt.bridges
			if bridges == nil {
				bridges = []string{"br-int"}
			}
			var reqs []Requirement
			for _, r := range tt.reqs {
				req, err := ParseRequirement(r)
				assert.NoError(t, err)
				reqs = append(reqs, req)
			}
			snap := tt.snap
			if snap.Bridges == nil {
				snap.Bridges = map[string]ovsdb.BridgeInfo{}
			}
			s := computeStatus(inputs{endpoint: endpoint, bridges: bridges, requirements: reqs, snap: snap, vswitchd: tt.vs, bridge: tt.bridge})

			assert.Equal(t, tt.ready, s.Ready)
			assert.Equal(t, tt.reason, s.Reason)
			assert.Equal(t, tt.cause, s.Cause)
			assert.Equal(t, snap.Connected, s.OVSDB.Connected)
			assert.Equal(t, endpoint, s.OVSDB.Endpoint)
			assert.Equal(t, tt.vs.PID, s.VSwitchd.PID)
			assert.Equal(t, tt.vs.Restarts, s.VSwitchd.Restarts)
			if tt.vs.Since.IsZero() {
				assert.Nil(t, s.VSwitchd.Since)
			} else if assert.NotNil(t, s.VSwitchd.Since) {
				assert.Equal(t, tt.vs.Since, s.VSwitchd.Since.Time)
			}
			wantNames := []string{"ovsdb", "vswitchd"}
			for _, br := range bridges {
				wantNames = append(wantNames, "datapath/"+br, "features/"+br)
			}
			var names []string
			for _, c := range s.Checks {
				names = append(names, c.Name)
				msg, failing := tt.checks[c.Name]
				assert.Equal(t, !failing, c.OK, c.Name)
				assert.Equal(t, msg, c.Message, c.Name)
			}
			assert.Equal(t, wantNames, names)
			for i, b := range s.Bridges {
				assert.Equal(t, bridges[i], b.Name)
				_, dpFailing := tt.checks["datapath/"+b.Name]
				_, featFailing := tt.checks["features/"+b.Name]
				assert.Equal(t, !dpFailing && !featFailing, b.Ready, b.Name)
				if !dpFailing {
					assert.Equal(t, true, b.Features["Recirc"], "features shown once verified")
				} else {
					assert.Empty(t, b.Features)
				}
			}
		})
	}
}

// Required ports, flow-restore-wait and DPDK, without Open vSwitch.
func TestComputeStatusPortsFlowsDPDK(t *testing.T) {
	const endpoint = "unix:/run/openvswitch/db.sock"
	since := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	answering := vswitchdView{Answering: true, PID: 7, Version: "3.1.0", Since: since}
	brInt := ovsdb.BridgeInfo{Name: "br-int", Exists: true, DatapathID: "00001", DatapathType: "netdev"}
	verified := map[string]bridgeView{"br-int": {Features: appctl.Features{{Name: "Recirc", Value: true}}}}
	gw0 := ovsdb.PortInfo{Name: "gw0", Exists: true, OFPort: 3}
	snap := func(ports ...ovsdb.PortInfo) ovsdb.Snapshot {
		s := ovsdb.Snapshot{Connected: true, Bridges: map[string]ovsdb.BridgeInfo{"br-int": brInt}, Ports: map[string]ovsdb.PortInfo{}}
		for _, p := range ports {
			s.Ports[p.Name] = p
		}
		return s
	}
	known := system{flowRestoreWait: flagOff}
	tests := []struct {
		name   string
		snap   ovsdb.Snapshot
		sys    system
		vs     vswitchdView
		ports  []string
		port   map[string]portView
		flows  bool
		ready  bool
		reason string
		cause  string
		check  string // the failing check, if any
	}{
		{name: "port ready", snap: snap(gw0), sys: known, vs: answering, ports: []string{"gw0"},
			port: map[string]portView{"gw0": {OVSDB: gw0, Listed: true, Opened: 3}}, ready: true, cause: CauseReady},
		{name: "port missing", snap: snap(), sys: known, vs: answering, ports: []string{"gw0"},
			port: map[string]portView{"gw0": {}}, reason: "port gw0: does not exist in OVSDB", cause: CausePortNotReady, check: "port/gw0"},
		{name: "port failed", snap: snap(), sys: known, vs: answering, ports: []string{"gw0"},
			port: map[string]portView{"gw0": {OVSDB: ovsdb.PortInfo{Name: "gw0", Exists: true, OFPort: -1,
				Error: "could not open network device gw0 (No such device)"}}},
			reason: "port gw0: cannot be opened (ofport -1): could not open network device gw0 (No such device)", cause: CausePortNotReady, check: "port/gw0"},
		{name: "port without a number yet", snap: snap(), sys: known, vs: answering, ports: []string{"gw0"},
			port:   map[string]portView{"gw0": {OVSDB: ovsdb.PortInfo{Name: "gw0", Exists: true}}},
			reason: "port gw0: waiting for an OpenFlow port number", cause: CausePortNotReady, check: "port/gw0"},
		{name: "port not asked yet", snap: snap(), sys: known, vs: answering, ports: []string{"gw0"},
			port:   map[string]portView{"gw0": {OVSDB: gw0}},
			reason: "port gw0: waiting for the ports ovs-vswitchd opened", cause: CausePortNotReady, check: "port/gw0"},
		{name: "port not opened by this instance", snap: snap(), sys: known, vs: answering, ports: []string{"gw0"},
			port:   map[string]portView{"gw0": {OVSDB: gw0, Listed: true}},
			reason: "port gw0: ovs-vswitchd (pid 7) has not opened it (yet)", cause: CausePortNotReady, check: "port/gw0"},
		{name: "port numbers differ", snap: snap(), sys: known, vs: answering, ports: []string{"gw0"},
			port:   map[string]portView{"gw0": {OVSDB: gw0, Listed: true, Opened: 9}},
			reason: "port gw0: ovs-vswitchd (pid 7) has it as OpenFlow port 9, OVSDB says 3", cause: CausePortNotReady, check: "port/gw0"},
		{name: "flow-restore-wait not required", snap: snap(), sys: system{flowRestoreWait: flagOn}, vs: answering,
			ready: true, cause: CauseReady},
		{name: "flow-restore-wait required", snap: snap(), sys: system{flowRestoreWait: flagOn, flowRestoreWaitBy: "ovn-controller"},
			vs: answering, flows: true, cause: CauseFlowRestoreWait, check: "flows",
			reason: "flow-restore-wait is set (other_config:flow-restore-wait=true): ovs-vswitchd neither forwards nor flushes datapath flows until it is cleared (set by ovn-controller, which clears it once it has installed its flows)"},
		{name: "flows restored", snap: snap(), sys: known, vs: answering, flows: true, ready: true, cause: CauseReady},
		{name: "DPDK asked for, not running", snap: snap(), sys: system{flowRestoreWait: flagOff, dpdkInit: "true"}, vs: answering,
			reason: "ovs-vswitchd (pid 7) has not initialised DPDK (other_config:dpdk-init=true, dpdk_initialized=false)",
			cause:  CauseDPDKNotInitialized, check: "vswitchd"},
		{name: "DPDK tried", snap: snap(), sys: system{flowRestoreWait: flagOff, dpdkInit: "try"}, vs: answering, ready: true, cause: CauseReady},
		{name: "DPDK running", snap: snap(), sys: system{flowRestoreWait: flagOff, dpdkInit: "true", dpdkInitialized: true}, vs: answering, ready: true, cause: CauseReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := inputs{endpoint: endpoint, bridges: []string{"br-int"}, ports: tt.ports, requireFlowsRestored: tt.flows,
				flowRestoreWaitSince: since, snap: tt.snap, system: tt.sys, vswitchd: tt.vs, bridge: verified, port: tt.port}
			s := computeStatus(in)
			assert.Equal(t, tt.ready, s.Ready)
			assert.Equal(t, tt.reason, s.Reason)
			assert.Equal(t, tt.cause, s.Cause)
			for _, c := range s.Checks {
				assert.Equal(t, c.Name != tt.check, c.OK, c.Name)
			}
			_, hasFlows := s.Check(CheckFlows)
			assert.Equal(t, tt.flows, hasFlows)
			assert.Len(t, s.Ports, len(tt.ports))
			on := tt.sys.flowRestoreWait == flagOn
			assert.Equal(t, on, s.VSwitchd.FlowRestoreWait)
			assert.Equal(t, on, s.VSwitchd.FlowRestoreWaitSince != nil)
			assert.Equal(t, tt.sys.dpdkInit != "", s.VSwitchd.DPDK != nil)
		})
	}
}
