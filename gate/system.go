package gate

import (
	"strings"

	"github.com/ovsgate/ovsgate/ovsdb"
)

// flag is a yes/no setting of the Open_vSwitch row that may not have been
// read: while OVSDB is away it is unknown, not off.
type flag uint8

const (
	flagUnknown flag = iota
	flagOff
	flagOn
)

// system is the Open_vSwitch row as ovs-vswitchd reads it.
type system struct {
	// flowRestoreWait is other_config:flow-restore-wait: while on,
	// ovs-vswitchd neither forwards nor flushes datapath flows.
	flowRestoreWait flag
	// flowRestoreWaitBy names who manages that flag where a key says so;
	// "" otherwise.
	flowRestoreWaitBy string
	dpdkInit          string // other_config:dpdk-init: "true", "try", or "" (off or unknown)
	dpdkInitialized   bool
}

// flowRestoreOwnerKeys mark who manages flow-restore-wait, where a manager
// says so: ovn-controller sets this one when it sets the flag itself.
var flowRestoreOwnerKeys = map[string]string{"ovn-managed-flow-restore-wait": "ovn-controller"}

// readSystem reads the row's keys as ovs-vswitchd does: "true" and "try" in
// any case.
func readSystem(row ovsdb.SystemInfo) system {
	if !row.Known {
		return system{}
	}
	s := system{flowRestoreWait: flagOff, dpdkInitialized: row.DPDKInitialized}
	if strings.EqualFold(row.OtherConfig["flow-restore-wait"], "true") {
		s.flowRestoreWait = flagOn
	}
	switch v := strings.ToLower(row.OtherConfig["dpdk-init"]); v {
	case "true", "try":
		s.dpdkInit = v
	}
	for key, owner := range flowRestoreOwnerKeys {
		if strings.EqualFold(row.ExternalIDs[key], "true") || strings.EqualFold(row.OtherConfig[key], "true") {
			s.flowRestoreWaitBy = owner
		}
	}
	return s
}
