package ovsdb

import (
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

const (
	database    = "Open_vSwitch"
	bridgeTable = "Bridge"
)

// bridge holds only the Bridge columns the gate reads. Bridge.ports in
// particular is left out: it holds one UUID per port.
type bridge struct {
	UUID         string  `ovsdb:"_uuid"`
	Name         string  `ovsdb:"name"`
	DatapathID   *string `ovsdb:"datapath_id"` // optional: min 0, max 1
	DatapathType string  `ovsdb:"datapath_type"`
}

func newClientDBModel() (model.ClientDBModel, error) {
	return model.NewClientDBModel(database, map[string]model.Model{bridgeTable: &bridge{}})
}

// newMonitor asks for the modelled columns of the named bridges' rows and
// nothing else, so other bridges and Bridge.ports are never sent. The server
// ORs the clauses of a monitor_cond condition.
func newMonitor(c client.Client, names []string) *client.Monitor {
	b := &bridge{}
	conds := make([]model.Condition, 0, len(names))
	for _, name := range names {
		conds = append(conds, model.Condition{Field: &b.Name, Function: ovsdb.ConditionEqual, Value: name})
	}
	m := c.NewMonitor(client.WithConditionalTable(b, conds, &b.Name, &b.DatapathID, &b.DatapathType))
	// monitor_cond, not the default monitor_cond_since: on the latter libovsdb
	// swallows cache errors.
	m.Method = ovsdb.ConditionalMonitorRPC
	return m
}
