package appctl

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseDPIFShow reads the answer to dpif/show: the ports each bridge has
// opened, as
//
//	netdev@ovs-netdev: hit:0 missed:0
//	  br-int:
//	    br-int 65534/1: (dummy-internal)
//	    gw0 1/2: (dummy-internal)
//
// and returns the OpenFlow port number of each of the named ports it lists
// (all of them when names is empty). Lines of other ports are skipped, so
// what is kept does not grow with the bridge.
func ParseDPIFShow(text string, names []string) (map[string]int, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	ports := make(map[string]int, len(names))
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		left, _, ok := strings.Cut(line, ": (")
		if !ok {
			continue // a datapath's or a bridge's header
		}
		sp := strings.LastIndexByte(left, ' ')
		if sp <= 0 {
			return nil, fmt.Errorf("%w: port line %q is not \"NAME OFPORT/DPPORT: (TYPE)\"", ErrMalformed, shorten(line))
		}
		name, numbers := left[:sp], left[sp+1:]
		if len(want) > 0 && !want[name] {
			continue
		}
		of, _, _ := strings.Cut(numbers, "/")
		n, err := strconv.Atoi(of)
		if err != nil {
			return nil, fmt.Errorf("%w: port line %q has no OpenFlow port number", ErrMalformed, shorten(line))
		}
		ports[name] = n
	}
	return ports, nil
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
