package ovsdb

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, network, address, err string
	}{
		{in: "unix:/var/run/openvswitch/db.sock", network: "unix", address: "/var/run/openvswitch/db.sock"},
		{in: "unix:/tmp/odd dir#1?/db.sock", network: "unix", address: "/tmp/odd dir#1?/db.sock"},
		{in: "tcp:127.0.0.1:6640", network: "tcp", address: "127.0.0.1:6640"},
		{in: "tcp:[::1]:6640", network: "tcp", address: "[::1]:6640"},
		{in: "tcp:ovsdb.example:6641", network: "tcp", address: "ovsdb.example:6641"},
		{in: "tcp:h:1", network: "tcp", address: "h:1"},
		{in: "tcp:h:65535", network: "tcp", address: "h:65535"},
		{in: "", err: "want unix:PATH or tcp:HOST:PORT"},
		{in: "/var/run/openvswitch/db.sock", err: "want unix:PATH or tcp:HOST:PORT"},
		{in: "unix:", err: "unix: needs a socket path"},
		{in: "unix:db.sock", err: "the socket path must be absolute"},
		{in: "tcp:", err: "want tcp:HOST:PORT"},
		{in: "tcp:host", err: "want tcp:HOST:PORT"},
		{in: "tcp:::1:6640", err: "IPv6 hosts in brackets"},
		{in: "tcp::80", err: "tcp: needs a host"},
		{in: "tcp:h:", err: "port must be a number from 1 to 65535"},
		{in: "tcp:h:0", err: "port must be a number from 1 to 65535"},
		{in: "tcp:h:99999", err: "port must be a number from 1 to 65535"},
		{in: "tcp:h:+80", err: "port must be a number from 1 to 65535"},
		{in: "tcp:h:http", err: "port must be a number from 1 to 65535"},
		{in: "tcp:a#b:80", err: "unsupported characters"},
		{in: "ssl:127.0.0.1:6640", err: "ssl: (TLS) is not supported"},
		{in: "punix:/x", err: "want unix:PATH or tcp:HOST:PORT"},
		{in: "UNIX:/x", err: "want unix:PATH or tcp:HOST:PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			network, address, err := ParseEndpoint(tt.in)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				assert.NotContains(t, err.Error(), "--ovsdb", "the caller names where the value came from")
				assert.NotContains(t, err.Error(), "\n")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.network, network)
			assert.Equal(t, tt.address, address)
		})
	}
}

// libovsdb parses the endpoint as a URL and dials unix paths from URL.Path and
// tcp addresses from URL.Opaque; an empty unix path makes it dial its default
// socket. What we hand it must come back unchanged.
func TestDialEndpointRoundTrips(t *testing.T) {
	for _, in := range []string{
		"unix:/var/run/openvswitch/db.sock",
		"unix:/tmp/odd dir#1?/db%20.sock",
		"tcp:127.0.0.1:6640",
		"tcp:[::1]:6640",
	} {
		t.Run(in, func(t *testing.T) {
			network, address, err := ParseEndpoint(in)
			require.NoError(t, err)
			s, err := dialEndpoint(network, address)
			require.NoError(t, err)
			u, err := url.Parse(s)
			require.NoError(t, err)
			assert.Equal(t, network, u.Scheme)
			if network == "unix" {
				assert.Equal(t, address, u.Path)
			} else {
				assert.Equal(t, address, u.Opaque)
			}
		})
	}
}

func TestNewWatcherRejectsBadInput(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		bridges  []string
		err      string
	}{
		{"bad endpoint", "bogus", []string{"br-int"}, `invalid OVSDB endpoint "bogus": want unix:PATH or tcp:HOST:PORT`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWatcher(tt.endpoint, tt.bridges)
			require.Error(t, err)
			assert.Nil(t, w)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}

func TestNewWatcherSnapshotBeforeRun(t *testing.T) {
	w, err := NewWatcher("unix:/x", []string{"br-int", "br-ex", "br-int"}, WithPorts([]string{"gw0", "gw0"}))
	require.NoError(t, err)
	s := w.Snapshot()
	assert.Equal(t, Snapshot{
		Endpoint: "unix:/x",
		Bridges: map[string]BridgeInfo{
			"br-int": {Name: "br-int"},
			"br-ex":  {Name: "br-ex"},
		},
		Ports: map[string]PortInfo{"gw0": {Name: "gw0"}},
	}, s)
	s.Bridges["br-int"] = BridgeInfo{Name: "br-int", Exists: true}
	assert.False(t, w.Snapshot().Bridges["br-int"].Exists, "Snapshot returns a copy")
}
