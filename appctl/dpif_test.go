package appctl

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What ovs-vswitchd 3.1 printed for a netdev bridge with an internal port,
// a tunnel, a system port and a patch port.
const dpifShow = `netdev@ovs-netdev: hit:0 missed:0
  br-int:
    br-int 65534/1: (dummy-internal)
    eth-none 3/4: (system)
    gw0 1/2: (dummy-internal)
    p-vx 2/3: (vxlan)
    patch-a 4/none: (patch: peer=patch-b)
  br-ex:
    br-ex 65534/5: (dummy-internal)
`

func TestParseDPIFShow(t *testing.T) {
	got, err := ParseDPIFShow(dpifShow, []string{"gw0", "patch-a", "missing"})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"gw0": 1, "patch-a": 4}, got)

	all, err := ParseDPIFShow(dpifShow, nil)
	require.NoError(t, err)
	assert.Len(t, all, 6)
	assert.Equal(t, 65534, all["br-ex"])

	empty, err := ParseDPIFShow("netdev@ovs-netdev: hit:0 missed:0\n", []string{"gw0"})
	require.NoError(t, err)
	assert.Empty(t, empty)

	for _, bad := range []string{"    gw0: (dummy)\n", "    gw0 x/2: (dummy)\n"} {
		_, err := ParseDPIFShow(bad, []string{"gw0"})
		assert.ErrorIs(t, err, ErrMalformed, "%q", bad)
	}
}

func FuzzParseDPIFShow(f *testing.F) {
	// What a live ovs-vswitchd prints is in testdata/fuzz.
	f.Add(dpifShow)
	f.Fuzz(func(t *testing.T, text string) {
		ports, err := ParseDPIFShow(text, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			if ports != nil {
				t.Fatal("ports with an error")
			}
			return
		}
		// Whatever it found for all names, it finds for each one asked alone;
		// and each name is in the text.
		for name, n := range ports {
			if !strings.Contains(text, name) {
				t.Fatalf("port %q is not in the text", name)
			}
			one, err := ParseDPIFShow(text, []string{name})
			if err != nil || one[name] != n {
				t.Fatalf("%q: all names give %d, asked alone %v, %v", name, n, one, err)
			}
		}
	})
}
