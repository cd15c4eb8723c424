package kubetest

import (
	"context"
	"net"
	"net/http"
	"strings"
	"time"
)

// etcdBase is the URL prefix for requests made with EtcdClient: etcd listens
// on a unix socket, so the host part names nothing and the client's dialer
// decides where the request goes.
const etcdBase = "http://etcd"

// EtcdURL is where etcd's HTTP endpoints are for a client from EtcdClient:
// EtcdURL()+"/metrics" tells, for one, how large its database has grown.
func (c *Cluster) EtcdURL() string { return etcdBase }

// EtcdClient returns an HTTP client that reaches etcd's client socket, with
// the given timeout per request and no connection kept between requests.
func (c *Cluster) EtcdClient(timeout time.Duration) *http.Client {
	socket := c.path(strings.TrimPrefix(c.etcdURL, "unix://"))
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		},
	}
}
