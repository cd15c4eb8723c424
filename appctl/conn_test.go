package appctl

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/internal/unixctltest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeServer is a unixctl server whose answers the test writes.
type fakeServer struct {
	path string
}

type request = unixctltest.Request

func newFakeServer(t *testing.T, handle unixctltest.Handler) *fakeServer {
	t.Helper()
	return &fakeServer{path: unixctltest.Start(t, handle)}
}

func dial(t *testing.T, s *fakeServer, opts ...Option) *Conn {
	t.Helper()
	c, err := Dial(ctxTimeout(t, 5*time.Second), s.path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitDone fails the test unless c's Done closes within a generous bound.
func waitDone(t *testing.T, c *Conn, what string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("Done not closed: %s", what)
	}
}

func assertOpen(t *testing.T, c *Conn) {
	t.Helper()
	select {
	case <-c.Done():
		t.Fatalf("connection closed: %v", c.Err())
	default:
	}
	assert.NoError(t, c.Err())
}

func TestCallSeveralOnOneConnection(t *testing.T) {
	s := newFakeServer(t, func(req request, c *unixctltest.Conn) {
		c.Send(req.ID, req.Method+"("+strings.Join(req.Params, ",")+")\n", nil)
	})
	type observation struct {
		method string
		d      time.Duration
		err    error
	}
	var (
		mu       sync.Mutex
		observed []observation
	)
	c := dial(t, s, WithObserver(func(m string, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		observed = append(observed, observation{m, d, err})
	}))
	for range 3 {
		out, err := c.Call(ctxTimeout(t, 5*time.Second), "dpif/show-dp-features", "br-int")
		require.NoError(t, err)
		assert.Equal(t, "dpif/show-dp-features(br-int)\n", out)
	}
	out, err := c.Call(ctxTimeout(t, 5*time.Second), "odd", `quote"back\slash`, "ünï\x01\n")
	require.NoError(t, err)
	assert.Equal(t, "odd(quote\"back\\slash,ünï\x01\n)\n", out, "arguments are JSON-escaped")
	out, err = c.Call(context.Background(), "no-deadline")
	require.NoError(t, err)
	assert.Equal(t, "no-deadline()\n", out)
	assertOpen(t, c)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, observed, 5)
	for _, o := range observed {
		assert.NoError(t, o.err)
		assert.Positive(t, o.d)
	}
	assert.Equal(t, "odd", observed[3].method)
}

func TestCallConcurrentIsSerialized(t *testing.T) {
	var inFlight, most int
	var mu sync.Mutex
	s := newFakeServer(t, func(req request, c *unixctltest.Conn) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		inFlight--
		mu.Unlock()
		c.Send(req.ID, req.Params[0], nil)
	})
	c := dial(t, s)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arg := strings.Repeat("x", i)
			out, err := c.Call(ctxTimeout(t, 10*time.Second), "echo", arg)
			assert.NoError(t, err)
			assert.Equal(t, arg, out)
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, most)
	assertOpen(t, c)
}

func TestWaitingForTurnTimesOutWithoutClosing(t *testing.T) {
	release := make(chan struct{})
	slowArrived := make(chan struct{})
	s := newFakeServer(t, func(req request, c *unixctltest.Conn) {
		if req.Method == "slow" {
			close(slowArrived)
			<-release
		}
		c.Send(req.ID, req.Method, nil)
	})
	c := dial(t, s)
	slowDone := make(chan error, 1)
	go func() {
		_, err := c.Call(ctxTimeout(t, 10*time.Second), "slow")
		slowDone <- err
	}()
	<-slowArrived // "slow" holds the turn until its answer
	_, err := c.Call(ctxTimeout(t, 50*time.Millisecond), "quick")
	assert.ErrorIs(t, err, ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assertOpen(t, c)
	close(release)
	require.NoError(t, <-slowDone)
	out, err := c.Call(ctxTimeout(t, 5*time.Second), "after")
	require.NoError(t, err)
	assert.Equal(t, "after", out, "a call that never had its turn leaves the connection usable")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Call(ctx, "never")
	assert.ErrorIs(t, err, context.Canceled)
	assertOpen(t, c)
}

func TestErrorReplies(t *testing.T) {
	// The texts of OVS releases (see the dp-features fixtures' README).
	tests := []struct {
		text string
		is   error
	}{
		{`"dpif/show-dp-features" is not a valid command (use "list-commands" to see a list of valid commands)`, ErrNotRegistered},
		{`"dpif/show-dp-features" is not a valid command`, ErrNotRegistered},
		{"no such bridge\n", ErrNoSuchBridge},
		{"no such bridge", ErrNoSuchBridge},
		{`"dpif/show-dp-features" command requires at least 1 arguments`, nil},
		{`"dpif/show-dp-features" command takes at most 1 arguments`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			s := newFakeServer(t, func(req request, c *unixctltest.Conn) { c.Send(req.ID, nil, tt.text) })
			c := dial(t, s)
			_, err := c.Call(ctxTimeout(t, 5*time.Second), "dpif/show-dp-features", "br-int")
			var se *ServerError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, strings.TrimSpace(tt.text), se.Text)
			assert.Equal(t, "dpif/show-dp-features", se.Method)
			assert.Equal(t, "dpif/show-dp-features: "+strings.TrimSpace(tt.text), err.Error())
			for _, sentinel := range []error{ErrNotRegistered, ErrNoSuchBridge} {
				assert.Equal(t, errors.Is(tt.is, sentinel), errors.Is(err, sentinel), "errors.Is(%v)", sentinel)
			}
			for _, sentinel := range []error{ErrUnreachable, ErrTimeout, ErrMalformed} {
				assert.NotErrorIs(t, err, sentinel)
			}
			_, err = c.DPFeatures(ctxTimeout(t, 5*time.Second), "br-int")
			assert.ErrorAs(t, err, &se, "DPFeatures passes the server's error on")
			assertOpen(t, c)
		})
	}
}

func TestNonStringResult(t *testing.T) {
	// OVS 3.4+ in JSON output mode answers with an object.
	s := newFakeServer(t, func(req request, c *unixctltest.Conn) {
		_, _ = c.Write([]byte(`{"id":` + jsonNumber(req.ID) + `,"error":null,"result":{"reply":"Recirc: Yes\n","reply-format":"plain"}}`))
	})
	c := dial(t, s)
	fs, err := c.DPFeatures(ctxTimeout(t, 5*time.Second), "br-int")
	require.NoError(t, err)
	assert.Equal(t, Features{{"Recirc", true}}, fs)
}

func jsonNumber(id uint64) string {
	b, _ := json.Marshal(id)
	return string(b)
}

func TestBrokenConversations(t *testing.T) {
	tests := []struct {
		name     string
		answer   func(req request, c *unixctltest.Conn)
		opts     []Option
		is       error
		contains string
	}{
		{"garbage", func(_ request, c *unixctltest.Conn) { _, _ = c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")) },
			nil, ErrMalformed, "not a JSON object"},
		{"not JSON inside braces", func(_ request, c *unixctltest.Conn) { _, _ = c.Write([]byte("{id: 1, result: x}")) },
			nil, ErrMalformed, "malformed reply"},
		{"truncated then closed", func(req request, c *unixctltest.Conn) {
			_, _ = c.Write([]byte(`{"id":1,"result":"Recirc: Y`))
			c.Close()
		}, nil, ErrMalformed, "truncated reply"},
		{"wrong id", func(req request, c *unixctltest.Conn) { c.Send(req.ID+7, "x", nil) },
			nil, ErrMalformed, "reply id 8 does not match request id 1"},
		{"string id", func(req request, c *unixctltest.Conn) { _, _ = c.Write([]byte(`{"id":"1","result":"x","error":null}`)) },
			nil, ErrMalformed, "is not a request id"},
		{"no id", func(req request, c *unixctltest.Conn) { _, _ = c.Write([]byte(`{"result":"x","error":null}`)) },
			nil, ErrMalformed, "is not a request id"},
		{"neither result nor error", func(req request, c *unixctltest.Conn) { c.Send(req.ID, nil, nil) },
			nil, ErrMalformed, "neither result nor error"},
		{"a request instead of a reply", func(req request, c *unixctltest.Conn) {
			_, _ = c.Write([]byte(`{"id":1,"method":"echo","params":[]}`))
		}, nil, ErrMalformed, "server sent a request"},
		{"oversized", func(req request, c *unixctltest.Conn) { c.Send(req.ID, strings.Repeat("a", 5000), nil) },
			[]Option{WithMaxReplySize(4096)}, ErrReplyTooLarge, "over 4096 bytes"},
		{"closed without answer", func(_ request, c *unixctltest.Conn) { c.Close() },
			nil, ErrClosed, "connection closed by ovs-vswitchd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t, tt.answer)
			c := dial(t, s, tt.opts...)
			_, err := c.Call(ctxTimeout(t, 5*time.Second), "dpif/show-dp-features", "br-int")
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.is)
			assert.Contains(t, err.Error(), tt.contains)
			waitDone(t, c, "a broken conversation must close the connection")
			assert.ErrorIs(t, c.Err(), tt.is, "Err says why")
			_, err = c.Call(ctxTimeout(t, 5*time.Second), "version")
			assert.ErrorIs(t, err, tt.is, "no call on a closed connection")
		})
	}
}

func TestReplySizeCap(t *testing.T) {
	// {"id":1,"result":"aaa...","error":null} is 35 bytes plus the text.
	const overhead = len(`{"id":1,"result":"","error":null}`)
	for _, tt := range []struct {
		name string
		size int
		ok   bool
	}{
		{"at the cap", 4096, true},
		{"one over", 4097, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t, func(req request, c *unixctltest.Conn) {
				_, _ = c.Write([]byte(`{"id":1,"result":"` + strings.Repeat("a", tt.size-overhead) + `","error":null}`))
			})
			c := dial(t, s, WithMaxReplySize(4096))
			out, err := c.Call(ctxTimeout(t, 5*time.Second), "x")
			if tt.ok {
				require.NoError(t, err)
				assert.Len(t, out, tt.size-overhead)
				return
			}
			assert.ErrorIs(t, err, ErrReplyTooLarge)
			assert.ErrorIs(t, err, ErrMalformed)
		})
	}
}

func TestOversizedDefaultCap(t *testing.T) {
	big := strings.Repeat("x", 17<<20)
	s := newFakeServer(t, func(req request, c *unixctltest.Conn) { c.Send(req.ID, big, nil) })
	c := dial(t, s)
	_, err := c.Call(ctxTimeout(t, 60*time.Second), "version")
	assert.ErrorIs(t, err, ErrReplyTooLarge)
	assert.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "reply too large: over 16777216 bytes")
	waitDone(t, c, "an oversized reply closes the connection")
}

func TestServerThatNeverAnswers(t *testing.T) {
	s := newFakeServer(t, func(request, *unixctltest.Conn) {})
	var observed error
	c := dial(t, s, WithObserver(func(_ string, _ time.Duration, err error) { observed = err }))
	// The deadline ends the call: it returns, after the deadline. How soon
	// after: BenchmarkCallTimeout.
	start := time.Now()
	_, err := c.Call(ctxTimeout(t, 100*time.Millisecond), "version")
	elapsed := time.Since(start)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, "version: timed out", err.Error())
	assert.GreaterOrEqual(t, elapsed, 100*time.Millisecond)
	assert.Equal(t, err, observed, "the observer sees the failure")
	waitDone(t, c, "a timeout closes the connection")
	assert.ErrorIs(t, c.Err(), ErrTimeout)
}

func TestCanceledCall(t *testing.T) {
	arrived := make(chan struct{})
	s := newFakeServer(t, func(request, *unixctltest.Conn) { close(arrived) })
	c := dial(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, "version")
		errc <- err
	}()
	<-arrived
	cancel()
	err := <-errc
	assert.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ErrTimeout, "a cancellation is not a timeout")
	assert.Equal(t, "version: context canceled", err.Error())
	waitDone(t, c, "a call cut short after sending closes the connection")
}

func TestIdleConnectionSeesServerExit(t *testing.T) {
	closeIt := make(chan net.Conn, 1)
	s := newFakeServer(t, func(req request, c *unixctltest.Conn) {
		c.Send(req.ID, "ovs-vswitchd (Open vSwitch) 3.1.0\n", nil)
		closeIt <- c
	})
	c := dial(t, s)
	v, err := c.Version(ctxTimeout(t, 5*time.Second))
	require.NoError(t, err)
	assert.Equal(t, "3.1.0", v)
	assertOpen(t, c)
	(<-closeIt).Close()
	waitDone(t, c, "the server closed an idle connection")
	assert.ErrorIs(t, c.Err(), ErrClosed, "what an exit looks like")
	assert.ErrorIs(t, c.Err(), ErrUnreachable)
	assert.Equal(t, "connection closed by ovs-vswitchd", c.Err().Error())
}

// The kernel names the process on the other end of the connection, in this
// pid namespace: for the fake server, this very process.
func TestPeerPID(t *testing.T) {
	s := newFakeServer(t, func(req request, c *unixctltest.Conn) { c.Send(req.ID, "x", nil) })
	c := dial(t, s)
	assert.Equal(t, os.Getpid(), c.PeerPID())
}

func TestIdleConnectionUnsolicitedReply(t *testing.T) {
	for _, id := range []uint64{0, 1, 5} {
		t.Run(strconv.FormatUint(id, 10), func(t *testing.T) {
			s := newFakeServer(t, func(req request, c *unixctltest.Conn) {
				c.Send(req.ID, "ok", nil)
				c.Send(id, "again", nil)
			})
			c := dial(t, s)
			out, err := c.Call(ctxTimeout(t, 5*time.Second), "version")
			require.NoError(t, err)
			assert.Equal(t, "ok", out)
			waitDone(t, c, "a reply nobody asked for")
			assert.ErrorIs(t, c.Err(), ErrMalformed)
			assert.Contains(t, c.Err().Error(), "unsolicited reply (id "+strconv.FormatUint(id, 10)+")")
		})
	}
}

func TestClose(t *testing.T) {
	s := newFakeServer(t, func(req request, c *unixctltest.Conn) { c.Send(req.ID, "x", nil) })
	c := dial(t, s)
	require.NoError(t, c.Close())
	waitDone(t, c, "Close")
	assert.ErrorIs(t, c.Err(), ErrUnreachable)
	assert.NotErrorIs(t, c.Err(), ErrClosed, "closed by us, not by ovs-vswitchd")
	assert.Contains(t, c.Err().Error(), "connection closed")
	_, err := c.Call(ctxTimeout(t, 5*time.Second), "version")
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.NoError(t, c.Close(), "closing twice is harmless")
	// goleak in TestMain checks that the reader goroutine is gone.
}

func TestDialErrors(t *testing.T) {
	dir := testutil.ShortTempDir(t, "appctl")
	_, err := Dial(ctxTimeout(t, 5*time.Second), filepath.Join(dir, "none.ctl"))
	assert.ErrorIs(t, err, ErrNoSocket)
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Equal(t, "no control socket "+filepath.Join(dir, "none.ctl"), err.Error())

	// A socket file nobody listens on: what a SIGKILLed ovs-vswitchd leaves.
	path := filepath.Join(dir, "stale.ctl")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	_, err = Dial(ctxTimeout(t, 5*time.Second), path)
	assert.ErrorIs(t, err, ErrRefused)
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Equal(t, "control socket refuses connections: "+path, err.Error())

	live := newFakeServer(t, func(request, *unixctltest.Conn) {})
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	_, err = Dial(ctx, live.path)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// BenchmarkCallTimeout measures how long past its deadline (10ms) a call
// to a server that never answers returns (ms-past-deadline).
func BenchmarkCallTimeout(b *testing.B) {
	const deadline = 10 * time.Millisecond
	path := unixctltest.Start(b, func(request, *unixctltest.Conn) {})
	var late time.Duration
	for b.Loop() {
		c, err := Dial(context.Background(), path)
		require.NoError(b, err)
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		_, err = c.Call(ctx, "version")
		late += time.Since(start) - deadline
		cancel()
		require.ErrorIs(b, err, ErrTimeout)
		c.Close()
	}
	b.ReportMetric(float64(late.Microseconds())/1000/float64(b.N), "ms-past-deadline")
}

// permissionSocketsEnv names, for this test binary started again as an
// unprivileged user, the socket it may open and the one it may not.
const permissionSocketsEnv = "APPCTL_TEST_PERMISSION_SOCKETS"

// A control socket the user may not write to is ErrPermission. Root may
// connect to any socket, so as root the test binary runs this test again as
// nobody (uid 65534), where it dials.
func TestDialPermissionDenied(t *testing.T) {
	if env := os.Getenv(permissionSocketsEnv); env != "" {
		open, closed, _ := strings.Cut(env, ":")
		checkPermission(t, open, closed)
		return
	}
	dir := testutil.ShortTempDir(t, "perm")
	open, closed := filepath.Join(dir, "open.ctl"), filepath.Join(dir, "closed.ctl")
	unixctltest.Serve(t, open, unixctltest.VSwitchd)
	unixctltest.Serve(t, closed, unixctltest.VSwitchd)
	require.NoError(t, os.Chmod(open, 0o777))
	require.NoError(t, os.Chmod(closed, 0o700))
	require.NoError(t, os.Chmod(dir, 0o755))
	if os.Geteuid() != 0 {
		checkPermission(t, open, closed)
		return
	}

	// The test binary may sit in a directory only root can read: nobody
	// runs a copy.
	self, err := os.Executable()
	require.NoError(t, err)
	bin := filepath.Join(dir, "appctl.test")
	copyFile(t, self, bin, 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestDialPermissionDenied$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), permissionSocketsEnv+"="+open+":"+closed)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "--- PASS: TestDialPermissionDenied", "%s", out)
}

// checkPermission dials both sockets as a user who may write only to open.
func checkPermission(t *testing.T, open, closed string) {
	t.Helper()
	c, err := Dial(ctxTimeout(t, 5*time.Second), open)
	require.NoError(t, err, "a socket this user may write to")
	defer c.Close()
	_, err = c.Version(ctxTimeout(t, 5*time.Second))
	require.NoError(t, err)

	_, err = Dial(ctxTimeout(t, 5*time.Second), closed)
	assert.ErrorIs(t, err, ErrPermission)
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Equal(t, "permission denied on "+closed, err.Error())
}

// copyFile copies src to a new file dst with mode perm.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

func TestVersion(t *testing.T) {
	tests := []struct {
		answer string
		want   string
		err    error
	}{
		{"ovs-vswitchd (Open vSwitch) 3.1.0\n", "3.1.0", nil},
		{"ovs-vswitchd (Open vSwitch) 2.17.9\nDPDK 21.11.2\n", "2.17.9", nil},
		{"\n", "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			s := newFakeServer(t, func(req request, c *unixctltest.Conn) {
				assert.Equal(t, "version", req.Method)
				assert.Empty(t, req.Params)
				c.Send(req.ID, tt.answer, nil)
			})
			v, err := dial(t, s).Version(ctxTimeout(t, 5*time.Second))
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, v)
		})
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]string{
		"ovs-vswitchd (Open vSwitch) 3.1.0\n":                "3.1.0",
		"ovs-vswitchd (Open vSwitch) 2.17.9\nDPDK 21.11.2\n": "2.17.9",
		"3.4.1":         "3.4.1",
		"a\t3.0.0 \r\n": "3.0.0",
		"\n":            "",
		"":              "",
	} {
		got, err := ParseVersion(in)
		assert.Equal(t, want, got, "%q", in)
		if want == "" {
			assert.ErrorIs(t, err, ErrMalformed, "%q", in)
		} else {
			assert.NoError(t, err, "%q", in)
		}
	}
}
