package nodecondition

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
)

// maxBodyBytes bounds what the writer reads of one answer. The API server
// takes no request body above 3 MiB, so no Node it sends comes near this;
// the bound only keeps a misbehaving proxy from making the writer read
// without end.
const maxBodyBytes = 16 << 20

// nodeClient sends the writer's two requests, a GET of its Node and a
// strategic-merge PATCH of the Node's status, with client-go's transport
// (credentials, TLS, user agent, timeout) but without its typed clientset:
// linking that, and the API types it brings, costs the daemon about 10 MiB of
// memory and 15 MiB of binary for these two requests. Unlike the clientset's,
// these requests are never retried inside one attempt (on a 429 or 5xx with
// Retry-After): the writer's own backoff paces every retry.
type nodeClient struct {
	http   *http.Client
	node   string // URL of the Node
	status string // URL of its status subresource
}

func newNodeClient(kube *rest.Config, node string) (*nodeClient, error) {
	hc, err := rest.HTTPClientFor(kube)
	if err != nil {
		return nil, fmt.Errorf("node condition: Kubernetes client: %w", err)
	}
	// The core group's path, below the path of the host if it has one (a
	// proxy in front of the API server), as the clientset builds it.
	core := rest.CopyConfig(kube)
	core.APIPath, core.GroupVersion = "/api", &schema.GroupVersion{Version: "v1"}
	base, apiPath, err := rest.DefaultServerUrlFor(core)
	if err != nil {
		return nil, fmt.Errorf("node condition: Kubernetes API server %q: %w", kube.Host, err)
	}
	u := base.JoinPath(apiPath, "nodes", node)
	return &nodeClient{http: hc, node: u.String(), status: u.JoinPath("status").String()}, nil
}

// conditions reads the Node's conditions.
func (c *nodeClient) conditions(ctx context.Context) ([]nodeCondition, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.node, nil)
	if err != nil {
		return nil, err
	}
	var node struct {
		Status struct {
			Conditions []nodeCondition `json:"conditions"`
		} `json:"status"`
	}
	if err := c.do(req, &node); err != nil {
		return nil, err
	}
	return node.Status.Conditions, nil
}

// patchStatus sends a strategic-merge patch of the Node's status.
func (c *nodeClient) patchStatus(ctx context.Context, patch []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, c.status, bytes.NewReader(patch))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/strategic-merge-patch+json")
	return c.do(req, nil)
}

// do sends req and decodes a successful answer into out, unless out is nil.
// A refusal or failure of the API server is a *statusError.
func (c *nodeClient) do(req *http.Request, out any) error {
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err // a *url.Error, which names the method and URL
	}
	defer resp.Body.Close()
	// Read to the end, so that the connection is kept for the next request.
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("read answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	if len(body) > maxBodyBytes {
		return fmt.Errorf("answer to %s %s: longer than %d bytes", req.Method, req.URL.Path, maxBodyBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return newStatusError(resp.StatusCode, body)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// closeIdle closes the connections kept for the next request.
func (c *nodeClient) closeIdle() {
	utilnet.CloseIdleConnectionsFor(c.http.Transport)
}

// statusError is an answer of the API server, or of a proxy in front of it,
// with a status other than 2xx.
type statusError struct {
	code int // the HTTP status
	// reason and message are those of the Status object the API server sends
	// with a refusal; empty when the body is something else.
	reason  string
	message string
}

func newStatusError(code int, body []byte) *statusError {
	e := &statusError{code: code}
	var s struct {
		Kind    string `json:"kind"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &s) == nil && s.Kind == "Status" {
		e.reason, e.message = s.Reason, s.Message
	}
	return e
}

func (e *statusError) Error() string {
	if e.message != "" {
		return e.message
	}
	return fmt.Sprintf("the server answered %d %s", e.code, http.StatusText(e.code))
}
