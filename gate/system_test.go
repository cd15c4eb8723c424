package gate

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ovsgate/ovsgate/ovsdb"
)

// ovs-vswitchd reads these keys without regard to case: so does the gate,
// or "True" would stop forwarding while ovsgate says it does not. A row not
// read is unknown, not off.
func TestReadSystem(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  ovsdb.SystemInfo
		want system
	}{
		{name: "not read", row: ovsdb.SystemInfo{OtherConfig: map[string]string{"flow-restore-wait": "true"}}, want: system{}},
		{name: "empty row", row: ovsdb.SystemInfo{Known: true}, want: system{flowRestoreWait: flagOff}},
		{name: "any case", row: ovsdb.SystemInfo{Known: true, OtherConfig: map[string]string{"flow-restore-wait": "True", "dpdk-init": "TRY"}},
			want: system{flowRestoreWait: flagOn, dpdkInit: "try"}},
		{name: "false, DPDK on", row: ovsdb.SystemInfo{Known: true, OtherConfig: map[string]string{"flow-restore-wait": "false", "dpdk-init": "True"}, DPDKInitialized: true},
			want: system{flowRestoreWait: flagOff, dpdkInit: "true", dpdkInitialized: true}},
		{name: "other words are off", row: ovsdb.SystemInfo{Known: true, OtherConfig: map[string]string{"flow-restore-wait": "yes", "dpdk-init": "no"}},
			want: system{flowRestoreWait: flagOff}},
		{name: "owner in external_ids", row: ovsdb.SystemInfo{Known: true, OtherConfig: map[string]string{"flow-restore-wait": "TRUE"},
			ExternalIDs: map[string]string{"ovn-managed-flow-restore-wait": "True"}},
			want: system{flowRestoreWait: flagOn, flowRestoreWaitBy: "ovn-controller"}},
		{name: "owner in other_config", row: ovsdb.SystemInfo{Known: true, OtherConfig: map[string]string{"flow-restore-wait": "true", "ovn-managed-flow-restore-wait": "true"}},
			want: system{flowRestoreWait: flagOn, flowRestoreWaitBy: "ovn-controller"}},
	} {
		assert.Equal(t, tc.want, readSystem(tc.row), tc.name)
	}
}
