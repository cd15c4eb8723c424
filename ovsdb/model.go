package ovsdb

import (
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

const (
	database       = "Open_vSwitch"
	bridgeTable    = "Bridge"
	systemTable    = "Open_vSwitch"
	interfaceTable = "Interface"
)

// bridge holds only the Bridge columns the gate reads. Bridge.ports in
// particular is left out: it holds one UUID per port.
type bridge struct {
	UUID         string  `ovsdb:"_uuid"`
	Name         string  `ovsdb:"name"`
	DatapathID   *string `ovsdb:"datapath_id"` // optional: min 0, max 1
	DatapathType string  `ovsdb:"datapath_type"`
}

// system is the one Open_vSwitch row, with the columns that say whether
// ovs-vswitchd forwards: flow-restore-wait and DPDK's state. Its bridges,
// manager options and statistics are left out.
type system struct {
	UUID            string            `ovsdb:"_uuid"`
	OtherConfig     map[string]string `ovsdb:"other_config"`
	ExternalIDs     map[string]string `ovsdb:"external_ids"`
	DPDKInitialized bool              `ovsdb:"dpdk_initialized"`
}

// iface is an Interface row: only those of required ports are monitored.
type iface struct {
	UUID   string  `ovsdb:"_uuid"`
	Name   string  `ovsdb:"name"`
	OFPort *int    `ovsdb:"ofport"` // optional: unset until ovs-vswitchd assigns one
	Error  *string `ovsdb:"error"`  // optional
}

func newClientDBModel() (model.ClientDBModel, error) {
	return model.NewClientDBModel(database, map[string]model.Model{
		bridgeTable: &bridge{}, systemTable: &system{}, interfaceTable: &iface{},
	})
}

// newMonitor asks for the modelled columns of the named bridges' rows, of
// the Open_vSwitch row, and of the named interfaces' rows, and nothing else:
// other bridges, other ports, Bridge.ports and statistics are never sent,
// so what is read stays the same however many ports there are. The server
// ORs the clauses of a monitor_cond condition.
func newMonitor(c client.Client, bridges, ports []string) *client.Monitor {
	b := &bridge{}
	bconds := make([]model.Condition, 0, len(bridges))
	for _, name := range bridges {
		bconds = append(bconds, model.Condition{Field: &b.Name, Function: ovsdb.ConditionEqual, Value: name})
	}
	sys := &system{}
	opts := []client.MonitorOption{
		client.WithConditionalTable(b, bconds, &b.Name, &b.DatapathID, &b.DatapathType),
		client.WithTable(sys, &sys.OtherConfig, &sys.ExternalIDs, &sys.DPDKInitialized),
	}
	if len(ports) > 0 {
		i := &iface{}
		iconds := make([]model.Condition, 0, len(ports))
		for _, name := range ports {
			iconds = append(iconds, model.Condition{Field: &i.Name, Function: ovsdb.ConditionEqual, Value: name})
		}
		opts = append(opts, client.WithConditionalTable(i, iconds, &i.Name, &i.OFPort, &i.Error))
	}
	m := c.NewMonitor(opts...)
	// monitor_cond, not the default monitor_cond_since: on the latter libovsdb
	// swallows cache errors.
	m.Method = ovsdb.ConditionalMonitorRPC
	return m
}
