package gate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRequirement(t *testing.T) {
	tests := []struct {
		in      string
		want    Requirement
		wantErr string
	}{
		{in: "Recirc", want: Requirement{Name: "Recirc"}},
		{in: " CT state ", want: Requirement{Name: "CT state"}},
		{in: "Max VLAN headers>=2", want: Requirement{Name: "Max VLAN headers", Op: ">=", Value: 2}},
		{in: "Max MPLS depth > 1", want: Requirement{Name: "Max MPLS depth", Op: ">", Value: 1}},
		{in: "Sample nesting=10", want: Requirement{Name: "Sample nesting", Op: "=", Value: 10}},
		{in: "Max dp_hash algorithm<=1", want: Requirement{Name: "Max dp_hash algorithm", Op: "<=", Value: 1}},
		{in: "Max VLAN headers<3", want: Requirement{Name: "Max VLAN headers", Op: "<", Value: 3}},
		{in: "x>=-1", want: Requirement{Name: "x", Op: ">=", Value: -1}},
		{in: "", wantErr: "empty requirement"},
		{in: "   ", wantErr: "empty requirement"},
		{in: ">=2", wantErr: "missing feature name"},
		{in: "Recirc>=", wantErr: "not an integer"},
		{in: "Recirc>=two", wantErr: "not an integer"},
		{in: "Recirc>=1.5", wantErr: "not an integer"},
		{in: "Recirc=>1", wantErr: "unknown operator"},
		{in: "Recirc==1", wantErr: "unknown operator"},
		{in: "Recirc<>1", wantErr: "unknown operator"},
		{in: "Recirc: Yes", wantErr: "colon"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRequirement(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestRequirementCheck(t *testing.T) {
	tests := []struct {
		req      string
		value    any
		reported bool
		want     string
	}{
		{"Recirc", true, true, ""},
		{"Recirc", false, true, `feature "Recirc" is No, want Yes`},
		{"Recirc", nil, false, `feature "Recirc" is not reported by the datapath`},
		{"Recirc", int64(1), true, `feature "Recirc" is 1, want Yes`},
		{"Max VLAN headers>=2", int64(2), true, ""},
		{"Max VLAN headers>=2", int64(1), true, `feature "Max VLAN headers" is 1, want >= 2`},
		{"Max VLAN headers>1", int64(1), true, `feature "Max VLAN headers" is 1, want > 1`},
		{"Max VLAN headers=1", int64(1), true, ""},
		{"Max VLAN headers<=0", int64(1), true, `feature "Max VLAN headers" is 1, want <= 0`},
		{"Max VLAN headers<2", int64(1), true, ""},
		{"Recirc>=1", true, true, `feature "Recirc" is Yes, want a number >= 1`},
		{"Odd>=1", "many", true, `feature "Odd" is "many", want a number >= 1`},
	}
	for _, tt := range tests {
		r, err := ParseRequirement(tt.req)
		require.NoError(t, err)
		assert.Equal(t, tt.want, r.Unmet(tt.value, tt.reported), tt.req)
	}
}
