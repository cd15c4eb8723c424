package gate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/unixctltest"
)

// flow-restore-wait is set before ovs-vswitchd starts, as the start scripts
// of Antrea and Kube-OVN do, and cleared later, as their agents do. A gate
// for the agent itself does not wait for it (the agent clears it: that would
// deadlock); with RequireFlowsRestored it does.
func TestFlowRestoreWait(t *testing.T) {
	s := ovstest.New(t)
	s.StartOVSDB()
	s.VsctlNoWait("set", "open", ".", "other_config:flow-restore-wait=true")
	s.VsctlNoWait("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
	s.StartVSwitchd()

	agent := startGate(t, sandboxConfig(s, "br-int"))
	cfg := sandboxConfig(s, "br-int")
	cfg.RequireFlowsRestored = true
	node := startGate(t, cfg)

	st := agent.waitFor(10*time.Second, "ready, flow-restore-wait shown", func(st State) bool { return st.Ready && isSet(st.VSwitchd.FlowRestoreWait) })
	require.NotNil(t, st.VSwitchd.FlowRestoreWaitSince)
	_, listed := st.Check(CheckFlows)
	assert.False(t, listed, "no flows check without RequireFlowsRestored")

	st = node.waitFor(10*time.Second, "not ready on flow-restore-wait", func(st State) bool { return st.Cause == CauseFlowRestoreWait })
	assert.Equal(t, "flow-restore-wait is set (other_config:flow-restore-wait=true): ovs-vswitchd neither forwards nor flushes datapath flows until it is cleared (the CNI agent clears it after replaying its flows)", st.Reason)
	c, listed := st.Check(CheckFlows)
	require.True(t, listed)
	assert.False(t, c.OK)
	assert.Equal(t, st.Reason, c.Message)
	for _, name := range []string{CheckOVSDB, CheckVSwitchd, DatapathCheck("br-int"), FeaturesCheck("br-int")} {
		assert.True(t, checkOf(t, st, name).OK, name)
	}

	s.VsctlNoWait("set", "open", ".", "external_ids:ovn-managed-flow-restore-wait=true")
	st = node.waitFor(5*time.Second, "the owner named", func(st State) bool { return strings.Contains(st.Reason, "ovn-controller") })
	assert.Equal(t, "ovn-controller", st.VSwitchd.FlowRestoreWaitBy)

	// ovsdb-server restarting clears nothing: once it is back with the flag
	// still set, the flag keeps the time it was first seen, so that an
	// alert on a stuck flag is not reset by every OVSDB blip.
	require.NotNil(t, st.VSwitchd.FlowRestoreWaitSince)
	since := st.VSwitchd.FlowRestoreWaitSince.Time
	s.StopOVSDB()
	st = node.waitFor(10*time.Second, "OVSDB lost", func(st State) bool { return !st.OVSDB.Connected })
	assert.Equal(t, "flow-restore-wait: waiting for OVSDB", checkOf(t, st, CheckFlows).Message, "unknown, not off")
	assert.Nil(t, st.VSwitchd.FlowRestoreWait, "unknown while OVSDB is away, not a guessed value")
	s.StartOVSDB()
	st = node.waitFor(10*time.Second, "OVSDB back, flag still set", func(st State) bool { return st.OVSDB.Connected && isSet(st.VSwitchd.FlowRestoreWait) })
	require.NotNil(t, st.VSwitchd.FlowRestoreWaitSince)
	assert.True(t, since.Equal(st.VSwitchd.FlowRestoreWaitSince.Time), "since %v, now %v", since, st.VSwitchd.FlowRestoreWaitSince)
	// The agent's gate lost OVSDB too: it is back as it was before going on.
	agent.waitFor(10*time.Second, "the agent's gate ready again", func(st State) bool { return st.Ready && isSet(st.VSwitchd.FlowRestoreWait) })

	s.VsctlNoWait("remove", "open", ".", "other_config", "flow-restore-wait")
	st = node.waitFor(5*time.Second, "ready once cleared", ready)
	require.NotNil(t, st.VSwitchd.FlowRestoreWait)
	assert.False(t, *st.VSwitchd.FlowRestoreWait)
	assert.Nil(t, st.VSwitchd.FlowRestoreWaitSince)
	st = agent.waitFor(5*time.Second, "the agent's gate sees it cleared", func(st State) bool {
		f := st.VSwitchd.FlowRestoreWait
		return f != nil && !*f
	})
	assert.True(t, st.Ready)
}

func TestRequiredPorts(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	cfg := sandboxConfig(s, "br-int")
	cfg.RequirePorts = []string{"gw0", "patch0"}
	h := startGate(t, cfg)

	st := h.waitFor(10*time.Second, "both missing", func(st State) bool { return st.Cause == CausePortNotReady })
	assert.Equal(t, "port gw0: does not exist in OVSDB; port patch0: does not exist in OVSDB", st.Reason)
	require.Len(t, st.Ports, 2)

	s.Vsctl("add-port", "br-int", "gw0", "--", "set", "interface", "gw0", "type=internal")
	// A patch port without a peer: OVSDB has it, with ofport -1 and an error.
	s.VsctlNoWait("add-port", "br-int", "patch0", "--", "set", "interface", "patch0", "type=patch")
	st = h.waitFor(10*time.Second, "gw0 ready, patch0 failing", func(st State) bool {
		return len(st.Ports) == 2 && st.Ports[0].Ready && st.Ports[1].OFPort == -1
	})
	assert.False(t, st.Ready)
	assert.Equal(t, CausePortNotReady, st.Cause)
	gw0, patch0 := st.Ports[0], st.Ports[1]
	assert.Positive(t, gw0.OFPort)
	assert.Empty(t, gw0.Error)
	assert.Contains(t, patch0.Error, "patch type requires valid 'peer' argument")
	assert.Equal(t, "cannot be opened (ofport -1): "+patch0.Error, patch0.Reason)
	assert.Equal(t, "port patch0: "+patch0.Reason, st.Reason)
	assert.True(t, checkOf(t, st, PortCheck("gw0")).OK)
	assert.False(t, checkOf(t, st, PortCheck("patch0")).OK)

	// Given a peer, it opens; the new instance of nothing is needed: the
	// answering one lists it.
	s.VsctlNoWait("add-port", "br-int", "patch1", "--", "set", "interface", "patch1", "type=patch", "options:peer=patch0",
		"--", "set", "interface", "patch0", "options:peer=patch1")
	st = h.waitFor(10*time.Second, "both ready", ready)
	assert.Positive(t, st.Ports[1].OFPort)

	s.VsctlNoWait("del-port", "br-int", "gw0")
	st = h.waitFor(5*time.Second, "gw0 gone", notReady)
	assert.Equal(t, "port gw0: does not exist in OVSDB", st.Reason)
}

// An interface's ofport survives a restart of ovs-vswitchd, as datapath_id
// does: the instance answering now must list the port itself. Here it is a
// stand-in at the old pid number that answers everything but has opened no
// port; then the real new ovs-vswitchd, which has.
func TestRequiredPortConfirmedByTheNewInstance(t *testing.T) {
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		s := ovstest.StartIn(t, mode, "br-int")
		s.Vsctl("add-port", "br-int", "gw0", "--", "set", "interface", "gw0", "type=internal")
		cfg := sandboxConfig(s, "br-int")
		cfg.RequirePorts = []string{"gw0"}
		cfg.RetryMax = 20 * time.Millisecond
		h := startGate(t, cfg)
		first := h.waitFor(10*time.Second, "ready", ready)
		ofport := first.Ports[0].OFPort
		require.Positive(t, ofport)
		pid := first.VSwitchd.PID

		s.KillVSwitchd()
		socket := filepath.Join(s.RunDir(), fmt.Sprintf("ovs-vswitchd.%d.ctl", pid))
		require.NoError(t, os.Remove(socket))
		t.Run("an instance that has not opened it", func(t *testing.T) {
			unixctltest.Serve(t, socket, func(req request, c *fakeCtl) {
				if req.Method == "dpif/show" {
					c.Reply(req.ID, "netdev@ovs-netdev: hit:0 missed:0\n  br-int:\n    br-int 65534/1: (dummy-internal)\n")
					return
				}
				unixctltest.VSwitchd(req, c)
			})
			st := h.waitFor(5*time.Second, "the new instance's own list", func(st State) bool {
				return st.Restarts == 1 && st.Cause == CausePortNotReady
			})
			assert.Equal(t, ofport, st.Ports[0].OFPort, "OVSDB still shows the old port number")
			assert.Equal(t, fmt.Sprintf("port gw0: ovs-vswitchd (pid %d) has not opened it (yet)", pid), st.Reason)
			assert.True(t, checkOf(t, st, DatapathCheck("br-int")).OK, "the bridge itself is fine")
		})
		s.StartVSwitchd()
		st := h.waitFor(10*time.Second, "ready on the real new instance", readyOnNewInstance(first))
		assert.Equal(t, uint64(2), st.Restarts)
		for _, p := range h.published() {
			if p.Ready {
				assert.True(t, p.VSwitchd.Since.Equal(first.VSwitchd.Since.Time) || p.VSwitchd.Since.Equal(st.VSwitchd.Since.Time),
					"ready on the stand-in, which never opened gw0")
			}
		}
	})
}

// With other_config:dpdk-init=true an ovs-vswitchd without DPDK (this
// build has none) never brings userspace ports up: not ready, and the
// reason says why. With "try" it runs without DPDK on purpose: shown only.
func TestDPDKInit(t *testing.T) {
	for _, tt := range []struct {
		init  string
		ready bool
	}{{"true", false}, {"try", true}} {
		t.Run(tt.init, func(t *testing.T) {
			s := ovstest.New(t)
			s.StartOVSDB()
			s.VsctlNoWait("set", "open", ".", "other_config:dpdk-init="+tt.init)
			s.StartVSwitchd()
			s.AddBridge("br-int")
			h := startGate(t, sandboxConfig(s, "br-int"))
			st := h.waitFor(10*time.Second, "a definite answer", func(st State) bool {
				return st.VSwitchd.DPDK != nil && (st.Ready || st.Cause == CauseDPDKNotInitialized)
			})
			assert.Equal(t, tt.ready, st.Ready, st.Reason)
			assert.Equal(t, DPDKStatus{Init: tt.init, Initialized: false}, *st.VSwitchd.DPDK)
			if !tt.ready {
				assert.Equal(t, fmt.Sprintf("ovs-vswitchd (pid %d) has not initialised DPDK (other_config:dpdk-init=true, dpdk_initialized=false)", s.VSwitchdPID()), st.Reason)
				assert.False(t, checkOf(t, st, CheckVSwitchd).OK)
			}
		})
	}
}

// isSet reports whether flow-restore-wait is known and set.
func isSet(f *bool) bool { return f != nil && *f }
