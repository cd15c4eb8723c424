package gate

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/ovsdb"
)

const endpoint = "unix:/run/openvswitch/db.sock"

var (
	since     = time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	answering = vswitchdView{connected: true, answering: true, pid: 1, version: "3.1.0", since: since}
	brInt     = ovsdb.BridgeInfo{Name: "br-int", Exists: true, DatapathID: "0000aabbccddeeff", DatapathType: "netdev"}
	brEx      = ovsdb.BridgeInfo{Name: "br-ex", Exists: true, DatapathID: "0000112233445566", DatapathType: "system"}
	gw0       = ovsdb.PortInfo{Name: "gw0", Exists: true, OFPort: 3}
	features  = appctl.Features{{Name: "Recirc", Value: true}, {Name: "Max VLAN headers", Value: int64(1)}}
	verified  = map[string]bridgeView{"br-int": {features: features}, "br-ex": {features: features}}
)

// connected is an OVSDB snapshot with these bridges and ports, and the
// Open_vSwitch row read.
func connected(bridges []ovsdb.BridgeInfo, ports ...ovsdb.PortInfo) ovsdb.Snapshot {
	s := ovsdb.Snapshot{Endpoint: endpoint, Connected: true, Bridges: map[string]ovsdb.BridgeInfo{}, Ports: map[string]ovsdb.PortInfo{},
		System: ovsdb.SystemInfo{Known: true}}
	for _, b := range bridges {
		s.Bridges[b.Name] = b
	}
	for _, p := range ports {
		s.Ports[p.Name] = p
	}
	return s
}

// featuresErr is what dpif/show-dp-features of br read as, when answered
// with an error text.
func featuresErr(text string) error {
	_, err := appctl.DPFeatures("br-int").Read(appctl.Result{Err: &appctl.ServerError{Method: "dpif/show-dp-features", Text: text}})
	return err
}

// The decision, without Open vSwitch: every row is one situation and what
// the gate must say about it.
func TestTableDecides(t *testing.T) {
	_, garbled := appctl.DPFeatures("br-int").Read(appctl.Result{Text: "Recirc"})
	tests := []struct {
		name     string
		bridges  []string
		reqs     []string
		in       inputs
		ready    bool
		reason   string
		cause    string
		pending  bool              // some check has no definite answer yet
		checks   map[string]string // failing checks and their messages; every other one passes
		busyHung [2]bool
	}{
		{
			name: "OVSDB connecting", in: inputs{vswitchd: answering},
			reason: "OVSDB: connecting to " + endpoint, cause: CauseOVSDBUnreachable, pending: true,
			checks: map[string]string{"ovsdb": "connecting to " + endpoint, "datapath/br-int": "waiting for OVSDB", "features/br-int": "datapath not ready"},
		},
		{
			name: "OVSDB hung", in: inputs{snap: ovsdb.Snapshot{Err: fmt.Errorf("%w within 5s", ovsdb.ErrNotAnswering)}, vswitchd: answering},
			reason: "OVSDB: not answering within 5s at " + endpoint, cause: CauseOVSDBUnreachable,
			checks: map[string]string{"ovsdb": "not answering within 5s at " + endpoint, "datapath/br-int": "waiting for OVSDB", "features/br-int": "datapath not ready"},
		},
		{
			name: "OVSDB refused", in: inputs{snap: ovsdb.Snapshot{Err: errors.New("connect: connection refused")}, vswitchd: answering},
			reason: "OVSDB: not connected to " + endpoint + ": connect: connection refused", cause: CauseOVSDBUnreachable,
			checks: map[string]string{"ovsdb": "not connected to " + endpoint + ": connect: connection refused", "datapath/br-int": "waiting for OVSDB", "features/br-int": "datapath not ready"},
		},
		{
			// The gauges read ovs-vswitchd's own state, not the top cause.
			name: "OVSDB down, ovs-vswitchd hung", in: inputs{snap: ovsdb.Snapshot{Err: errors.New("connect: connection refused")},
				vswitchd: vswitchdView{connected: true, pid: 1, version: "3.1.0", since: since, stall: stallHung}},
			reason: "OVSDB: not connected to " + endpoint + ": connect: connection refused", cause: CauseOVSDBUnreachable, busyHung: [2]bool{false, true},
			checks: map[string]string{"ovsdb": "not connected to " + endpoint + ": connect: connection refused",
				"vswitchd":        "ovs-vswitchd (pid 1) is hung: not answering within 5s, and its main thread uses no CPU (stopped or deadlocked)",
				"datapath/br-int": "waiting for OVSDB", "features/br-int": "datapath not ready"},
		},
		{
			name: "looking for ovs-vswitchd", in: inputs{snap: connected(nil)},
			reason: "looking for ovs-vswitchd", cause: CauseVSwitchdNotRunning, pending: true,
			checks: map[string]string{"vswitchd": "looking for ovs-vswitchd", "datapath/br-int": "bridge does not exist in OVSDB", "features/br-int": "datapath not ready"},
		},
		{
			name: "ovs-vswitchd exited", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), bridge: verified,
				vswitchd: vswitchdView{down: absence{pid: 1, err: fmt.Errorf("read: %w", appctl.ErrClosed)}, restarts: 2}},
			reason: "ovs-vswitchd (pid 1) exited", cause: CauseVSwitchdNotRunning,
			checks: map[string]string{"vswitchd": "ovs-vswitchd (pid 1) exited", "datapath/br-int": "waiting for ovs-vswitchd", "features/br-int": "datapath not ready"},
		},
		{
			name: "no pidfile", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}),
				vswitchd: vswitchdView{down: absence{err: fmt.Errorf("%w /run/ovs/ovs-vswitchd.pid", appctl.ErrNoPidfile)}}},
			reason: "ovs-vswitchd is not running: no pidfile /run/ovs/ovs-vswitchd.pid", cause: CauseVSwitchdNotRunning,
			checks: map[string]string{"vswitchd": "ovs-vswitchd is not running: no pidfile /run/ovs/ovs-vswitchd.pid", "datapath/br-int": "waiting for ovs-vswitchd", "features/br-int": "datapath not ready"},
		},
		{
			name: "refused", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}),
				vswitchd: vswitchdView{down: absence{pid: 7, err: fmt.Errorf("%w: /run/ovs/ovs-vswitchd.7.ctl", appctl.ErrRefused)}}},
			reason: "ovs-vswitchd (pid 7) is not running (stale pidfile?) or still starting: control socket refuses connections: /run/ovs/ovs-vswitchd.7.ctl", cause: CauseVSwitchdNotRunning,
			checks: map[string]string{"vswitchd": "ovs-vswitchd (pid 7) is not running (stale pidfile?) or still starting: control socket refuses connections: /run/ovs/ovs-vswitchd.7.ctl",
				"datapath/br-int": "waiting for ovs-vswitchd", "features/br-int": "datapath not ready"},
		},
		{
			name: "permission denied", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}),
				vswitchd: vswitchdView{down: absence{pid: 7, err: fmt.Errorf("%w on /run/ovs/ovs-vswitchd.7.ctl", appctl.ErrPermission)}}},
			reason: "ovs-vswitchd (pid 7): permission denied on /run/ovs/ovs-vswitchd.7.ctl (run ovsgate as the socket's owner)", cause: CauseVSwitchdUnreachable,
			checks: map[string]string{"vswitchd": "ovs-vswitchd (pid 7): permission denied on /run/ovs/ovs-vswitchd.7.ctl (run ovsgate as the socket's owner)",
				"datapath/br-int": "waiting for ovs-vswitchd", "features/br-int": "datapath not ready"},
		},
		{
			name: "has not answered yet", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), vswitchd: vswitchdView{connected: true, pid: 7}},
			reason: "ovs-vswitchd (pid 7) has not answered yet", cause: CauseVSwitchdStarting, pending: true,
			checks: map[string]string{"vswitchd": "ovs-vswitchd (pid 7) has not answered yet", "datapath/br-int": "waiting for ovs-vswitchd", "features/br-int": "datapath not ready"},
		},
		{
			name: "a new connection, the last failure stands", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}),
				vswitchd: vswitchdView{connected: true, pid: 7, down: absence{pid: 7, err: fmt.Errorf("%w: version: empty answer", appctl.ErrMalformed)}}},
			reason: "ovs-vswitchd (pid 7): malformed reply: version: empty answer", cause: CauseVSwitchdUnreachable, pending: true,
			checks: map[string]string{"vswitchd": "ovs-vswitchd (pid 7): malformed reply: version: empty answer", "datapath/br-int": "waiting for ovs-vswitchd", "features/br-int": "datapath not ready"},
		},
		{
			name: "ovs-vswitchd busy", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), bridge: verified,
				vswitchd: vswitchdView{connected: true, pid: 1, version: "3.1.0", since: since, stall: stallBusy}},
			reason: "ovs-vswitchd (pid 1) is busy: not answering within 5s while its main thread uses CPU", cause: CauseVSwitchdBusy, busyHung: [2]bool{true, false},
			checks: map[string]string{"vswitchd": "ovs-vswitchd (pid 1) is busy: not answering within 5s while its main thread uses CPU",
				"datapath/br-int": "waiting for ovs-vswitchd", "features/br-int": "datapath not ready"},
		},
		{
			name: "ovs-vswitchd not seen", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), bridge: verified,
				vswitchd: vswitchdView{connected: true, pid: 1, version: "3.1.0", since: since, stall: stallUnknown}},
			reason: "ovs-vswitchd (pid 1) is not answering within 5s (busy or hung: its CPU time cannot be seen from here)", cause: CauseVSwitchdNotAnswering, busyHung: [2]bool{false, true},
			checks: map[string]string{"vswitchd": "ovs-vswitchd (pid 1) is not answering within 5s (busy or hung: its CPU time cannot be seen from here)",
				"datapath/br-int": "waiting for ovs-vswitchd", "features/br-int": "datapath not ready"},
		},
		{
			name: "bridge missing", in: inputs{snap: connected(nil), vswitchd: answering},
			reason: "bridge br-int: bridge does not exist in OVSDB", cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "bridge does not exist in OVSDB", "features/br-int": "datapath not ready"},
		},
		{
			name: "no datapath ID yet, kernel diagnosis", in: inputs{snap: connected([]ovsdb.BridgeInfo{{Name: "br-int", Exists: true, DatapathType: "system"}}), vswitchd: answering,
				bridge: map[string]bridgeView{"br-int": {diagnosis: "kernel datapath: openvswitch kernel module not loaded"}}},
			reason: "bridge br-int: waiting for datapath ID (kernel datapath: openvswitch kernel module not loaded)", cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "waiting for datapath ID (kernel datapath: openvswitch kernel module not loaded)", "features/br-int": "datapath not ready"},
		},
		{
			// The kernel module is missing, but no ovs-vswitchd answers:
			// that is the cause, and the only one said.
			name: "kernel diagnosis while ovs-vswitchd exited", in: inputs{snap: connected([]ovsdb.BridgeInfo{brEx}, gw0),
				vswitchd: vswitchdView{down: absence{pid: 1, err: fmt.Errorf("read: %w", appctl.ErrClosed)}},
				bridge:   map[string]bridgeView{"br-ex": {diagnosis: "kernel datapath: openvswitch kernel module not loaded"}}},
			bridges: []string{"br-ex"},
			reason:  "ovs-vswitchd (pid 1) exited", cause: CauseVSwitchdNotRunning,
			checks: map[string]string{"vswitchd": "ovs-vswitchd (pid 1) exited", "datapath/br-ex": "waiting for ovs-vswitchd", "features/br-ex": "datapath not ready"},
		},
		{
			name: "no datapath ID, kernel diagnosis, no ovs-vswitchd yet", in: inputs{snap: connected([]ovsdb.BridgeInfo{{Name: "br-int", Exists: true}}),
				vswitchd: vswitchdView{down: absence{err: fmt.Errorf("%w DIR/ovs-vswitchd.pid", appctl.ErrNoPidfile)}},
				bridge:   map[string]bridgeView{"br-int": {diagnosis: "kernel datapath: openvswitch kernel module not loaded"}}},
			reason: "ovs-vswitchd is not running: " + fmt.Errorf("%w DIR/ovs-vswitchd.pid", appctl.ErrNoPidfile).Error(), cause: CauseVSwitchdNotRunning,
			checks: map[string]string{"vswitchd": "ovs-vswitchd is not running: " + fmt.Errorf("%w DIR/ovs-vswitchd.pid", appctl.ErrNoPidfile).Error(),
				"datapath/br-int": "waiting for datapath ID", "features/br-int": "datapath not ready"},
		},
		{
			name: "required feature misspelt", reqs: []string{"Recirk"}, in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), vswitchd: answering, bridge: verified},
			reason: `bridge br-int: feature "Recirk" is not reported by the datapath (did you mean Recirc?)`, cause: CauseFeaturesMissing,
			checks: map[string]string{"features/br-int": `feature "Recirk" is not reported by the datapath (did you mean Recirc?)`},
		},
		{
			name: "features not asked yet", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), vswitchd: answering},
			reason: "bridge br-int: waiting for datapath features", cause: CauseBridgeNotReady, pending: true,
			checks: map[string]string{"datapath/br-int": "waiting for datapath features", "features/br-int": "datapath not ready"},
		},
		{
			name: "not registered yet", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), vswitchd: answering,
				bridge: map[string]bridgeView{"br-int": {err: featuresErr(`"dpif/show-dp-features" is not a valid command (use "list-commands" to see a list of valid commands)`), pid: 1}}},
			reason: "bridge br-int: ovs-vswitchd (pid 1) has not registered dpif/show-dp-features yet", cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "ovs-vswitchd (pid 1) has not registered dpif/show-dp-features yet", "features/br-int": "datapath not ready"},
		},
		{
			name: "bridge not configured yet", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), vswitchd: answering,
				bridge: map[string]bridgeView{"br-int": {err: featuresErr("no such bridge"), pid: 1}}},
			reason: "bridge br-int: ovs-vswitchd (pid 1) has not configured the bridge yet", cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "ovs-vswitchd (pid 1) has not configured the bridge yet", "features/br-int": "datapath not ready"},
		},
		{
			name: "another error", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), vswitchd: answering,
				bridge: map[string]bridgeView{"br-int": {err: featuresErr("out of cheese"), pid: 1}}},
			reason: "bridge br-int: dpif/show-dp-features failed: out of cheese", cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "dpif/show-dp-features failed: out of cheese", "features/br-int": "datapath not ready"},
		},
		{
			name: "a garbled answer", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), vswitchd: answering,
				bridge: map[string]bridgeView{"br-int": {err: garbled, pid: 1}}},
			reason: `bridge br-int: dpif/show-dp-features: malformed reply: feature line "Recirc" is not "Name: value"`, cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": `dpif/show-dp-features: malformed reply: feature line "Recirc" is not "Name: value"`, "features/br-int": "datapath not ready"},
		},
		{
			name: "requirement unmet", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), vswitchd: answering, bridge: verified}, reqs: []string{"Recirc", "Max VLAN headers>=2"},
			reason: `bridge br-int: feature "Max VLAN headers" is 1, want >= 2`, cause: CauseFeaturesMissing,
			checks: map[string]string{"features/br-int": `feature "Max VLAN headers" is 1, want >= 2`},
		},
		{
			name: "ready", in: inputs{snap: connected([]ovsdb.BridgeInfo{brInt}), vswitchd: answering, bridge: verified}, reqs: []string{"recirc"},
			ready: true, cause: CauseReady,
		},
		{
			name: "two bridges, both short", bridges: []string{"br-int", "br-ex"}, in: inputs{snap: connected([]ovsdb.BridgeInfo{brEx}), vswitchd: answering, bridge: verified},
			reqs:   []string{"Teleport"},
			reason: `bridge br-int: bridge does not exist in OVSDB; bridge br-ex: feature "Teleport" is not reported by the datapath`, cause: CauseBridgeNotReady,
			checks: map[string]string{"datapath/br-int": "bridge does not exist in OVSDB", "features/br-int": "datapath not ready",
				"features/br-ex": `feature "Teleport" is not reported by the datapath`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{OVSDB: endpoint, Bridges: tt.bridges}
			if cfg.Bridges == nil {
				cfg.Bridges = []string{"br-int"}
			}
			for _, r := range tt.reqs {
				req, err := ParseRequirement(r)
				require.NoError(t, err)
				cfg.Requirements = append(cfg.Requirements, req)
			}
			cfg.setDefaults()
			in := tt.in
			in.system = readSystem(in.snap.System)
			s := newRule(&cfg).evaluate(&in)
			seenReasons.record(t, s)

			assert.Equal(t, tt.ready, s.Ready)
			assert.Equal(t, tt.reason, s.Reason)
			assert.Equal(t, tt.cause, s.Cause)
			assert.Equal(t, !tt.pending, s.Settled)
			assert.Equal(t, tt.busyHung, [2]bool{s.Busy, s.Hung})
			assert.Equal(t, in.snap.Connected, s.OVSDB.Connected)
			assert.Equal(t, endpoint, s.OVSDB.Endpoint)
			assert.Equal(t, in.vswitchd.restarts, s.Restarts)
			if in.vswitchd.since.IsZero() {
				assert.Nil(t, s.VSwitchd.Since)
				assert.Zero(t, s.VSwitchd.PID)
			} else if assert.NotNil(t, s.VSwitchd.Since) {
				assert.Equal(t, in.vswitchd.since, s.VSwitchd.Since.Time)
				assert.Equal(t, in.vswitchd.pid, s.VSwitchd.PID)
			}
			wantNames := []string{"ovsdb", "vswitchd"}
			for _, br := range cfg.Bridges {
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
			require.Len(t, s.Bridges, len(cfg.Bridges))
			for i, b := range s.Bridges {
				assert.Equal(t, cfg.Bridges[i], b.Name)
				dpMsg, dpFailing := tt.checks["datapath/"+b.Name]
				featMsg, featFailing := tt.checks["features/"+b.Name]
				assert.Equal(t, !dpFailing && !featFailing, b.Ready, b.Name)
				switch {
				case dpFailing:
					assert.Equal(t, dpMsg, b.Reason)
					assert.Empty(t, b.Features)
				default:
					assert.Equal(t, featMsg, b.Reason)
					assert.Equal(t, true, b.Features["Recirc"], "features shown once verified")
				}
			}
		})
	}
}

// Required ports, flow-restore-wait and DPDK, without Open vSwitch.
func TestTablePortsFlowsDPDK(t *testing.T) {
	answering := vswitchdView{connected: true, answering: true, pid: 7, version: "3.1.0", since: since}
	verified := map[string]bridgeView{"br-int": {features: appctl.Features{{Name: "Recirc", Value: true}}}}
	_, badShow := appctl.DPIFShow([]string{"gw0"}).Read(appctl.Result{Text: "  gw0: (internal)\n"})
	other := func(kv ...string) ovsdb.SystemInfo {
		s := ovsdb.SystemInfo{Known: true, OtherConfig: map[string]string{}, ExternalIDs: map[string]string{}}
		for i := 0; i < len(kv); i += 2 {
			s.OtherConfig[kv[i]] = kv[i+1]
		}
		return s
	}
	tests := []struct {
		name    string
		snap    ovsdb.Snapshot
		ports   []string
		port    map[string]portView
		flows   bool
		ready   bool
		reason  string
		cause   string
		check   string // the failing check, if any
		pending bool
	}{
		{name: "port ready", snap: connected([]ovsdb.BridgeInfo{brInt}, gw0), ports: []string{"gw0"},
			port: map[string]portView{"gw0": {listed: true, opened: 3}}, ready: true, cause: CauseReady},
		{name: "port missing", snap: connected([]ovsdb.BridgeInfo{brInt}), ports: []string{"gw0"},
			reason: "port gw0: does not exist in OVSDB", cause: CausePortNotReady, check: "port/gw0"},
		{name: "port failed", snap: connected([]ovsdb.BridgeInfo{brInt}, ovsdb.PortInfo{Name: "gw0", Exists: true, OFPort: -1,
			Error: "could not open network device gw0 (No such device)"}), ports: []string{"gw0"},
			reason: "port gw0: cannot be opened (ofport -1): could not open network device gw0 (No such device)", cause: CausePortNotReady, check: "port/gw0"},
		{name: "port without a number yet", snap: connected([]ovsdb.BridgeInfo{brInt}, ovsdb.PortInfo{Name: "gw0", Exists: true}), ports: []string{"gw0"},
			reason: "port gw0: waiting for an OpenFlow port number", cause: CausePortNotReady, check: "port/gw0"},
		{name: "port not asked yet", snap: connected([]ovsdb.BridgeInfo{brInt}, gw0), ports: []string{"gw0"},
			reason: "port gw0: waiting for the ports ovs-vswitchd opened", cause: CausePortNotReady, check: "port/gw0", pending: true},
		{name: "port not opened by this instance", snap: connected([]ovsdb.BridgeInfo{brInt}, gw0), ports: []string{"gw0"},
			port:   map[string]portView{"gw0": {listed: true}},
			reason: "port gw0: ovs-vswitchd (pid 7) has not opened it (yet)", cause: CausePortNotReady, check: "port/gw0"},
		{name: "port numbers differ", snap: connected([]ovsdb.BridgeInfo{brInt}, gw0), ports: []string{"gw0"},
			port:   map[string]portView{"gw0": {listed: true, opened: 9}},
			reason: "port gw0: ovs-vswitchd (pid 7) has it as OpenFlow port 9, OVSDB says 3", cause: CausePortNotReady, check: "port/gw0"},
		{name: "ports unreadable", snap: connected([]ovsdb.BridgeInfo{brInt}, gw0), ports: []string{"gw0"},
			port:   map[string]portView{"gw0": {listed: true, err: badShow}},
			reason: `port gw0: dpif/show: malformed reply: port line "gw0: (internal)" is not "NAME OFPORT/DPPORT: (TYPE)"`, cause: CausePortNotReady, check: "port/gw0"},
		{name: "flow-restore-wait not required", snap: connected([]ovsdb.BridgeInfo{brInt}), ready: true, cause: CauseReady},
		{name: "flow-restore-wait required", flows: true, cause: CauseFlowRestoreWait, check: "flows",
			snap: func() ovsdb.Snapshot {
				s := connected([]ovsdb.BridgeInfo{brInt})
				s.System = other("flow-restore-wait", "true")
				s.System.ExternalIDs["ovn-managed-flow-restore-wait"] = "true"
				return s
			}(),
			reason: "flow-restore-wait is set (other_config:flow-restore-wait=true): ovs-vswitchd neither forwards nor flushes datapath flows until it is cleared (set by ovn-controller, which clears it once it has installed its flows)"},
		{name: "flows restored", snap: connected([]ovsdb.BridgeInfo{brInt}), flows: true, ready: true, cause: CauseReady},
		{name: "flow-restore-wait not read yet", snap: func() ovsdb.Snapshot {
			s := connected([]ovsdb.BridgeInfo{brInt})
			s.System = ovsdb.SystemInfo{}
			return s
		}(), flows: true, cause: CauseFlowRestoreWait, check: "flows", reason: "flow-restore-wait: waiting for OVSDB"},
		{name: "DPDK asked for, not running", snap: func() ovsdb.Snapshot {
			s := connected([]ovsdb.BridgeInfo{brInt})
			s.System = other("dpdk-init", "true")
			return s
		}(), reason: "ovs-vswitchd (pid 7) has not initialised DPDK (other_config:dpdk-init=true, dpdk_initialized=false)",
			cause: CauseDPDKNotInitialized, check: "vswitchd"},
		{name: "DPDK tried", snap: func() ovsdb.Snapshot {
			s := connected([]ovsdb.BridgeInfo{brInt})
			s.System = other("dpdk-init", "try")
			return s
		}(), ready: true, cause: CauseReady},
		{name: "DPDK running", snap: func() ovsdb.Snapshot {
			s := connected([]ovsdb.BridgeInfo{brInt})
			s.System = other("dpdk-init", "true")
			s.System.DPDKInitialized = true
			return s
		}(), ready: true, cause: CauseReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{OVSDB: endpoint, Bridges: []string{"br-int"}, RequirePorts: tt.ports, RequireFlowsRestored: tt.flows}
			cfg.setDefaults()
			in := inputs{snap: tt.snap, system: readSystem(tt.snap.System), flowRestoreWaitSince: since, vswitchd: answering, bridge: verified, port: tt.port}
			s := newRule(&cfg).evaluate(&in)
			seenReasons.record(t, s)
			assert.Equal(t, tt.ready, s.Ready)
			assert.Equal(t, tt.reason, s.Reason)
			assert.Equal(t, tt.cause, s.Cause)
			assert.Equal(t, !tt.pending, s.Settled)
			for _, c := range s.Checks {
				assert.Equal(t, c.Name != tt.check, c.OK, c.Name)
			}
			_, hasFlows := s.Check(CheckFlows)
			assert.Equal(t, tt.flows, hasFlows)
			require.Len(t, s.Ports, len(tt.ports))
			for _, p := range s.Ports {
				c, ok := s.Check(PortCheck(p.Name))
				require.True(t, ok)
				assert.Equal(t, c.OK, p.Ready)
				assert.Equal(t, c.Message, p.Reason)
				assert.Equal(t, tt.snap.Ports[p.Name].OFPort, p.OFPort)
			}
			on := in.system.flowRestoreWait == flagOn
			if in.system.flowRestoreWait == flagUnknown {
				assert.Nil(t, s.VSwitchd.FlowRestoreWait, "unknown, not a guessed false")
			} else if assert.NotNil(t, s.VSwitchd.FlowRestoreWait) {
				assert.Equal(t, on, *s.VSwitchd.FlowRestoreWait)
			}
			assert.Equal(t, on, s.VSwitchd.FlowRestoreWaitSince != nil)
			assert.Equal(t, in.system.dpdkInit != "", s.VSwitchd.DPDK != nil)
		})
	}
}

// The state before the first reconcile comes from the same table: every
// check it will evaluate, each starting.
func TestTableInitialState(t *testing.T) {
	cfg := Config{OVSDB: endpoint, Bridges: []string{"br-int", "br-ex"}, RequirePorts: []string{"gw0"}, RequireFlowsRestored: true}
	cfg.setDefaults()
	r := newRule(&cfg)
	s := r.initial()
	assert.False(t, s.Ready)
	assert.False(t, s.Settled)
	assert.Equal(t, "starting", s.Reason)
	assert.Equal(t, CauseStarting, s.Cause)
	assert.Equal(t, OVSDBStatus{Endpoint: endpoint}, s.OVSDB)
	var names []string
	for _, c := range s.Checks {
		names = append(names, c.Name)
		assert.Equal(t, Check{Name: c.Name, Message: "starting"}, c)
	}
	assert.Equal(t, []string{"ovsdb", "vswitchd", "datapath/br-int", "features/br-int", "datapath/br-ex", "features/br-ex", "port/gw0", "flows"}, names)
	for i, c := range r.checks {
		assert.Equal(t, c.name, names[i], "the initial state lists the table")
	}
	assert.Equal(t, []BridgeStatus{{Name: "br-int", Reason: "starting", Features: map[string]any{}}, {Name: "br-ex", Reason: "starting", Features: map[string]any{}}}, s.Bridges)
	assert.Equal(t, []PortStatus{{Name: "gw0", Reason: "starting"}}, s.Ports)
}

// A required feature the datapath does not report at all suggests the
// names it reports that are a few edits away, ignoring case, nearest first,
// at most three; and Unreported lists it only for a datapath that answered.
func TestNotReportedSuggests(t *testing.T) {
	ovs31 := []string{"Masked set action", "Tunnel push pop", "Ufid", "Truncate action", "Clone action", "Sample nesting",
		"Conntrack eventmask", "Conntrack clear", "Max dp_hash algorithm", "Check pkt length action", "Conntrack timeout policy",
		"Explicit Drop action", "Optimized Balance TCP mode", "Conntrack all-zero IP SNAT", "MPLS Label add", "Max VLAN headers",
		"Max MPLS depth", "Recirc", "CT state", "CT zone", "CT mark", "CT label", "CT state NAT", "CT orig tuple",
		"CT orig tuple for IPv6", "IPv6 ND Extension"}
	for _, tt := range []struct{ name, want string }{
		{"Recirk", `feature "Recirk" is not reported by the datapath (did you mean Recirc?)`},
		{"recirculation", `feature "recirculation" is not reported by the datapath`},
		{"ct-zone", `feature "ct-zone" is not reported by the datapath (did you mean CT zone?)`},
		{"CT labl", `feature "CT labl" is not reported by the datapath (did you mean CT label?)`},
		{"CT mak", `feature "CT mak" is not reported by the datapath (did you mean CT mark?)`},
		{"CT ma", `feature "CT ma" is not reported by the datapath`}, // two edits in five letters: too far
		{"CT zonk", `feature "CT zonk" is not reported by the datapath (did you mean CT zone?)`},
		{"Teleport", `feature "Teleport" is not reported by the datapath`},
	} {
		assert.Equal(t, tt.want, notReported(tt.name, ovs31), tt.name)
	}
	assert.Equal(t, []string{"Ab", "AB ", "ax"}, closest("ab", []string{"zz", "Ab", "AB ", "ax", "a"}, 3), "nearest first, three at most")
	assert.Equal(t, "A, B or C", orList([]string{"A", "B", "C"}))

	st := Status{Bridges: []BridgeStatus{{Name: "br-int", Features: map[string]any{"Recirc": true}}, {Name: "br-ex", Features: map[string]any{}}},
		Checks: []Check{{Name: DatapathCheck("br-int"), OK: true}, {Name: DatapathCheck("br-ex"), Message: "waiting for datapath ID"}}}
	reqs := []Requirement{{Name: "Recirk"}, {Name: "recirc"}}
	assert.Equal(t, []string{`bridge br-int: feature "Recirk" is not reported by the datapath (did you mean Recirc?)`}, Unreported(reqs, st))
}
