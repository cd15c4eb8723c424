package probe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ovsgate/ovsgate/gate"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func status(ready bool) gate.Status {
	s := gate.Status{
		Ready:    ready,
		OVSDB:    gate.OVSDBStatus{Endpoint: "unix:/run/db.sock", Connected: true},
		VSwitchd: gate.VSwitchdStatus{PID: 42, Version: "3.1.0"},
		Bridges:  []gate.BridgeStatus{{Name: "br-int", Ready: ready, DatapathType: "netdev", Features: map[string]any{"Recirc": true}}},
		Checks: []gate.Check{
			{Name: "ovsdb", OK: true},
			{Name: "vswitchd", OK: true},
			{Name: "datapath/br-int", OK: ready},
			{Name: "features/br-int", OK: ready},
		},
	}
	if !ready {
		s.Reason = "bridge br-int: waiting for datapath ID"
		s.Bridges[0].Reason = "waiting for datapath ID"
		s.Checks[2].Message = "waiting for datapath ID"
		s.Checks[3].Message = "datapath not ready"
	}
	return s
}

func do(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

const notReadyList = "[+]ovsdb ok\n[+]vswitchd ok\n[-]datapath/br-int failed: waiting for datapath ID\n" +
	"[-]features/br-int failed: datapath not ready\nreadyz check failed\n"

func TestProbeEndpoints(t *testing.T) {
	p := NewProbe(nil)
	tests := []struct {
		state      string
		target     string
		code       int
		body       string
		beforeInit bool
	}{
		{state: "starting", target: "/readyz", code: 503, body: "[-]gate failed: starting\nreadyz check failed\n"},
		{state: "starting", target: "/livez", code: 200, body: "ok\n"},
		{state: "ready", target: "/readyz", code: 200, body: "ok\n"},
		{state: "ready", target: "/readyz?verbose", code: 200, body: "[+]ovsdb ok\n[+]vswitchd ok\n[+]datapath/br-int ok\n[+]features/br-int ok\nreadyz check passed\n"},
		{state: "ready", target: "/readyz/datapath/br-int", code: 200, body: "ok\n"},
		{state: "ready", target: "/readyz/ovsdb", code: 200, body: "ok\n"},
		{state: "ready", target: "/readyz/nope", code: 404, body: "no check named nope\n"},
		{state: "ready", target: "/livez", code: 200, body: "ok\n"},
		{state: "ready", target: "/healthz", code: 200, body: "ok\n"},
		{state: "not ready", target: "/readyz", code: 503, body: notReadyList},
		{state: "not ready", target: "/readyz?verbose", code: 503, body: notReadyList},
		{state: "not ready", target: "/readyz?verbose=1", code: 503, body: notReadyList},
		{state: "not ready", target: "/readyz/datapath/br-int", code: 503, body: "[-]datapath/br-int failed: waiting for datapath ID\n"},
		{state: "not ready", target: "/readyz/vswitchd", code: 200, body: "ok\n"},
		{state: "not ready", target: "/readyz?exclude=datapath/br-int&exclude=features/br-int", code: 200, body: "ok\n"},
		{state: "not ready", target: "/readyz?verbose&exclude=datapath/br-int&exclude=features/br-int", code: 200,
			body: "[+]ovsdb ok\n[+]vswitchd ok\n[+]datapath/br-int excluded: ok\n[+]features/br-int excluded: ok\nreadyz check passed\n"},
		{state: "not ready", target: "/readyz?exclude=datapath/br-int", code: 503,
			body: "[+]ovsdb ok\n[+]vswitchd ok\n[+]datapath/br-int excluded: ok\n[-]features/br-int failed: datapath not ready\nreadyz check failed\n"},
		{state: "not ready", target: "/livez", code: 200, body: "ok\n"},
		{state: "not ready", target: "/nothing", code: 404},
	}
	for _, tt := range tests {
		t.Run(tt.state+" "+tt.target, func(t *testing.T) {
			switch tt.state {
			case "ready":
				p.Update(status(true))
			case "not ready":
				p.Update(status(false))
			}
			rec := do(t, p, http.MethodGet, tt.target)
			assert.Equal(t, tt.code, rec.Code)
			if tt.body != "" {
				assert.Equal(t, tt.body, rec.Body.String())
				assert.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
				assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
			}
		})
	}
}

func TestProbeStatusJSON(t *testing.T) {
	p := NewProbe(nil)
	assert.Equal(t, 503, do(t, p, "GET", "/status").Code)
	for _, ready := range []bool{true, false} {
		p.Update(status(ready))
		rec := do(t, p, "GET", "/status")
		assert.Equal(t, 200, rec.Code)
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		var got gate.Status
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		assert.Equal(t, ready, got.Ready)
		assert.Equal(t, 42, got.VSwitchd.PID)
	}
}

func TestProbeMethods(t *testing.T) {
	p := NewProbe(nil)
	p.Update(status(true))
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		for _, path := range []string{"/readyz", "/livez", "/status", "/readyz/ovsdb"} {
			rec := do(t, p, m, path)
			assert.Equal(t, 405, rec.Code, m+" "+path)
			assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
		}
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	resp, err := http.Head(srv.URL + "/readyz")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Empty(t, body)
}

func TestLivezFollowsTheLoop(t *testing.T) {
	var mu sync.Mutex
	var loopErr error
	p := NewProbe(func() error { mu.Lock(); defer mu.Unlock(); return loopErr })
	assert.Equal(t, 200, do(t, p, "GET", "/livez").Code)
	mu.Lock()
	loopErr = errors.New("gate loop made no progress for 31s")
	mu.Unlock()
	rec := do(t, p, "GET", "/livez")
	assert.Equal(t, 503, rec.Code)
	assert.Equal(t, "livez check failed: gate loop made no progress for 31s\n", rec.Body.String())
	p.Update(status(true))
	assert.Equal(t, 200, do(t, p, "GET", "/readyz").Code, "liveness and readiness are separate")
}

// Thousands of concurrent requests to every endpoint while the state flips
// must leave the server's error log empty (no "superfluous WriteHeader").
func TestNoServerErrorsUnderFlips(t *testing.T) {
	var logBuf syncBuffer
	p := NewProbe(func() error { return nil })
	m := NewMetrics()
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.Handle("/", p)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = log.New(&logBuf, "", 0)
	srv.Start()
	defer srv.Close()

	stop := make(chan struct{})
	var flips sync.WaitGroup
	flips.Add(1)
	go func() {
		defer flips.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s := status(i%2 == 0)
			p.Update(s)
			m.Observe(s)
		}
	}()
	paths := []string{"/readyz", "/readyz?verbose", "/readyz/datapath/br-int", "/livez", "/healthz", "/status", "/metrics", "/readyz?exclude=ovsdb"}
	client := srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 32
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				resp, err := client.Get(srv.URL + paths[(w+i)%len(paths)])
				if !assert.NoError(t, err) {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				assert.Contains(t, []int{200, 503}, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(stop)
	flips.Wait()
	assert.Empty(t, logBuf.String())
	assert.NotContains(t, logBuf.String(), "superfluous")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func serveOn(t *testing.T, h http.Handler, opts ...ServerOption) (string, *syncBuffer) {
	t.Helper()
	ln, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	var logBuf syncBuffer
	srv := NewServer(h, log.New(&logBuf, "", 0), opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return ln.Addr().String(), &logBuf
}

func TestSlowHeaderClientIsCutOff(t *testing.T) {
	p := NewProbe(nil)
	p.Update(status(true))
	addr, _ := serveOn(t, p, WithReadHeaderTimeout(200*time.Millisecond))
	conns := make([]net.Conn, 20)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte("GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: "))
		require.NoError(t, err)
		conns[i] = c
	}
	// Meanwhile, a normal client is served.
	resp, err := http.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	for _, c := range conns {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err := io.ReadAll(c) // ends when the server closes the connection
		assert.NoError(t, err, "the server must close a stalled connection itself")
	}
}

func TestOversizedHeadersRefused(t *testing.T) {
	p := NewProbe(nil)
	addr, _ := serveOn(t, p)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	fmt.Fprintf(c, "GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

func TestListenPortInUse(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = Listen(ln.Addr().String())
	require.Error(t, err)
	assert.Equal(t, "listen on "+ln.Addr().String()+": bind: address already in use", err.Error())
}

func BenchmarkReadyzHandler(b *testing.B) {
	p := NewProbe(nil)
	p.Update(status(true))
	req := httptest.NewRequest("GET", "/readyz", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		p.ServeHTTP(w, req)
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkReadyzNewConnection is what kubelet does: a new TCP connection
// per probe.
func BenchmarkReadyzNewConnection(b *testing.B) {
	p := NewProbe(nil)
	p.Update(status(true))
	ln, err := Listen("127.0.0.1:0")
	require.NoError(b, err)
	srv := NewServer(p, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln) }()
	defer func() { cancel(); <-done }()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	url := "http://" + ln.Addr().String() + "/readyz"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
