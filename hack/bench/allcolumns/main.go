// Command allcolumns is the generic OVSDB client the benchmarks compare
// ovsgate with: it reads the schema, monitors every column of Bridge, Port
// and Interface, and keeps the rows as decoded JSON, as a client with full
// table models does. It prints "ready" once it holds the tables, and keeps
// applying updates until its stdin closes.
//
// usage: allcolumns SOCKET
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: allcolumns SOCKET")
		os.Exit(2)
	}
	if err := monitorAll(os.Args[1], os.Stdin, func(*allColumns) { fmt.Println("ready") }); err != nil {
		fmt.Fprintln(os.Stderr, "allcolumns:", err)
		os.Exit(1)
	}
}

// allColumns is what the all-columns client holds: the schema and every row
// of the monitored tables, as decoded JSON.
type allColumns struct {
	schema map[string]any
	rows   map[string]map[string]map[string]any // table -> uuid -> column -> value
}

// monitorAll is the all-columns baseline, run as a child process: it reads
// the schema like any generic OVSDB client, monitors Bridge, Port and
// Interface with every column, keeps the rows as decoded JSON, calls ready
// once it holds them, and keeps applying updates until stop reaches EOF.
func monitorAll(sock string, stop io.Reader, ready func(*allColumns)) error {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer conn.Close()
	go func() { _, _ = io.Copy(io.Discard, stop); conn.Close() }()

	enc, all := json.NewEncoder(conn), map[string]any{}
	if err := enc.Encode(map[string]any{"id": 0, "method": "get_schema", "params": []any{"Open_vSwitch"}}); err != nil {
		return err
	}
	if err := enc.Encode(map[string]any{"id": 1, "method": "monitor",
		"params": []any{"Open_vSwitch", nil, map[string]any{"Bridge": all, "Port": all, "Interface": all}}}); err != nil {
		return err
	}
	db := &allColumns{rows: map[string]map[string]map[string]any{}}
	apply := func(raw json.RawMessage) error {
		var updates map[string]map[string]struct {
			New map[string]any `json:"new"`
		}
		if err := json.Unmarshal(raw, &updates); err != nil {
			return err
		}
		for table, rows := range updates {
			if db.rows[table] == nil {
				db.rows[table] = map[string]map[string]any{}
			}
			for uuid, u := range rows {
				if u.New == nil {
					delete(db.rows[table], uuid)
				} else {
					db.rows[table][uuid] = u.New
				}
			}
		}
		return nil
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var msg struct {
			ID     json.RawMessage   `json:"id"`
			Method string            `json:"method"`
			Params []json.RawMessage `json:"params"`
			Result json.RawMessage   `json:"result"`
			Error  any               `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		switch {
		case msg.Error != nil:
			return fmt.Errorf("ovsdb error: %v", msg.Error)
		case msg.Method == "echo":
			err = enc.Encode(map[string]any{"id": msg.ID, "result": msg.Params, "error": nil})
		case msg.Method == "update" && len(msg.Params) == 2:
			err = apply(msg.Params[1])
		case string(msg.ID) == "0":
			err = json.Unmarshal(msg.Result, &db.schema)
		case string(msg.ID) == "1":
			if err = apply(msg.Result); err == nil {
				ready(db)
			}
		}
		if err != nil {
			return err
		}
	}
}
