package fleet

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// kind is what a request was, as the API server sees it.
type kind uint8

const (
	ovsgateGet    kind = iota // the writer's read of its Node (once after a start)
	ovsgatePatch              // the writer's PATCH of nodes/status
	kubeletGet                // the kubelet's read of its Node before a status patch
	kubeletStatus             // the kubelet's PATCH of nodes/status
	kubeletLease              // the kubelet's PUT of its Lease
	otherRequest
)

// event is one request a simulated node sent.
type event struct {
	start, end time.Time // end: the answer's headers, or the failure
	node       int32
	kind       kind
	code       int16 // HTTP status; 0 when no answer came
	// change: an ovsgate PATCH whose status, reason or message differs from
	// the last one the API server took for this node (the first one too);
	// the others are heartbeats.
	change bool
}

func (e event) ok() bool { return e.code >= 200 && e.code <= 299 }

func (e event) write() bool {
	return e.kind == ovsgatePatch || e.kind == kubeletStatus || e.kind == kubeletLease
}

// recorder keeps every request of the simulated fleet, in the order they
// ended. The benchmark reads it by window once a scenario is over.
type recorder struct {
	mu     sync.Mutex
	events []event
	// written counts the nodes whose writer has had a PATCH taken.
	written atomic.Int64
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// between returns the requests that started in [from, to).
func (r *recorder) between(from, to time.Time) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if !e.start.Before(from) && e.start.Before(to) {
			out = append(out, e)
		}
	}
	return out
}

// wrap returns the client-go transport wrapper (rest.Config.WrapTransport)
// that records the requests of node's ovsgate writer or kubelet. It watches;
// it changes nothing in the requests.
func (r *recorder) wrap(node int, kubelet bool) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return &recordingTransport{rt: rt, rec: r, node: int32(node), kubelet: kubelet}
	}
}

type recordingTransport struct {
	rt      http.RoundTripper
	rec     *recorder
	node    int32
	kubelet bool

	mu      sync.Mutex
	last    string // the condition the API server last took from this writer
	written bool
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	k := kindOf(req.Method, req.URL.Path, t.kubelet)
	var cond string
	if k == ovsgatePatch && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		cond = conditionOf(body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	e := event{start: time.Now(), node: t.node, kind: k}
	resp, err := t.rt.RoundTrip(req)
	e.end = time.Now()
	if err == nil {
		e.code = int16(resp.StatusCode)
	}
	if k == ovsgatePatch {
		t.mu.Lock()
		e.change = cond != t.last
		if e.ok() {
			t.last = cond
			if !t.written {
				t.written = true
				t.rec.written.Add(1)
			}
		}
		t.mu.Unlock()
	}
	t.rec.add(e)
	return resp, err
}

// WrappedRoundTripper lets client-go's utilities (closing idle connections,
// for one) reach the transport below.
func (t *recordingTransport) WrappedRoundTripper() http.RoundTripper { return t.rt }

// kindOf tells the requests of the simulated nodes apart by method and path.
func kindOf(method, path string, kubelet bool) kind {
	switch {
	case method == http.MethodPatch && strings.HasPrefix(path, "/api/v1/nodes/") && strings.HasSuffix(path, "/status"):
		if kubelet {
			return kubeletStatus
		}
		return ovsgatePatch
	case method == http.MethodGet && strings.HasPrefix(path, "/api/v1/nodes/"):
		if kubelet {
			return kubeletGet
		}
		return ovsgateGet
	case method == http.MethodPut && strings.Contains(path, "/leases/"):
		return kubeletLease
	}
	return otherRequest
}

// conditionOf is the status, reason and message of the condition in an
// ovsgate patch: what makes a write a change rather than a heartbeat.
func conditionOf(patch []byte) string {
	var p struct {
		Status struct {
			Conditions []struct {
				Status, Reason, Message string
			} `json:"conditions"`
		} `json:"status"`
	}
	if json.Unmarshal(patch, &p) != nil || len(p.Status.Conditions) != 1 {
		return "unreadable patch"
	}
	c := p.Status.Conditions[0]
	return c.Status + "\x00" + c.Reason + "\x00" + c.Message
}

// tally counts a window's requests.
type tally struct {
	requests  int             // every attempt, answered or not
	writes    int             // writes the API server took
	changes   int             // of which ovsgate changes
	failures  int             // attempts without a 2xx answer
	latencies []time.Duration // of the writes taken, to the answer's headers
	byKind    map[kind]int    // writes taken, by kind
}

func count(events []event) tally {
	t := tally{byKind: map[kind]int{}}
	for _, e := range events {
		t.requests++
		if !e.ok() {
			t.failures++
			continue
		}
		if !e.write() {
			continue
		}
		t.writes++
		t.byKind[e.kind]++
		if e.change {
			t.changes++
		}
		t.latencies = append(t.latencies, e.end.Sub(e.start))
	}
	return t
}
