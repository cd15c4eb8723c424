package probe

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Registry is the daemon's own registry, for tests to gather from.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Path is the file written.
func (f *StatusFile) Path() string { return f.path }

// ServerOption changes a server NewServer made, for tests that need other
// limits.
type ServerOption func(*http.Server)

// WithReadHeaderTimeout overrides how long a client may take to send its
// request headers.
func WithReadHeaderTimeout(d time.Duration) ServerOption {
	return func(s *http.Server) { s.ReadHeaderTimeout = d }
}
