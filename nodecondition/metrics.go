package nodecondition

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Results of a write, the values of the result label. The set is fixed: each
// is a different thing for an operator to fix.
const (
	ResultSuccess      = "success"
	ResultUnauthorized = "unauthorized" // 401: the credentials are not accepted
	ResultForbidden    = "forbidden"    // 403: RBAC lacks nodes get or nodes/status patch
	ResultNotFound     = "not_found"    // 404: no such Node (deleted, or not registered yet)
	ResultConflict     = "conflict"     // 409
	ResultThrottled    = "throttled"    // 429: the API server's priority and fairness
	ResultTimeout      = "timeout"      // the request timeout passed, or the server timed out
	ResultServerError  = "server_error" // other 5xx
	ResultUnreachable  = "unreachable"  // no answer: connection refused, reset, DNS, TLS
	ResultError        = "error"        // anything else, e.g. 400 or 422 (a webhook refusing the patch)
)

var results = []string{
	ResultSuccess, ResultUnauthorized, ResultForbidden, ResultNotFound, ResultConflict,
	ResultThrottled, ResultTimeout, ResultServerError, ResultUnreachable, ResultError,
}

// metrics are the writer's collectors; the caller registers them.
type metrics struct {
	writes      *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ovsgate_node_condition_writes_total",
			Help: "Attempts to write the node condition, by result (success, unauthorized, forbidden, not_found, conflict, throttled, timeout, server_error, unreachable, error).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ovsgate_node_condition_last_write_success",
			Help: "1 when the last attempt to write the node condition succeeded, else 0 (also before the first attempt).",
		}),
	}
	// Every result exists from the start, so a rate() sees its first increase.
	for _, r := range results {
		m.writes.WithLabelValues(r)
	}
	return m
}

func (m *metrics) observe(result string) {
	m.writes.WithLabelValues(result).Inc()
	if result == ResultSuccess {
		m.lastSuccess.Set(1)
	} else {
		m.lastSuccess.Set(0)
	}
}

// classify maps a failed request's error to a result. The API server's
// answers come as the errors of k8s.io/apimachinery: the reason of its Status
// decides where it names one (a ServerTimeout comes with code 500), the code
// otherwise, as for an answer without a Status, e.g. of a proxy.
func classify(err error) string {
	switch {
	case err == nil:
		return ResultSuccess
	case apierrors.IsUnauthorized(err):
		return ResultUnauthorized
	case apierrors.IsForbidden(err):
		return ResultForbidden
	case apierrors.IsNotFound(err):
		return ResultNotFound
	case apierrors.IsConflict(err):
		return ResultConflict
	case apierrors.IsTooManyRequests(err):
		return ResultThrottled
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), errors.Is(err, context.DeadlineExceeded):
		return ResultTimeout
	}
	var answer apierrors.APIStatus
	if errors.As(err, &answer) {
		if answer.Status().Code >= http.StatusInternalServerError {
			return ResultServerError
		}
		return ResultError // e.g. 400, or 422 from a webhook refusing the patch
	}
	// The HTTP client wraps transport failures in *url.Error, a net.Error.
	var netErr net.Error
	if errors.As(err, &netErr) {
		if netErr.Timeout() {
			return ResultTimeout
		}
		return ResultUnreachable
	}
	return ResultError
}
