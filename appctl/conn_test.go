package appctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeServer is a unixctl server whose answers the test writes. handle gets
// each decoded request and the raw connection to answer on.
type fakeServer struct {
	path string
	ln   net.Listener
	wg   sync.WaitGroup
}

type request struct {
	ID     uint64   `json:"id"`
	Method string   `json:"method"`
	Params []string `json:"params"`
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "appctl")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newFakeServer(t *testing.T, handle func(req request, c net.Conn)) *fakeServer {
	t.Helper()
	s := &fakeServer{path: filepath.Join(shortTempDir(t), "fake.ctl")}
	var err error
	s.ln, err = net.Listen("unix", s.path)
	require.NoError(t, err)
	var conns sync.Map
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				dec := json.NewDecoder(bufio.NewReader(c))
				for {
					var req request
					if err := dec.Decode(&req); err != nil {
						return
					}
					handle(req, c)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		s.wg.Wait()
	})
	return s
}

func reply(c net.Conn, id uint64, result, errText any) {
	b, _ := json.Marshal(map[string]any{"id": id, "result": result, "error": errText})
	_, _ = c.Write(b)
}

func dial(t *testing.T, s *fakeServer, opts ...Option) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, s.path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestCallSeveralOnOneConnection(t *testing.T) {
	s := newFakeServer(t, func(req request, c net.Conn) {
		reply(c, req.ID, req.Method+"("+strings.Join(req.Params, ",")+")\n", nil)
	})
	var observed []string
	var mu sync.Mutex
	c := dial(t, s, WithObserver(func(m string, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		observed = append(observed, m)
		assert.NoError(t, err)
		assert.Positive(t, d)
	}))
	for i := 0; i < 3; i++ {
		out, err := c.Call(ctxTimeout(t, time.Second), "dpif/show-dp-features", "br-int")
		require.NoError(t, err)
		assert.Equal(t, "dpif/show-dp-features(br-int)\n", out)
	}
	out, err := c.Call(ctxTimeout(t, time.Second), "odd", `quote"back\slash`, "ünï\x01")
	require.NoError(t, err)
	assert.Equal(t, "odd(quote\"back\\slash,ünï\x01)\n", out, "arguments are JSON-escaped")
	assert.Len(t, observed, 4)
}

func TestCallConcurrentIsSerialized(t *testing.T) {
	s := newFakeServer(t, func(req request, c net.Conn) { reply(c, req.ID, req.Params[0], nil) })
	c := dial(t, s)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arg := strings.Repeat("x", i)
			out, err := c.Call(ctxTimeout(t, 5*time.Second), "echo", arg)
			assert.NoError(t, err)
			assert.Equal(t, arg, out)
		}()
	}
	wg.Wait()
}

func TestErrorReplies(t *testing.T) {
	tests := []struct {
		text string
		is   error
	}{
		{`"dpif/show-dp-features" is not a valid command (use "list-commands" to see a list of valid commands)`, ErrNotRegistered},
		{`"dpif/show-dp-features" is not a valid command`, ErrNotRegistered},
		{"no such bridge\n", ErrNoSuchBridge},
		{`"dpif/show-dp-features" command requires at least 1 arguments`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			s := newFakeServer(t, func(req request, c net.Conn) { reply(c, req.ID, nil, tt.text) })
			c := dial(t, s)
			_, err := c.Call(ctxTimeout(t, time.Second), "dpif/show-dp-features", "br-int")
			var se *ServerError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, strings.TrimSpace(tt.text), se.Text)
			assert.Equal(t, "dpif/show-dp-features", se.Method)
			for _, sentinel := range []error{ErrNotRegistered, ErrNoSuchBridge} {
				assert.Equal(t, sentinel == tt.is, errors.Is(err, sentinel), "errors.Is(%v)", sentinel)
			}
			assert.False(t, errors.Is(err, ErrUnreachable))
			select {
			case <-c.Done():
				t.Fatal("an error reply must not close the connection")
			default:
			}
		})
	}
}

func TestHostileServers(t *testing.T) {
	tests := []struct {
		name   string
		answer func(req request, c net.Conn)
		opts   []Option
		is     error
	}{
		{"garbage", func(_ request, c net.Conn) { _, _ = c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")) }, nil, ErrMalformed},
		{"not json inside braces", func(_ request, c net.Conn) { _, _ = c.Write([]byte("{id: 1, result: x}")) }, nil, ErrMalformed},
		{"truncated then closed", func(req request, c net.Conn) {
			_, _ = c.Write([]byte(`{"id":1,"result":"Recirc: Y`))
			c.Close()
		}, nil, ErrMalformed},
		{"wrong id", func(req request, c net.Conn) { reply(c, req.ID+7, "x", nil) }, nil, ErrMalformed},
		{"string id", func(req request, c net.Conn) { _, _ = c.Write([]byte(`{"id":"1","result":"x","error":null}`)) }, nil, ErrMalformed},
		{"neither result nor error", func(req request, c net.Conn) { reply(c, req.ID, nil, nil) }, nil, ErrMalformed},
		{"a request instead of a reply", func(req request, c net.Conn) {
			_, _ = c.Write([]byte(`{"id":1,"method":"echo","params":[]}`))
		}, nil, ErrMalformed},
		{"oversized", func(req request, c net.Conn) { reply(c, req.ID, strings.Repeat("a", 5000), nil) },
			[]Option{WithMaxReplySize(4096)}, ErrReplyTooLarge},
		{"closed without answer", func(_ request, c net.Conn) { c.Close() }, nil, ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t, tt.answer)
			c := dial(t, s, tt.opts...)
			_, err := c.Call(ctxTimeout(t, 5*time.Second), "dpif/show-dp-features", "br-int")
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.is)
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("a broken conversation must close the connection")
			}
			_, err = c.Call(ctxTimeout(t, time.Second), "version")
			assert.Error(t, err, "no call on a closed connection")
		})
	}
}

func TestOversizedDefaultCap(t *testing.T) {
	big := strings.Repeat("x", 17<<20)
	s := newFakeServer(t, func(req request, c net.Conn) { reply(c, req.ID, big, nil) })
	c := dial(t, s)
	_, err := c.Call(ctxTimeout(t, 20*time.Second), "version")
	assert.ErrorIs(t, err, ErrReplyTooLarge)
	assert.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "reply too large")
}

func TestServerThatNeverAnswers(t *testing.T) {
	s := newFakeServer(t, func(request, net.Conn) {})
	c := dial(t, s)
	start := time.Now()
	_, err := c.Call(ctxTimeout(t, 100*time.Millisecond), "version")
	elapsed := time.Since(start)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, elapsed, 2*time.Second, "the deadline bounds the call")
	<-c.Done()
	assert.ErrorIs(t, c.Err(), ErrTimeout)
}

func TestIdleConnectionSeesServerExit(t *testing.T) {
	closeIt := make(chan net.Conn, 1)
	s := newFakeServer(t, func(req request, c net.Conn) {
		reply(c, req.ID, "ovs-vswitchd (Open vSwitch) 3.1.0\n", nil)
		closeIt <- c
	})
	c := dial(t, s)
	v, err := c.Version(ctxTimeout(t, time.Second))
	require.NoError(t, err)
	assert.Equal(t, "3.1.0", v)
	assert.NoError(t, c.Err())
	(<-closeIt).Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the server closed an idle connection")
	}
	assert.ErrorIs(t, c.Err(), ErrUnreachable)
	assert.Contains(t, c.Err().Error(), "server closed the connection")
}

func TestDialErrors(t *testing.T) {
	dir := shortTempDir(t)
	_, err := Dial(ctxTimeout(t, time.Second), filepath.Join(dir, "none.ctl"))
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Contains(t, err.Error(), "no control socket")

	// A socket file nobody listens on: what a SIGKILLed ovs-vswitchd leaves.
	path := filepath.Join(dir, "stale.ctl")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	_, err = Dial(ctxTimeout(t, time.Second), path)
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Contains(t, err.Error(), "refuses connections")
}

func TestDiscover(t *testing.T) {
	dir := shortTempDir(t)
	_, err := Discover(dir)
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Contains(t, err.Error(), "no pidfile")

	pidfile := filepath.Join(dir, "ovs-vswitchd.pid")
	require.NoError(t, os.WriteFile(pidfile, []byte("not a pid\n"), 0o644))
	_, err = Discover(dir)
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Contains(t, err.Error(), `holds "not a pid"`)

	require.NoError(t, os.WriteFile(pidfile, []byte("-3\n"), 0o644))
	_, err = Discover(dir)
	assert.ErrorIs(t, err, ErrUnreachable)

	require.NoError(t, os.WriteFile(pidfile, []byte("4242\n"), 0o644))
	_, err = Discover(dir)
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Contains(t, err.Error(), "pid 4242 has no control socket")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "ovs-vswitchd.4242.ctl"), nil, 0o644))
	_, err = Discover(dir)
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Contains(t, err.Error(), "is not a socket")

	require.NoError(t, os.Remove(filepath.Join(dir, "ovs-vswitchd.4242.ctl")))
	ln, err := net.Listen("unix", filepath.Join(dir, "ovs-vswitchd.4242.ctl"))
	require.NoError(t, err)
	defer ln.Close()
	target, err := Discover(dir)
	require.NoError(t, err)
	assert.Equal(t, Target{PID: 4242, Socket: filepath.Join(dir, "ovs-vswitchd.4242.ctl")}, target)
}

func TestParseVersion(t *testing.T) {
	assert.Equal(t, "3.1.0", parseVersion("ovs-vswitchd (Open vSwitch) 3.1.0\n"))
	assert.Equal(t, "2.17.9", parseVersion("ovs-vswitchd (Open vSwitch) 2.17.9\nDPDK 21.11.2\n"))
	assert.Equal(t, "", parseVersion("\n"))
}
