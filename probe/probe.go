package probe

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync/atomic"

	"github.com/ovsgate/ovsgate/gate"
)

// Probe answers kubelet's probes from memory: Update precomputes every
// body, so a request costs no OVS call and almost no work.
type Probe struct {
	alive func() error
	cur   atomic.Pointer[answers]
	h     http.Handler
}

// answers are the precomputed responses for one status.
type answers struct {
	ready   bool
	checks  []gate.Check
	byName  map[string]int // index into checks
	verbose []byte         // the ?verbose list
	status  []byte         // the status JSON
}

var (
	bodyOK       = []byte("ok\n")
	startingBody = []byte("[-]gate failed: starting\nreadyz check failed\n")
)

// NewProbe returns a probe that reports not ready until its first Update.
// alive reports the daemon's own health for /livez; nil means alive.
func NewProbe(alive func() error) *Probe {
	p := &Probe{alive: alive}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", p.livez)
	mux.HandleFunc("GET /healthz", p.livez)
	mux.HandleFunc("GET /readyz", p.readyz)
	mux.HandleFunc("GET /readyz/{name...}", p.readyzCheck)
	mux.HandleFunc("GET /status", p.status)
	p.h = methods(mux)
	return p
}

// Update makes s the status the probe reports.
func (p *Probe) Update(s gate.Status) {
	a := &answers{ready: s.Ready, checks: s.Checks, byName: make(map[string]int, len(s.Checks))}
	for i, c := range s.Checks {
		a.byName[c.Name] = i
	}
	a.verbose = verboseList(s.Checks, nil)
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		b = []byte(`{"ready":false,"reason":"status cannot be encoded"}`)
	}
	a.status = append(b, '\n')
	p.cur.Store(a)
}

// ServeHTTP implements http.Handler.
func (p *Probe) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.h.ServeHTTP(w, r) }

func (p *Probe) livez(w http.ResponseWriter, _ *http.Request) {
	if p.alive != nil {
		if err := p.alive(); err != nil {
			writeText(w, http.StatusServiceUnavailable, []byte("livez check failed: "+err.Error()+"\n"))
			return
		}
	}
	writeText(w, http.StatusOK, bodyOK)
}

func (p *Probe) readyz(w http.ResponseWriter, r *http.Request) {
	a := p.cur.Load()
	if a == nil {
		writeText(w, http.StatusServiceUnavailable, startingBody)
		return
	}
	if r.URL.RawQuery == "" { // the hot path: kubelet's plain probe
		if a.ready {
			writeText(w, http.StatusOK, bodyOK)
		} else {
			writeText(w, http.StatusServiceUnavailable, a.verbose)
		}
		return
	}
	q := r.URL.Query()
	excluded := q["exclude"]
	_, verbose := q["verbose"]
	body, ok := a.verbose, a.ready
	if len(excluded) > 0 {
		body, ok = verboseList(a.checks, excluded), allOK(a.checks, excluded)
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	if ok && !verbose {
		body = bodyOK
	}
	writeText(w, code, body)
}

func (p *Probe) readyzCheck(w http.ResponseWriter, r *http.Request) {
	a := p.cur.Load()
	if a == nil {
		writeText(w, http.StatusServiceUnavailable, startingBody)
		return
	}
	name := r.PathValue("name")
	i, found := a.byName[name]
	if !found {
		writeText(w, http.StatusNotFound, []byte("no check named "+name+"\n"))
		return
	}
	c := a.checks[i]
	if c.OK {
		writeText(w, http.StatusOK, bodyOK)
		return
	}
	writeText(w, http.StatusServiceUnavailable, []byte("[-]"+c.Name+" failed: "+c.Message+"\n"))
}

func (p *Probe) status(w http.ResponseWriter, _ *http.Request) {
	a := p.cur.Load()
	if a == nil {
		writeText(w, http.StatusServiceUnavailable, startingBody)
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.status)
}

// verboseList renders the check list in the format of Kubernetes' readyz:
// "[+]NAME ok" or "[-]NAME failed: REASON" per check; an excluded check is
// listed as "[+]NAME excluded: ok" and does not count.
func verboseList(checks []gate.Check, excluded []string) []byte {
	var b bytes.Buffer
	for _, c := range checks {
		switch {
		case contains(excluded, c.Name):
			b.WriteString("[+]" + c.Name + " excluded: ok\n")
		case c.OK:
			b.WriteString("[+]" + c.Name + " ok\n")
		default:
			b.WriteString("[-]" + c.Name + " failed: " + c.Message + "\n")
		}
	}
	if allOK(checks, excluded) {
		b.WriteString("readyz check passed\n")
	} else {
		b.WriteString("readyz check failed\n")
	}
	return b.Bytes()
}

func allOK(checks []gate.Check, excluded []string) bool {
	for _, c := range checks {
		if !c.OK && !contains(excluded, c.Name) {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var (
	textPlain = []string{"text/plain; charset=utf-8"}
	nosniff   = []string{"nosniff"}
)

// writeText writes one plain-text answer: headers once, then the body.
func writeText(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h["Content-Type"] = textPlain
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// methods answers 405 to anything but GET and HEAD.
func methods(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeText(w, http.StatusMethodNotAllowed, []byte("method not allowed\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
