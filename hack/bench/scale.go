package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// scaleResult is what one client cost at start against a bridge with a given
// number of ports.
type scaleResult struct {
	bytes  int64         // read from OVSDB until ready
	ready  time.Duration // process start -> ready (median of the runs)
	rssKiB int           // resident set one second after ready
}

// counter is a unix-socket proxy in front of ovsdb-server that counts the
// bytes the server sends, so that both clients are measured the same way.
type counter struct {
	ln   net.Listener
	path string
	read atomic.Int64
	wg   sync.WaitGroup
}

func newCounter(dir, upstream string) (*counter, error) {
	path := filepath.Join(dir, fmt.Sprintf("count%d.sock", time.Now().UnixNano()%1e6))
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	c := &counter{ln: ln, path: path}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", upstream)
			if err != nil {
				down.Close()
				continue
			}
			c.wg.Add(2)
			go func() { defer c.wg.Done(); _, _ = io.Copy(up, down); up.Close() }()
			go func() {
				defer c.wg.Done()
				_, _ = io.Copy(countingWriter{down, &c.read}, up)
				down.Close()
			}()
		}
	}()
	return c, nil
}

// Close stops the proxy once both of its clients' processes are gone.
func (c *counter) Close() {
	c.ln.Close()
	c.wg.Wait()
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (cw countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n.Add(int64(n))
	return n, err
}

// setPorts makes the gated bridge carry exactly n ports named p1..pn. The
// missing ones are written in transactions of 1,000 without waiting for
// ovs-vswitchd (one huge ovs-vsctl command is much slower), then it waits
// until ovs-vswitchd has applied them all.
func (e *env) setPorts(have, n int) error {
	db := "--db=unix:" + filepath.Join(e.dir, "db.sock")
	for have < n {
		args := []string{db, "--no-wait"}
		for i := have + 1; i <= min(have+1000, n); i++ {
			args = append(args, "--", "--may-exist", "add-port", "br-int", "p"+strconv.Itoa(i))
		}
		if err := runFor(2*time.Minute, "ovs-vsctl", args...); err != nil {
			return err
		}
		have = min(have+1000, n)
	}
	// A transaction that changes something makes ovs-vsctl wait until
	// ovs-vswitchd has caught up with every change before it.
	return runFor(10*time.Minute, "ovs-vsctl", db, "--timeout=600",
		"set", "Open_vSwitch", ".", "external_ids:ovsgate-bench-ports="+strconv.Itoa(n))
}

// started is a client process running against the counting proxy.
type started struct {
	pid   int
	ready func() error // blocks until the client is ready
	stop  func()       // ends the client and waits for it
}

// measureStarts starts a client runs times, each behind a new counting
// proxy, and records the bytes it read until ready, the median time from
// start to ready, and its RSS one second after ready.
func (e *env) measureStarts(runs int, start func(sock string) (started, error)) (scaleResult, error) {
	var res scaleResult
	var times []time.Duration
	for i := 0; i < runs; i++ {
		c, err := newCounter(e.dir, filepath.Join(e.dir, "db.sock"))
		if err != nil {
			return res, err
		}
		t0 := time.Now()
		s, err := start(c.path)
		if err != nil {
			c.Close()
			return res, err
		}
		err = s.ready()
		took := time.Since(t0)
		res.bytes = c.read.Load()
		if err == nil {
			time.Sleep(time.Second)
			res.rssKiB = rssOf(s.pid)
		}
		s.stop()
		c.Close()
		if err != nil {
			return res, err
		}
		times = append(times, took)
	}
	res.ready = pct(times, 50)
	return res, nil
}

// scaleOvsgate starts `ovsgate serve` against the counting proxy and times
// it until /readyz answers 200.
func (e *env) scaleOvsgate(runs int) (scaleResult, error) {
	return e.measureStarts(runs, func(sock string) (started, error) {
		probe := freeAddr()
		cmd := exec.Command(e.bin, "serve", "--ovsdb", "unix:"+sock, "--ovs-rundir", e.dir,
			"--status-file", filepath.Join(e.dir, "scale", "status.json"),
			"--health-probe-bind-address", probe, "--metrics-bind-address", "127.0.0.1:0")
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			return started{}, err
		}
		return started{
			pid: cmd.Process.Pid,
			ready: func() error {
				if !pollEvery(time.Millisecond, 60*time.Second, func() bool { return readyAt(probe) }) {
					return errors.New("ovsgate serve never became ready")
				}
				return nil
			},
			stop: func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() },
		}, nil
	})
}

// scaleAllColumns starts this program as a client that monitors every
// column of Bridge, Port and Interface, and times it until it holds the
// initial contents of those tables.
func (e *env) scaleAllColumns(runs int) (scaleResult, error) {
	self, err := os.Executable()
	if err != nil {
		return scaleResult{}, err
	}
	return e.measureStarts(runs, func(sock string) (started, error) {
		cmd := exec.Command(self, "-monitor-all", sock)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return started{}, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return started{}, err
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return started{}, err
		}
		return started{
			pid: cmd.Process.Pid,
			ready: func() error {
				line, err := bufio.NewReader(stdout).ReadString('\n')
				if err != nil || line != "ready\n" {
					return fmt.Errorf("all-columns client: %q: %w", line, err)
				}
				return nil
			},
			stop: func() { stdin.Close(); _ = cmd.Wait() },
		}, nil
	})
}

// allColumns is what the all-columns client holds: the schema and every
// row of the monitored tables, as decoded JSON.
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

	enc := json.NewEncoder(conn)
	all := map[string]any{}
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
			if err := enc.Encode(map[string]any{"id": msg.ID, "result": msg.Params, "error": nil}); err != nil {
				return err
			}
		case msg.Method == "update" && len(msg.Params) == 2:
			if err := apply(msg.Params[1]); err != nil {
				return err
			}
		case string(msg.ID) == "0":
			if err := json.Unmarshal(msg.Result, &db.schema); err != nil {
				return err
			}
		case string(msg.ID) == "1":
			if err := apply(msg.Result); err != nil {
				return err
			}
			ready(db)
		}
	}
}

func rssOf(pid int) int { return procKiB(pid, "status")["VmRSS"] }

// appctlWall is the median wall time of one dpif/show-dp-features exec: with
// many ports ovs-vswitchd answers every unixctl call more slowly, and ready
// can come no sooner than its answers.
func (e *env) appctlWall(runs int) time.Duration {
	var times []time.Duration
	for i := 0; i < runs; i++ {
		start := time.Now()
		if exec.Command("ovs-appctl", "-t", ctlSocket(e.dir), "dpif/show-dp-features", "br-int").Run() != nil {
			continue
		}
		times = append(times, time.Since(start))
	}
	if len(times) == 0 {
		return 0
	}
	return pct(times, 50)
}
