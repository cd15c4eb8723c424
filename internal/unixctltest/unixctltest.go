// Package unixctltest serves fake ovs-vswitchd control sockets for tests:
// typed requests in, whatever answers (or faults) the test chooses out.
package unixctltest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

// VersionText is what ovs-vswitchd 3.1.0 answers to "version".
const VersionText = "ovs-vswitchd (Open vSwitch) 3.1.0\n"

// FeaturesText is a short dpif/show-dp-features answer.
const FeaturesText = "Recirc: Yes\n"

// Request is one unixctl request as ovs-vswitchd receives it.
type Request struct {
	ID     uint64   `json:"id"`
	Method string   `json:"method"`
	Params []string `json:"params"`
}

// Handler answers one request on c. Requests of one connection reach it in
// order, one at a time; it may answer later, or never.
type Handler func(req Request, c *Conn)

// Conn is one client connection to a fake server.
type Conn struct {
	net.Conn
	done <-chan struct{}
	// Held is the handler's own per-connection memory (requests it has not
	// answered yet, for instance).
	Held []Request
}

// Done is closed when the test ends: a handler that waits must give up then.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Reply answers id with a result text, as ovs-vswitchd does: no newline
// after the object.
func (c *Conn) Reply(id uint64, result string) { c.Send(id, result, nil) }

// Error answers id with an error text.
func (c *Conn) Error(id uint64, text string) { c.Send(id, nil, text) }

// Send writes a reply with any result and error values.
func (c *Conn) Send(id uint64, result, errText any) {
	b, err := json.Marshal(map[string]any{"id": id, "result": result, "error": errText})
	if err != nil {
		panic(err)
	}
	_, _ = c.Write(b)
}

// Raw writes bytes as they are.
func (c *Conn) Raw(s string) { _, _ = c.Write([]byte(s)) }

// NotValid answers as ovs-vswitchd does for a command it has not
// registered (yet).
func (c *Conn) NotValid(req Request) {
	c.Error(req.ID, fmt.Sprintf("%q is not a valid command (use \"list-commands\" to see a list of valid commands)", req.Method))
}

// Serve listens on a unix socket at path and runs h for the requests of
// every connection, until the test ends: then it stops listening, closes
// every connection and waits for its goroutines.
func Serve(t testing.TB, path string, h Handler) {
	t.Helper()
	done := make(chan struct{})
	testutil.ServeUnix(t, path, func(nc net.Conn) {
		c := &Conn{Conn: nc, done: done}
		dec := json.NewDecoder(bufio.NewReader(nc))
		for {
			var req Request
			if err := dec.Decode(&req); err != nil {
				return
			}
			h(req, c)
		}
	})
	// Registered after ServeUnix's cleanup, so it runs before it: handlers
	// waiting on Done return, and ServeUnix's wait for them can end.
	t.Cleanup(func() { close(done) })
}

// Start serves h on a socket in a new short temporary directory and returns
// the socket's path.
func Start(t testing.TB, h Handler) string {
	t.Helper()
	path := filepath.Join(testutil.ShortTempDir(t, "uctl"), "fake.ctl")
	Serve(t, path, h)
	return path
}

// RunDir makes an ovs-vswitchd run directory whose pidfile names pid and
// whose control socket serves h; with a nil h there is no socket.
func RunDir(t testing.TB, pid int, h Handler) string {
	t.Helper()
	dir := testutil.ShortTempDir(t, "fakevs")
	if err := os.WriteFile(filepath.Join(dir, "ovs-vswitchd.pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h != nil {
		Serve(t, filepath.Join(dir, fmt.Sprintf("ovs-vswitchd.%d.ctl", pid)), h)
	}
	return dir
}

// VSwitchd answers like a configured ovs-vswitchd: the version, and
// FeaturesText for dpif/show-dp-features of any bridge.
func VSwitchd(req Request, c *Conn) {
	switch req.Method {
	case "version":
		c.Reply(req.ID, VersionText)
	case "dpif/show-dp-features":
		c.Reply(req.ID, FeaturesText)
	default:
		c.NotValid(req)
	}
}

// VersionThen answers "version" like ovs-vswitchd and hands every other
// request to next.
func VersionThen(next Handler) Handler {
	return func(req Request, c *Conn) {
		if req.Method == "version" {
			c.Reply(req.ID, VersionText)
			return
		}
		next(req, c)
	}
}
