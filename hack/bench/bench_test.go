package main

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

// The proxy must count what the server sends and nothing the client sends,
// or the scale figures compare the wrong bytes.
func TestCounterCountsServerBytesOnly(t *testing.T) {
	dir := t.TempDir()
	upstream := filepath.Join(dir, "up.sock")
	testutil.ServeUnix(t, upstream, func(conn net.Conn) {
		if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
			return
		}
		_, _ = conn.Write([]byte(strings.Repeat("x", 1000)))
	})

	c, err := newCounter(dir, upstream)
	require.NoError(t, err)
	conn, err := net.Dial("unix", c.path)
	require.NoError(t, err)
	_, err = conn.Write([]byte("a request of some length\n"))
	require.NoError(t, err)
	got, err := io.ReadAll(conn)
	require.NoError(t, err)
	conn.Close()
	c.Close()

	assert.Len(t, got, 1000)
	assert.EqualValues(t, 1000, c.read.Load())
}

// The baseline must really hold every column of every row of the three
// tables, and stop when told to.
func TestMonitorAllHoldsEveryColumn(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	s.Vsctl("add-port", "br-int", "p1", "--", "add-port", "br-int", "p2")

	type seen struct {
		rows            map[string]int
		portColumns     []string
		schemaPortNames []string
	}
	ready := make(chan seen, 1)
	stopR, stopW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- monitorAll(s.DBSocket(), stopR, func(db *allColumns) {
			var v seen
			v.rows = map[string]int{}
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
				v.schemaPortNames = append(v.schemaPortNames, col)
			}
			ready <- v
		})
	}()

	var v seen
	select {
	case v = <-ready:
	case err := <-done:
		t.Fatalf("monitorAll returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("monitorAll was not ready within 10s")
	}
	// br-int's own port and interface, plus p1 and p2.
	assert.Equal(t, map[string]int{"Bridge": 1, "Port": 3, "Interface": 3}, v.rows)
	require.NotEmpty(t, v.schemaPortNames, "schema was not read")
	assert.Subset(t, v.portColumns, v.schemaPortNames, "a Port row lacks schema columns")

	stopW.Close()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("monitorAll did not stop when its stop reader closed")
	}
}

func TestPctAndRatio(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, 50*time.Millisecond, pct(d, 50))
	assert.Equal(t, 99*time.Millisecond, pct(d, 99))
	assert.Equal(t, 100*time.Millisecond, d[0], "pct must not sort its input in place")
	assert.Equal(t, "4.5x", ratio(9*time.Millisecond, 2*time.Millisecond))
	assert.Equal(t, "118x", ratioN(1180, 10))
	assert.Equal(t, "-", ratioN(5, 0))
}
