package probe

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/ovsgate/ovsgate/gate"
)

// Probe answers kubelet's probes from memory: Update precomputes every
// body, so a request costs no OVS call and no formatting, only a copy of
// bytes (a ?exclude list, which operators send by hand, is the exception).
//
// Paths, all GET or HEAD (anything else is 405 with "Allow: GET, HEAD"):
//
//	/livez, /healthz  200 "ok" while the liveness function returns nil, else 503 and its error
//	/readyz           200 "ok" when ready, else 503 and the check list
//	/readyz?verbose   the check list, 200 or 503
//	/readyz/NAME      one check: 200 "ok", 503 "[-]NAME failed: REASON", 404 if unknown
//	/status           the status JSON
//
// Any other path is 404, whatever the method.
// The check list follows Kubernetes' apiserver: one "[+]NAME ok" or
// "[-]NAME failed: REASON" line per check, then "readyz check passed" or
// "readyz check failed". Each ?exclude=NAME (repeatable) leaves that check
// out of the decision; it is still listed, as "[+]NAME excluded: ok", and
// names that match no check are ignored and reported on a closing
// "warn: some health checks cannot be excluded: no matches for "NAME"" line.
// Until the first Update the probe is not ready and says it is starting.
type Probe struct {
	alive func() error
	cur   atomic.Pointer[answers]
	h     http.Handler
}

// answer is one precomputed response.
type answer struct {
	code int
	body []byte
}

// answers are the precomputed responses for one status.
type answers struct {
	readyz  answer            // plain /readyz
	verbose answer            // /readyz?verbose
	checks  map[string]answer // /readyz/NAME
	list    []gate.Check      // for ?exclude, which is computed per request
	status  []byte            // the status JSON
}

var (
	bodyOK       = []byte("ok\n")
	startingBody = []byte("[-]gate failed: starting\nreadyz check failed\n")
)

// NewProbe returns a probe that reports not ready until its first Update.
// alive reports the daemon's own health for /livez (nil: alive); a nil
// alive means always alive.
func NewProbe(alive func() error) *Probe {
	p := &Probe{alive: alive}
	mux := http.NewServeMux()
	// A "GET" pattern also matches HEAD; the server then drops the body.
	// The mux answers any other method on these paths with 405 and
	// "Allow: GET, HEAD", and any path not here with 404, whatever the
	// method.
	mux.HandleFunc("GET /livez", p.livez)
	mux.HandleFunc("GET /healthz", p.livez)
	mux.HandleFunc("GET /readyz", p.readyz)
	mux.HandleFunc("GET /readyz/{name...}", p.readyzCheck)
	mux.HandleFunc("GET /status", p.status)
	p.h = mux
	return p
}

// Update makes s the status the probe reports. It is safe to call
// concurrently with requests; each request sees one status whole.
func (p *Probe) Update(s gate.Status) {
	list := slices.Clone(s.Checks)
	a := &answers{list: list, checks: make(map[string]answer, len(list))}
	for _, c := range list {
		if c.OK {
			a.checks[c.Name] = answer{http.StatusOK, bodyOK}
		} else {
			a.checks[c.Name] = answer{http.StatusServiceUnavailable, []byte(failedLine(c))}
		}
	}
	code := http.StatusServiceUnavailable
	if s.Ready {
		code = http.StatusOK
	}
	a.verbose = answer{code, checkList(list, nil)}
	a.readyz = a.verbose
	if s.Ready {
		a.readyz.body = bodyOK
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil { // only a feature value of an odd type could do this; never serve half a document
		b, _ = json.Marshal(map[string]any{"ready": false, "reason": "status cannot be encoded: " + err.Error()})
	}
	b = append(b, '\n')
	a.status = b
	p.cur.Store(a)
}

// ServeHTTP implements http.Handler.
// kubelet's plain GET /readyz, once a second on every node, skips the
// routing: it is most of what the probe listener ever serves.
func (p *Probe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/readyz" && r.URL.RawQuery == "" {
		if a := p.cur.Load(); a != nil {
			writeText(w, a.readyz.code, a.readyz.body)
			return
		}
	}
	p.h.ServeHTTP(w, r)
}

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
	switch r.URL.RawQuery {
	case "": // the hot path: kubelet's plain probe
		writeText(w, a.readyz.code, a.readyz.body)
		return
	case "verbose":
		writeText(w, a.verbose.code, a.verbose.body)
		return
	}
	q := r.URL.Query()
	_, verbose := q["verbose"]
	excluded := q["exclude"]
	res := a.readyz
	if verbose {
		res = a.verbose
	}
	if len(excluded) > 0 {
		res = answer{http.StatusOK, bodyOK}
		if !allOK(a.list, excluded) {
			res.code = http.StatusServiceUnavailable
		}
		if verbose || res.code != http.StatusOK {
			res.body = checkList(a.list, excluded)
		}
	}
	writeText(w, res.code, res.body)
}

func (p *Probe) readyzCheck(w http.ResponseWriter, r *http.Request) {
	a := p.cur.Load()
	if a == nil {
		writeText(w, http.StatusServiceUnavailable, startingBody)
		return
	}
	name := r.PathValue("name")
	res, found := a.checks[name]
	if !found {
		writeText(w, http.StatusNotFound, []byte("no check named "+strconv.Quote(name)+"\n"))
		return
	}
	writeText(w, res.code, res.body)
}

func (p *Probe) status(w http.ResponseWriter, _ *http.Request) {
	a := p.cur.Load()
	if a == nil {
		writeText(w, http.StatusServiceUnavailable, []byte("starting: no status yet\n"))
		return
	}
	h := w.Header()
	h["Content-Type"] = applicationJSON
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.status)
}

func failedLine(c gate.Check) string { return "[-]" + c.Name + " failed: " + c.Message + "\n" }

// checkList renders checks as Probe's doc comment describes.
func checkList(checks []gate.Check, excluded []string) []byte {
	var b bytes.Buffer
	for _, c := range checks {
		switch {
		case slices.Contains(excluded, c.Name):
			b.WriteString("[+]" + c.Name + " excluded: ok\n")
		case c.OK:
			b.WriteString("[+]" + c.Name + " ok\n")
		default:
			b.WriteString(failedLine(c))
		}
	}
	var unmatched []string
	for _, name := range excluded {
		known := slices.ContainsFunc(checks, func(c gate.Check) bool { return c.Name == name })
		if !known && !slices.Contains(unmatched, name) {
			unmatched = append(unmatched, name)
		}
	}
	if len(unmatched) > 0 {
		b.WriteString("warn: some health checks cannot be excluded: no matches for ")
		for i, name := range unmatched {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Quote(name))
		}
		b.WriteString("\n")
	}
	if allOK(checks, excluded) {
		b.WriteString("readyz check passed\n")
	} else {
		b.WriteString("readyz check failed\n")
	}
	return b.Bytes()
}

// allOK reports whether every check not excluded passes; an empty list passes.
func allOK(checks []gate.Check, excluded []string) bool {
	for _, c := range checks {
		if !c.OK && !slices.Contains(excluded, c.Name) {
			return false
		}
	}
	return true
}

// Header values, shared rather than allocated per request; net/http only
// reads them.
var (
	textPlain       = []string{"text/plain; charset=utf-8"}
	applicationJSON = []string{"application/json"}
	nosniff         = []string{"nosniff"}
)

// writeText writes one plain-text answer: headers once, then the body.
func writeText(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h["Content-Type"] = textPlain
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
