package nodecondition

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
)

// maxBodyBytes bounds what the writer reads of one answer. The API server
// takes no request body above 3 MiB, so no Node it sends comes near this;
// the bound only keeps a misbehaving proxy from making the writer read
// without end.
const maxBodyBytes = 16 << 20

// maxErrorTextBytes bounds what an error keeps of an answer that is not a
// Status, as client-go does.
const maxErrorTextBytes = 2048

// nodeClient sends the writer's two requests, a GET of its Node and a
// strategic-merge PATCH of the Node's status, with client-go's transport
// (credentials, TLS, user agent, timeout), and returns the API server's
// refusals as the *errors.StatusError of k8s.io/apimachinery, as client-go
// does. These requests are never retried inside one attempt (on a 429 or 5xx
// with Retry-After): the writer's own backoff paces every retry. The
// configuration's QPS and Burst do not apply: the merge window and the
// backoff bound the writer's requests.
//
// It builds the two requests itself rather than through the typed clientset
// or client-go's RESTClient, for memory. Linking the clientset, and the API
// types it brings, costs the daemon about 10 MiB of memory and 15 MiB of
// binary for these two requests. The RESTClient links nothing new, but
// running its request path costs resident memory: a serve --node-condition
// writing to a real kube-apiserver held 20.2 MiB with it (20.1 MiB with
// JSON-only codecs for the Status of a refusal) against 19.7 MiB with these
// two requests, all of the difference pages of code (its anonymous memory
// measured the same), for nothing these two requests need.
type nodeClient struct {
	http   *http.Client
	name   string // of the Node
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
	return &nodeClient{http: hc, name: node, node: u.String(), status: u.JoinPath("status").String()}, nil
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
// A refusal or failure of the API server is an *errors.StatusError.
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
		return c.refusal(req, resp, body)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// refusal is an answer other than 2xx as client-go's RESTClient returns it:
// the Status the API server sends with a refusal, or, for any other body
// (a proxy's, say), the error that k8s.io/apimachinery makes of the code.
func (c *nodeClient) refusal(req *http.Request, resp *http.Response, body []byte) error {
	var s metav1.Status
	if json.Unmarshal(body, &s) == nil && s.Kind == "Status" && s.Status == metav1.StatusFailure {
		return &apierrors.StatusError{ErrStatus: s}
	}
	msg := "unknown"
	if media, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || strings.HasPrefix(media, "text/") {
		msg = boundMessage(strings.TrimSpace(string(body)), maxErrorTextBytes)
	}
	retryAfter, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return apierrors.NewGenericServerResponse(resp.StatusCode, req.Method, schema.GroupResource{Resource: "nodes"}, c.name, msg, retryAfter, true)
}

// closeIdle closes the connections kept for the next request.
func (c *nodeClient) closeIdle() {
	utilnet.CloseIdleConnectionsFor(c.http.Transport)
}
