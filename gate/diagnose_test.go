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

// On these machines the openvswitch module is not loaded; the real lookup
// must say so as a message, not fail.
func TestKernelDiagnosisReal(t *testing.T) {
	msg := newKernelDiagnosis().explain(ovsdb.BridgeInfo{Exists: true, DatapathType: "system"})
	if _, err := os.Stat("/sys/module/openvswitch"); err == nil {
		t.Skip("openvswitch kernel module is loaded here: " + msg)
	}
	assert.Equal(t, "kernel datapath: openvswitch kernel module not loaded", msg)
}
