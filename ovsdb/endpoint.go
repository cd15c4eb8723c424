package ovsdb

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ParseEndpoint validates an --ovsdb value: unix:PATH or tcp:HOST:PORT.
func ParseEndpoint(s string) (network, address string, err error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid --ovsdb %q: %s", s, why)
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", bad("want unix:PATH or tcp:HOST:PORT")
	}
	switch scheme {
	case "unix":
		if rest == "" {
			return "", "", bad("unix: needs a socket path")
		}
		return "unix", rest, nil
	case "tcp":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return "", "", bad("want tcp:HOST:PORT (IPv6 hosts in brackets)")
		}
		if host == "" {
			return "", "", bad("tcp: needs a host")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", "", bad("port must be a number from 1 to 65535")
		}
		return "tcp", rest, nil
	case "ssl":
		return "", "", bad("ssl: is not supported; use unix:PATH or tcp:HOST:PORT")
	default:
		return "", "", bad("want unix:PATH or tcp:HOST:PORT")
	}
}
