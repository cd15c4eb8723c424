package nodecondition

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/rest"
)

// TestNodeClient: the two requests as the API server gets them, through a
// proxy's path prefix, with the configuration's credentials, CA and user
// agent; a Node as the API server sends it, decoded to its conditions.
func TestNodeClient(t *testing.T) {
	ts := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	node := corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"a": "b"}},
		Spec:       corev1.NodeSpec{PodCIDR: "10.0.0.0/24"},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: ts, LastTransitionTime: ts},
				{Type: "ovsgate.io/OVSReady", Status: corev1.ConditionFalse, Reason: "Starting", Message: "m", LastHeartbeatTime: ts},
			},
			Images: []corev1.ContainerImage{{Names: []string{"registry.k8s.io/pause:3.10"}, SizeBytes: 1 << 20}},
		},
	}
	nodeJSON, err := json.Marshal(node)
	require.NoError(t, err)

	type request struct {
		method, path, query, auth, userAgent, contentType, accept, body string
	}
	var (
		mu   sync.Mutex
		reqs []request
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.UserAgent(),
			r.Header.Get("Content-Type"), r.Header.Get("Accept"), string(body)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(nodeJSON)
	}))
	t.Cleanup(srv.Close)
	kube := &rest.Config{
		Host:            srv.URL + "/k8s/clusters/c-1",
		BearerToken:     "secret",
		UserAgent:       "ovsgate-test",
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})},
	}
	c, err := newNodeClient(kube, "node-1")
	require.NoError(t, err)
	t.Cleanup(c.closeIdle)

	conds, err := c.conditions(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []nodeCondition{
		{Type: "Ready", Status: statusTrue, Reason: "KubeletReady", LastHeartbeatTime: ts.Time, LastTransitionTime: ts.Time},
		{Type: "ovsgate.io/OVSReady", Status: statusFalse, Reason: "Starting", Message: "m", LastHeartbeatTime: ts.Time},
	}, conds, "a null lastTransitionTime is the zero time")

	patch := []byte(`{"status":{"conditions":[{"type":"ovsgate.io/OVSReady","status":"True"}]}}`)
	require.NoError(t, c.patchStatus(t.Context(), patch))

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []request{
		{"GET", "/k8s/clusters/c-1/api/v1/nodes/node-1", "", "Bearer secret", "ovsgate-test", "", "application/json", ""},
		{"PATCH", "/k8s/clusters/c-1/api/v1/nodes/node-1/status", "", "Bearer secret", "ovsgate-test",
			"application/strategic-merge-patch+json", "application/json", string(patch)},
	}, reqs)
}

// answer is what a fake server sends.
type answer struct {
	code int
	body string
}

// statusAnswer is a refusal as kube-apiserver sends it: a Status in JSON,
// with its code.
func statusAnswer(err *apierrors.StatusError) answer {
	s := err.ErrStatus
	s.Kind, s.APIVersion = "Status", "v1"
	b, jerr := json.Marshal(s)
	if jerr != nil {
		panic(jerr)
	}
	return answer{int(err.ErrStatus.Code), string(b)}
}

// TestClassify: answers of the API server or of a proxy, and failures to get
// one, as the node client returns them, both for the read and the patch.
func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Resource: "nodes"}
	tests := []struct {
		name string
		answer
		want string
	}{
		{"ok", answer{200, "{}"}, ResultSuccess},
		{"unauthorized", statusAnswer(apierrors.NewUnauthorized("no")), ResultUnauthorized},
		{"forbidden", statusAnswer(apierrors.NewForbidden(gr, "n", errors.New("RBAC"))), ResultForbidden},
		{"not found", statusAnswer(apierrors.NewNotFound(gr, "n")), ResultNotFound},
		{"conflict", statusAnswer(apierrors.NewConflict(gr, "n", errors.New("changed"))), ResultConflict},
		{"too many requests", statusAnswer(apierrors.NewTooManyRequests("slow down", 1)), ResultThrottled},
		{"timeout", statusAnswer(apierrors.NewTimeoutError("took too long", 1)), ResultTimeout},
		{"server timeout, a 500", statusAnswer(apierrors.NewServerTimeout(gr, "patch", 1)), ResultTimeout},
		{"internal error", statusAnswer(apierrors.NewInternalError(errors.New("boom"))), ResultServerError},
		{"service unavailable", statusAnswer(apierrors.NewServiceUnavailable("starting")), ResultServerError},
		{"bad request", statusAnswer(apierrors.NewBadRequest("bad")), ResultError},
		{"invalid", statusAnswer(apierrors.NewInvalid(schema.GroupKind{Kind: "Node"}, "n",
			field.ErrorList{field.Invalid(field.NewPath("status"), "x", "no")})), ResultError},
		// Answers without a Status, as a proxy or load balancer sends them.
		{"proxy 401", answer{401, "Unauthorized"}, ResultUnauthorized},
		{"proxy 403", answer{403, "<html>Forbidden</html>"}, ResultForbidden},
		{"proxy 404", answer{404, "404 page not found"}, ResultNotFound},
		{"proxy 409", answer{409, ""}, ResultConflict},
		{"proxy 429", answer{429, "slow down"}, ResultThrottled},
		{"proxy 502", answer{502, "Bad Gateway"}, ResultServerError},
		{"proxy 503", answer{503, `{"kind":"Other","reason":"NotFound"}`}, ResultServerError},
		{"proxy 504", answer{504, "Gateway Timeout"}, ResultTimeout},
		{"proxy 400", answer{400, ""}, ResultError},
		{"proxy 302", answer{302, ""}, ResultError},
		{"not JSON", answer{200, "<html>"}, ResultError},
		{"too long", answer{200, `"` + strings.Repeat("x", maxBodyBytes) + `"`}, ResultError},
	}
	byNode := map[string]answer{}
	for i, tt := range tests {
		byNode[fmt.Sprint("n", i)] = tt.answer
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := byNode[strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/nodes/"), "/")[0]]
		if strings.HasPrefix(a.body, "{") {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(a.code)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(srv.Close)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testNodeClient(t, &rest.Config{Host: srv.URL}, fmt.Sprint("n", i))
			_, err := c.conditions(t.Context())
			assert.Equal(t, tt.want, classify(err), "get: %v", err)
			if tt.code != 200 {
				// A refusal is apimachinery's error, with the API server's
				// own words where it sent a Status.
				var refused *apierrors.StatusError
				require.ErrorAs(t, err, &refused)
				assert.Equal(t, int32(tt.code), refused.Status().Code)
				var sent metav1.Status
				if json.Unmarshal([]byte(tt.body), &sent) == nil && sent.Kind == "Status" {
					assert.Equal(t, sent.Message, refused.Status().Message)
				}
			}
			if tt.name == "not JSON" {
				return // a patch does not read the body of a success
			}
			err = c.patchStatus(t.Context(), []byte("{}"))
			assert.Equal(t, tt.want, classify(err), "patch: %v", err)
		})
	}

	t.Run("no answer", func(t *testing.T) {
		// A port nothing listens on.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		c := testNodeClient(t, &rest.Config{Host: "http://" + addr}, "n")
		_, err = c.conditions(t.Context())
		assert.Equal(t, ResultUnreachable, classify(err), "%v", err)
	})

	hung := httptest.NewUnstartedServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		// The server notices a client that hung up only once the body is read.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		// Never an answer: a handler that returned would send a 200, which
		// a client that gave up a moment ago may still read.
		panic(http.ErrAbortHandler)
	}))
	hung.StartTLS()
	t.Cleanup(hung.Close)
	t.Run("unknown certificate", func(t *testing.T) {
		c := testNodeClient(t, &rest.Config{Host: hung.URL}, "n")
		_, err := c.conditions(t.Context())
		assert.Equal(t, ResultUnreachable, classify(err), "%v", err)
	})
	insecure := rest.TLSClientConfig{Insecure: true}
	t.Run("request timeout", func(t *testing.T) {
		c := testNodeClient(t, &rest.Config{Host: hung.URL, TLSClientConfig: insecure}, "n")
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		err := c.patchStatus(ctx, []byte("{}"))
		assert.Equal(t, ResultTimeout, classify(err), "%v", err)
	})
	t.Run("timeout of the configuration", func(t *testing.T) {
		c := testNodeClient(t, &rest.Config{Host: hung.URL, TLSClientConfig: insecure, Timeout: 50 * time.Millisecond}, "n")
		_, err := c.conditions(t.Context())
		assert.Equal(t, ResultTimeout, classify(err), "%v", err)
	})

	t.Run("errors as such", func(t *testing.T) {
		refused := &url.Error{Op: "Patch", URL: "https://127.0.0.1:6443/api/v1/nodes/n/status",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
		for _, tt := range []struct {
			err  error
			want string
		}{
			{nil, ResultSuccess},
			{refused, ResultUnreachable},
			{&url.Error{Op: "Get", URL: "https://10.0.0.1/", Err: &timeoutError{}}, ResultTimeout},
			{context.DeadlineExceeded, ResultTimeout},
			{&url.Error{Op: "Get", URL: "https://x/", Err: context.DeadlineExceeded}, ResultTimeout},
			{apierrors.NewServerTimeout(gr, "patch", 1), ResultTimeout},
			{apierrors.NewGenericServerResponse(503, "PATCH", gr, "n", "unknown", 0, true), ResultServerError},
			{errors.New("something else"), ResultError},
		} {
			assert.Equal(t, tt.want, classify(tt.err), "%v", tt.err)
			if tt.err != nil {
				assert.Equal(t, tt.want, classify(fmt.Errorf("patch status of node n: %w", tt.err)), "wrapped %v", tt.err)
			}
		}
	})
}

type timeoutError struct{}

func (*timeoutError) Error() string   { return "i/o timeout" }
func (*timeoutError) Timeout() bool   { return true }
func (*timeoutError) Temporary() bool { return true }

// testNodeClient is a node client whose connections close when t ends.
func testNodeClient(t *testing.T, kube *rest.Config, node string) *nodeClient {
	t.Helper()
	c, err := newNodeClient(kube, node)
	require.NoError(t, err)
	t.Cleanup(c.closeIdle)
	return c
}
