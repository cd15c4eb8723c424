package nodecondition

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a write, the values of the result label. The set is fixed: each
// is a different thing for an operator to fix.
const (
	ResultSuccess      = "success"
	ResultUnauthorized = "unauthorized" // 401: the credentials are not accepted
	ResultForbidden    = "forbidden"    // 403: RBAC lacks nodes get or nodes/status patch, or an admission policy refused the write
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

// classify maps a failed request's error to a result.
func classify(err error) string {
	var answer *statusError
	switch {
	case err == nil:
		return ResultSuccess
	case errors.As(err, &answer):
		return answer.result()
	case errors.Is(err, context.DeadlineExceeded):
		return ResultTimeout
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

// result maps an answer to a result. The reason of the API server's Status
// decides where it names one (a ServerTimeout comes with code 500); the code
// decides otherwise, as for an answer without a Status, e.g. of a proxy.
func (e *statusError) result() string {
	switch e.reason {
	case "Unauthorized":
		return ResultUnauthorized
	case "Forbidden":
		return ResultForbidden
	case "NotFound":
		return ResultNotFound
	case "Conflict":
		return ResultConflict
	case "TooManyRequests":
		return ResultThrottled
	case "Timeout", "ServerTimeout":
		return ResultTimeout
	}
	switch {
	case e.code == http.StatusUnauthorized:
		return ResultUnauthorized
	case e.code == http.StatusForbidden:
		return ResultForbidden
	case e.code == http.StatusNotFound:
		return ResultNotFound
	case e.code == http.StatusConflict:
		return ResultConflict
	case e.code == http.StatusTooManyRequests:
		return ResultThrottled
	case e.code == http.StatusGatewayTimeout:
		return ResultTimeout
	case e.code >= http.StatusInternalServerError:
		return ResultServerError
	}
	return ResultError
}
