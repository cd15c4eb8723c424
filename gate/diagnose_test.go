package gate

import (
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ovsgate/ovsgate/ovsdb"
)

func TestKernelDiagnosis(t *testing.T) {
	tests := []struct {
		name  string
		info  ovsdb.BridgeInfo
		names []string
		err   error
		want  string
	}{
		{"netdev bridge is not diagnosed", ovsdb.BridgeInfo{Exists: true, DatapathType: "netdev"}, nil, os.ErrNotExist, ""},
		{"missing bridge is not diagnosed", ovsdb.BridgeInfo{}, nil, os.ErrNotExist, ""},
		{"module not loaded", ovsdb.BridgeInfo{Exists: true}, nil, os.ErrNotExist, "kernel datapath: openvswitch kernel module not loaded"},
		{"module error", ovsdb.BridgeInfo{Exists: true, DatapathType: "system"}, nil, errors.New("permission denied"), "kernel datapath: cannot list datapaths: permission denied"},
		{"ovs-system absent", ovsdb.BridgeInfo{Exists: true, DatapathType: "system"}, []string{"other"}, nil, "kernel datapath: ovs-system datapath absent"},
		{"ovs-system present", ovsdb.BridgeInfo{Exists: true, DatapathType: "system"}, []string{"ovs-system"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			k := &kernelDiagnosis{list: func() ([]string, error) { calls++; return tt.names, tt.err }}
			assert.Equal(t, tt.want, k.explain(tt.info))
			assert.Equal(t, tt.want, k.explain(tt.info), "cached answer")
			assert.LessOrEqual(t, calls, 1, "the kernel is asked at most once per TTL")
		})
	}
}

// The real lookup, on whatever this machine has: without the openvswitch
// module it says so as a message, not a failure; with it (a system OVS on
// the test machine) the kernel answers, and names the module no more.
func TestKernelDiagnosisReal(t *testing.T) {
	msg := newKernelDiagnosis().explain(ovsdb.BridgeInfo{Exists: true, DatapathType: "system"})
	if _, err := os.Stat("/sys/module/openvswitch"); errors.Is(err, os.ErrNotExist) {
		assert.Equal(t, "kernel datapath: openvswitch kernel module not loaded", msg)
		return
	}
	assert.Contains(t, []string{"", "kernel datapath: ovs-system datapath absent"}, msg, "the kernel answers once the module is loaded")
}
