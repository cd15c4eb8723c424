package ovsdb

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

const wantForm = "want unix:PATH or tcp:HOST:PORT"

// ParseEndpoint validates an OVSDB endpoint: unix:PATH with an absolute PATH,
// or tcp:HOST:PORT (IPv6 hosts in brackets). ssl: is rejected: TLS is not
// supported. An error says what is wrong, not where the value came from.
func ParseEndpoint(s string) (network, address string, err error) {
	network, address, _, err = parseEndpoint(s)
	return network, address, err
}

// parseEndpoint is ParseEndpoint that also returns the endpoint as libovsdb
// dials it.
func parseEndpoint(s string) (network, address, dialTo string, err error) {
	bad := func(msg string) (string, string, string, error) { return "", "", "", errors.New(msg) }
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return bad(wantForm)
	}
	switch scheme {
	case "unix":
		if rest == "" {
			return bad("unix: needs a socket path")
		}
		// OVS reads a relative path against its run directory, a shell user
		// against the working directory, and libovsdb silently dials its
		// default socket instead: only an absolute path is unambiguous.
		if !filepath.IsAbs(rest) {
			return bad("the socket path must be absolute")
		}
		network, address = "unix", rest
	case "tcp":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return bad("want tcp:HOST:PORT (IPv6 hosts in brackets)")
		}
		if host == "" {
			return bad("tcp: needs a host")
		}
		if n, err := strconv.Atoi(port); err != nil || strings.Trim(port, "0123456789") != "" || n < 1 || n > 65535 {
			return bad("port must be a number from 1 to 65535")
		}
		network, address = "tcp", rest
	case "ssl":
		return bad("ssl: (TLS) is not supported; " + wantForm)
	default:
		return bad(wantForm)
	}
	if dialTo, err = dialEndpoint(network, address); err != nil {
		return "", "", "", err
	}
	return network, address, dialTo, nil
}

// dialEndpoint spells network and address the way libovsdb parses them (as a
// URL), and checks that libovsdb reads back the same address: a '#' or '?' in
// a socket path must not silently cut it short.
func dialEndpoint(network, address string) (string, error) {
	var s string
	switch network {
	case "unix":
		s = (&url.URL{Scheme: "unix", Path: address, OmitHost: true}).String()
	default:
		s = network + ":" + address
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("unsupported characters in %q", address)
	}
	got := u.Opaque
	if network == "unix" {
		got = u.Path
	}
	if got != address || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("unsupported characters in %q", address)
	}
	return s, nil
}
