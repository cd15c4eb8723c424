package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A bad verbosity is one line that names where it came from and what is
// wanted, not strconv's internals; exit code 2 like any bad input.
func TestBadVerbosityIsOneClearLine(t *testing.T) {
	const want = "want a log verbosity, a whole number 0 or more"
	for _, tt := range []struct {
		env  []string
		args []string
		line string
	}{
		{[]string{"OVSGATE_V=high"}, []string{"check"}, `ovsgate: invalid OVSGATE_V="high": ` + want},
		{[]string{"OVSGATE_V=-1"}, []string{"wait"}, `ovsgate: invalid OVSGATE_V="-1": ` + want},
		{[]string{"OVSGATE_V=2.5"}, []string{"serve"}, `ovsgate: invalid OVSGATE_V="2.5": ` + want},
		{nil, []string{"check", "-v", "high"}, `ovsgate: invalid argument "high" for "-v, --v" flag: ` + want},
		{nil, []string{"serve", "--v=-3"}, `ovsgate: invalid argument "-3" for "-v, --v" flag: ` + want},
	} {
		t.Run(tt.line, func(t *testing.T) {
			r := ovsgate(t, tt.env, tt.args...)
			assert.Equal(t, 2, r.Code)
			assert.Empty(t, r.Stdout)
			assert.Equal(t, tt.line+"\n", r.Stderr)
		})
	}
}

// An empty bridge name is refused with the same words whether the whole
// value is empty or one name in a list is.
func TestEmptyBridgeNameIsOneMessage(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		args []string
		line string
	}{
		{nil, []string{"check", "--bridge", ""}, `ovsgate: invalid --bridge "": bridge name must not be empty`},
		{nil, []string{"check", "--bridge", "br-int,"}, `ovsgate: invalid --bridge "": bridge name must not be empty`},
		{nil, []string{"wait", "--bridge", ",br-int"}, `ovsgate: invalid --bridge "": bridge name must not be empty`},
		{nil, []string{"check", "--bridge", "br-int", "--bridge", ""}, `ovsgate: invalid --bridge "": bridge name must not be empty`},
		{nil, []string{"serve", "--bridge", "", "--bridge", "br-int"}, `ovsgate: invalid --bridge "": bridge name must not be empty`},
		{[]string{"OVSGATE_BRIDGE="}, []string{"serve"}, `ovsgate: invalid OVSGATE_BRIDGE="": bridge name must not be empty`},
		{[]string{"OVSGATE_BRIDGE=br-int,"}, []string{"check"}, `ovsgate: invalid OVSGATE_BRIDGE="br-int,": bridge name must not be empty`},
		{nil, []string{"check", "--require-port", "gw0,"}, `ovsgate: invalid --require-port "": port name must not be empty`},
	} {
		t.Run(tt.line, func(t *testing.T) {
			r := ovsgate(t, tt.env, tt.args...)
			assert.Equal(t, 2, r.Code)
			assert.Empty(t, r.Stdout)
			assert.Equal(t, tt.line+"\n", r.Stderr)
		})
	}
}
