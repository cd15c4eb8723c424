package gate

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatusJSONShape(t *testing.T) {
	s := Status{
		Reason:   "bridge br-int: waiting for datapath ID",
		Updated:  Timestamp{time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600))},
		OVSDB:    OVSDBStatus{Endpoint: "unix:/var/run/openvswitch/db.sock", Connected: true},
		VSwitchd: VSwitchdStatus{PID: 1234, Version: "3.1.0"},
		Bridges: []BridgeStatus{{Name: "br-int", Reason: "waiting for datapath ID", DatapathType: "netdev",
			Features: map[string]any{"Recirc": true, "Max VLAN headers": int64(2)}}},
		Checks: []Check{{Name: CheckOVSDB, OK: true}},
	}
	b, err := json.Marshal(s)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, "2025-12-31T23:00:00.000000000Z", m["updated"])
	assert.Equal(t, false, m["ready"])
	br := m["bridges"].([]any)[0].(map[string]any)
	assert.Equal(t, "", br["datapathID"])
	assert.Equal(t, "netdev", br["datapathType"])
	assert.Equal(t, map[string]any{"Recirc": true, "Max VLAN headers": float64(2)}, br["features"])
	assert.Equal(t, map[string]any{"name": "ovsdb", "ok": true, "message": ""}, m["checks"].([]any)[0])

	var back Status
	require.NoError(t, json.Unmarshal(b, &back))
	assert.True(t, back.Updated.Equal(s.Updated.Time))
}

func TestStatusEquivalentIgnoresTimestamp(t *testing.T) {
	a := Status{Reason: "x", Updated: Timestamp{time.Now()}, Checks: []Check{{Name: CheckOVSDB}}}
	b := a
	b.Updated = Timestamp{time.Now().Add(time.Second)}
	assert.True(t, a.Equivalent(b))
	b.Checks = []Check{{Name: CheckOVSDB, OK: true}}
	assert.False(t, a.Equivalent(b))
	c, ok := b.Check(CheckOVSDB)
	assert.True(t, ok)
	assert.True(t, c.OK)
}
