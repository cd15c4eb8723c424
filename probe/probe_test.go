package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/testutil"
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
			{Name: gate.CheckOVSDB, OK: true},
			{Name: gate.CheckVSwitchd, OK: true},
			{Name: gate.DatapathCheck("br-int"), OK: ready},
			{Name: gate.FeaturesCheck("br-int"), OK: ready},
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

func do(t testing.TB, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

const (
	readyList    = "[+]ovsdb ok\n[+]vswitchd ok\n[+]datapath/br-int ok\n[+]features/br-int ok\nreadyz check passed\n"
	notReadyList = "[+]ovsdb ok\n[+]vswitchd ok\n[-]datapath/br-int failed: waiting for datapath ID\n" +
		"[-]features/br-int failed: datapath not ready\nreadyz check failed\n"
	startingList = "[-]gate failed: starting\nreadyz check failed\n"
)

func TestProbeEndpoints(t *testing.T) {
	tests := []struct {
		state  string // starting, ready or not ready
		target string
		code   int
		body   string
	}{
		{"starting", "/readyz", 503, startingList},
		{"starting", "/readyz?verbose", 503, startingList},
		{"starting", "/readyz?exclude=ovsdb", 503, startingList},
		{"starting", "/readyz/ovsdb", 503, startingList},
		{"starting", "/status", 503, "starting: no status yet\n"},
		{"starting", "/livez", 200, "ok\n"},
		{"starting", "/healthz", 200, "ok\n"},

		{"ready", "/readyz", 200, "ok\n"},
		{"ready", "/readyz?verbose", 200, readyList},
		{"ready", "/readyz?verbose=1", 200, readyList},
		{"ready", "/readyz?exclude=ovsdb", 200, "ok\n"},
		{"ready", "/readyz?verbose&exclude=ovsdb", 200,
			"[+]ovsdb excluded: ok\n[+]vswitchd ok\n[+]datapath/br-int ok\n[+]features/br-int ok\nreadyz check passed\n"},
		{"ready", "/readyz/ovsdb", 200, "ok\n"},
		{"ready", "/readyz/vswitchd", 200, "ok\n"},
		{"ready", "/readyz/datapath/br-int", 200, "ok\n"},
		{"ready", "/readyz/features/br-int", 200, "ok\n"},
		{"ready", "/readyz/nope", 404, "no check named \"nope\"\n"},
		{"ready", "/readyz/datapath/br-ex", 404, "no check named \"datapath/br-ex\"\n"},
		{"ready", "/readyz/", 404, "no check named \"\"\n"},
		{"ready", "/livez", 200, "ok\n"},
		{"ready", "/healthz", 200, "ok\n"},
		{"ready", "/nothing", 404, "404 page not found\n"},

		{"not ready", "/readyz", 503, notReadyList},
		{"not ready", "/readyz?verbose", 503, notReadyList},
		{"not ready", "/readyz?verbose=1", 503, notReadyList},
		{"not ready", "/readyz/ovsdb", 200, "ok\n"},
		{"not ready", "/readyz/vswitchd", 200, "ok\n"},
		{"not ready", "/readyz/datapath/br-int", 503, "[-]datapath/br-int failed: waiting for datapath ID\n"},
		{"not ready", "/readyz/features/br-int", 503, "[-]features/br-int failed: datapath not ready\n"},
		{"not ready", "/readyz/nope", 404, "no check named \"nope\"\n"},
		{"not ready", "/readyz?exclude=datapath/br-int&exclude=features/br-int", 200, "ok\n"},
		{"not ready", "/readyz?verbose&exclude=datapath/br-int&exclude=features/br-int", 200,
			"[+]ovsdb ok\n[+]vswitchd ok\n[+]datapath/br-int excluded: ok\n[+]features/br-int excluded: ok\nreadyz check passed\n"},
		{"not ready", "/readyz?exclude=datapath/br-int", 503,
			"[+]ovsdb ok\n[+]vswitchd ok\n[+]datapath/br-int excluded: ok\n[-]features/br-int failed: datapath not ready\nreadyz check failed\n"},
		{"not ready", "/readyz?exclude=datapath%2Fbr-int&exclude=features%2Fbr-int", 200, "ok\n"},
		// Unknown names change nothing but are pointed out.
		{"not ready", "/readyz?exclude=nope&exclude=nope&exclude=ovsdb", 503,
			"[+]ovsdb excluded: ok\n[+]vswitchd ok\n[-]datapath/br-int failed: waiting for datapath ID\n" +
				"[-]features/br-int failed: datapath not ready\n" +
				"warn: some health checks cannot be excluded: no matches for \"nope\"\nreadyz check failed\n"},
		{"ready", "/readyz?verbose&exclude=nope&exclude=datapath", 200,
			readyList[:len(readyList)-len("readyz check passed\n")] +
				"warn: some health checks cannot be excluded: no matches for \"nope\", \"datapath\"\nreadyz check passed\n"},
		{"not ready", "/livez", 200, "ok\n"},
		{"not ready", "/healthz", 200, "ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.state+" "+tt.target, func(t *testing.T) {
			p := NewProbe(nil)
			switch tt.state {
			case "ready":
				p.Update(status(true))
			case "not ready":
				p.Update(status(false))
			}
			rec := do(t, p, http.MethodGet, tt.target)
			assert.Equal(t, tt.code, rec.Code)
			assert.Equal(t, tt.body, rec.Body.String())
			assert.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
			assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
		})
	}
}

func TestProbeStatusJSON(t *testing.T) {
	p := NewProbe(nil)
	for _, ready := range []bool{true, false, true} {
		p.Update(status(ready))
		rec := do(t, p, http.MethodGet, "/status")
		assert.Equal(t, 200, rec.Code)
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
		assert.True(t, bytes.HasSuffix(rec.Body.Bytes(), []byte("}\n")))
		var got gate.Status
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		assert.True(t, gate.State{Status: status(ready)}.Equivalent(gate.State{Status: got}), "the status comes back whole: %s", rec.Body)
	}
}

// Update keeps its own copy: a caller reusing its slice changes nothing.
func TestProbeUpdateCopies(t *testing.T) {
	p := NewProbe(nil)
	s := status(false)
	p.Update(s)
	s.Checks[2] = gate.Check{Name: "datapath/br-int", OK: true}
	s.Checks[3] = gate.Check{Name: "features/br-int", OK: true}
	rec := do(t, p, http.MethodGet, "/readyz?exclude=ovsdb")
	assert.Equal(t, 503, rec.Code)
	assert.Contains(t, rec.Body.String(), "[-]datapath/br-int failed")
}

func TestProbeMethodNotAllowed(t *testing.T) {
	handlers := map[string]http.Handler{"probe": NewProbe(nil), "metrics": NewMetrics().Handler()}
	paths := map[string][]string{
		"probe":   {"/readyz", "/readyz?verbose", "/readyz/datapath/br-int", "/readyz/nope", "/livez", "/healthz", "/status"},
		"metrics": {"/metrics"},
	}
	for _, ready := range []bool{false, true} {
		if ready {
			handlers["probe"].(*Probe).Update(status(true))
		}
		for name, h := range handlers {
			for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"} {
				for _, path := range paths[name] {
					rec := do(t, h, m, path)
					assert.Equal(t, 405, rec.Code, "%s %s %s", name, m, path)
					assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"), "%s %s %s", name, m, path)
					assert.Equal(t, "Method Not Allowed\n", rec.Body.String())
					assert.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
					assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
				}
				// A path nothing serves is 404, whatever the method.
				for _, path := range []string{"/nothing", "/readyzz", "/metrics/x"} {
					rec := do(t, h, m, path)
					assert.Equal(t, 404, rec.Code, "%s %s %s", name, m, path)
					assert.Empty(t, rec.Header().Get("Allow"))
				}
			}
		}
	}
}

// HEAD answers like GET, without a body, over a real server.
func TestProbeHead(t *testing.T) {
	p := NewProbe(nil)
	addr, logBuf := serveOn(t, p)
	client := &http.Client{}
	defer client.CloseIdleConnections()
	// get returns the status code, the headers and the body it read and closed.
	get := func(method, path string) (int, http.Header, string) {
		req, err := http.NewRequest(method, "http://"+addr+path, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header, string(b)
	}
	for _, state := range []string{"starting", "not ready", "ready"} {
		switch state {
		case "ready":
			p.Update(status(true))
		case "not ready":
			p.Update(status(false))
		}
		for _, path := range []string{"/readyz", "/readyz?verbose", "/readyz?exclude=ovsdb", "/readyz/datapath/br-int", "/readyz/nope", "/livez", "/healthz", "/status"} {
			getCode, getHeader, getBody := get(http.MethodGet, path)
			headCode, headHeader, headBody := get(http.MethodHead, path)
			assert.NotEmpty(t, getBody, "%s GET %s", state, path)
			assert.Empty(t, headBody, "%s HEAD %s", state, path)
			assert.Equal(t, getCode, headCode, "%s HEAD %s", state, path)
			assert.Equal(t, getHeader.Get("Content-Type"), headHeader.Get("Content-Type"), "%s HEAD %s", state, path)
			assert.Equal(t, "nosniff", headHeader.Get("X-Content-Type-Options"), "%s HEAD %s", state, path)
		}
	}
	assert.Empty(t, logBuf.String())
}

func TestLivezFollowsTheLoop(t *testing.T) {
	var loopErr atomic.Pointer[error]
	p := NewProbe(func() error {
		if e := loopErr.Load(); e != nil {
			return *e
		}
		return nil
	})
	assert.Equal(t, 200, do(t, p, "GET", "/livez").Code)
	stalled := errors.New("gate loop made no progress for 31s")
	loopErr.Store(&stalled)
	for _, path := range []string{"/livez", "/healthz"} {
		rec := do(t, p, "GET", path)
		assert.Equal(t, 503, rec.Code)
		assert.Equal(t, "livez check failed: gate loop made no progress for 31s\n", rec.Body.String())
		assert.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
	}
	p.Update(status(true))
	assert.Equal(t, 200, do(t, p, "GET", "/readyz").Code, "liveness and readiness are separate")
	loopErr.Store(nil)
	p.Update(status(false))
	assert.Equal(t, 200, do(t, p, "GET", "/livez").Code, "liveness never depends on OVS")
}

// Thousands of concurrent requests to every endpoint, keep-alive and not,
// while the state flips, must leave the server's error log empty (no
// "superfluous response.WriteHeader call").
func TestNoServerErrorsUnderFlips(t *testing.T) {
	p := NewProbe(func() error { return nil })
	m := NewMetrics()
	probeAddr, probeLog := serveOn(t, p)
	metricsAddr, metricsLog := serveOn(t, m.Handler())

	var flipping sync.WaitGroup
	ctx, stop := context.WithCancel(context.Background())
	var flips atomic.Int64
	flipping.Add(1)
	go func() {
		defer flipping.Done()
		for i := 0; ctx.Err() == nil; i++ {
			s := gate.State{Status: status(i%2 == 0), Settled: true}
			p.Update(s.Status)
			m.Observe(s)
			flips.Add(1)
		}
	}()

	type target struct{ method, url string }
	var targets []target
	for _, path := range []string{"/readyz", "/readyz?verbose", "/readyz?exclude=ovsdb", "/readyz?verbose&exclude=datapath/br-int",
		"/readyz/datapath/br-int", "/readyz/ovsdb", "/readyz/nope", "/livez", "/healthz", "/status", "/nothing"} {
		for _, method := range []string{"GET", "HEAD", "POST"} {
			targets = append(targets, target{method, "http://" + probeAddr + path})
		}
	}
	targets = append(targets, target{"GET", "http://" + metricsAddr + "/metrics"}, target{"DELETE", "http://" + metricsAddr + "/metrics"})

	keepAlive := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer keepAlive.CloseIdleConnections()
	const workers, perWorker = 16, 200
	var ok503, other atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := keepAlive
			if w%4 == 0 {
				client = fresh
			}
			for i := range perWorker {
				tg := targets[(w*7+i)%len(targets)]
				req, err := http.NewRequest(tg.method, tg.url, nil)
				if !assert.NoError(t, err) {
					return
				}
				resp, err := client.Do(req)
				if !assert.NoError(t, err) {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200, 503:
					ok503.Add(1)
				case 404, 405:
					other.Add(1)
				default:
					t.Errorf("%s %s: unexpected %d", tg.method, tg.url, resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	stop()
	flipping.Wait()
	assert.Equal(t, int64(workers*perWorker), ok503.Load()+other.Load())
	assert.Positive(t, flips.Load())
	assert.NotContains(t, probeLog.String(), "superfluous")
	assert.Empty(t, probeLog.String())
	assert.Empty(t, metricsLog.String())
}

// serveOn serves h on a loopback port with NewServer and Serve, as the
// daemon does, until the test ends; the server's error log is returned.
func serveOn(t *testing.T, h http.Handler, opts ...ServerOption) (string, *testutil.SyncBuffer) {
	t.Helper()
	ln, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	var logBuf testutil.SyncBuffer
	srv := NewServer(h, log.New(&logBuf, "", 0))
	for _, o := range opts {
		o(srv)
	}
	stop := startServe(t, srv, ln)
	t.Cleanup(func() { assert.NoError(t, stop()) })
	return ln.Addr().String(), &logBuf
}

// startServe runs Serve on ln until stop is called or the test ends (also
// when it fails first, so that no server outlives its test). stop returns
// Serve's error; calling it again returns the same.
func startServe(t *testing.T, srv *http.Server, ln net.Listener) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func BenchmarkReadyz(b *testing.B) {
	for _, bc := range []struct {
		name   string
		ready  bool
		target string
	}{
		{"ready", true, "/readyz"},
		{"not-ready", false, "/readyz"},
		{"verbose", false, "/readyz?verbose"},
		{"check", false, "/readyz/datapath/br-int"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := NewProbe(nil)
			p.Update(status(bc.ready))
			req := httptest.NewRequest("GET", bc.target, nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				p.ServeHTTP(w, req)
			}
			if !strings.HasPrefix(bc.name, "ready") && w.code != 503 {
				b.Fatalf("got %d", w.code)
			}
		})
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

// BenchmarkReadyzNewConnection is what kubelet does: a new TCP connection
// per probe, over loopback.
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
		if resp.StatusCode != 200 {
			b.Fatalf("got %d", resp.StatusCode)
		}
	}
}
