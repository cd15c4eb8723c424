package gate

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatusJSONShape(t *testing.T) {
	s := Status{
		Reason:   "bridge br-int: waiting for datapath ID",
		Updated:  Timestamp{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600))},
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
	a := State{Status: Status{Reason: "x", Updated: Timestamp{Time: time.Now()}, Checks: []Check{{Name: CheckOVSDB}}}}
	b := a
	b.Updated = Timestamp{Time: time.Now().Add(time.Second)}
	assert.True(t, a.Equivalent(b))
	b.Checks = []Check{{Name: CheckOVSDB, OK: true}}
	assert.False(t, a.Equivalent(b))
	c, ok := b.Check(CheckOVSDB)
	assert.True(t, ok)
	assert.True(t, c.OK)
}

// A subscription is a mailbox of one slot: the gate never waits for a slow
// reader, which finds the latest state and none of the ones in between.
// Once settled, the gate stays settled.
func TestSubscribeLatestWins(t *testing.T) {
	g, err := New(Config{OVSDB: "unix:/nonexistent/db.sock", RunDir: t.TempDir(), Bridges: []string{"br-int"}})
	require.NoError(t, err)
	sub := g.Subscribe()
	assert.Equal(t, "starting", (<-sub).Reason, "the current state at once")
	for i := range 100 {
		g.publish(State{Status: Status{Reason: fmt.Sprint(i)}, Settled: i == 50})
	}
	got := <-sub
	assert.Equal(t, "99", got.Reason)
	assert.True(t, got.Settled, "settled at 50, and since")
	select {
	case s := <-sub:
		t.Fatalf("a second state waited in the mailbox: %q", s.Reason)
	default:
	}
	assert.Equal(t, got.Reason, g.State().Reason)
}

// /livez fails once the loop stops, or when it makes no progress.
func TestAlive(t *testing.T) {
	g, err := New(Config{OVSDB: "unix:/nonexistent/db.sock", RunDir: t.TempDir(), Bridges: []string{"br-int"}})
	require.NoError(t, err)
	assert.NoError(t, g.Alive(time.Minute), "alive before Run")
	g.progress.Store(time.Now().Add(-time.Hour).UnixNano())
	err = g.Alive(time.Minute)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "gate loop made no progress for 1h0m0s")
	g.stopped.Store(true)
	assert.EqualError(t, g.Alive(time.Minute), "gate loop has stopped")
}
