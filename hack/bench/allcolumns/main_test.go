package main

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/ovstest"
)

// The baseline must really hold every column of every row of the three
// tables, and stop when told to.
func TestMonitorAllHoldsEveryColumn(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	s.Vsctl("add-port", "br-int", "p1", "--", "add-port", "br-int", "p2")

	type seen struct {
		rows                           map[string]int
		portColumns, schemaPortColumns []string
	}
	ready := make(chan seen, 1)
	stopR, stopW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- monitorAll(s.DBSocket(), stopR, func(db *allColumns) {
			v := seen{rows: map[string]int{}}
			for table, rows := range db.rows {
				v.rows[table] = len(rows)
			}
			for _, row := range db.rows["Port"] {
				for col := range row {
					v.portColumns = append(v.portColumns, col)
				}
				break
			}
			tables, _ := db.schema["tables"].(map[string]any)
			port, _ := tables["Port"].(map[string]any)
			cols, _ := port["columns"].(map[string]any)
			for col := range cols {
				v.schemaPortColumns = append(v.schemaPortColumns, col)
			}
			ready <- v
		})
	}()
	defer func() {
		stopW.Close()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("monitorAll did not stop when its stop reader closed")
		}
	}()

	var v seen
	select {
	case v = <-ready:
	case err := <-done:
		done <- err // for the deferred check
		require.Failf(t, "monitorAll returned before ready", "%v", err)
	case <-time.After(10 * time.Second):
		require.Fail(t, "monitorAll was not ready within 10s")
	}
	// br-int's own port and interface, plus p1 and p2.
	assert.Equal(t, map[string]int{"Bridge": 1, "Port": 3, "Interface": 3}, v.rows)
	require.NotEmpty(t, v.schemaPortColumns, "schema was not read")
	assert.Subset(t, v.portColumns, v.schemaPortColumns, "a Port row lacks schema columns")
}
