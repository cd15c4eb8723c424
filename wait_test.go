package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ovsgate/ovsgate/internal/ovstest"
)

// A misspelt --require-feature is pointed out once, as soon as the
// datapath has answered, and wait goes on waiting until its timeout: a
// later Open vSwitch could report the name.
func TestWaitPointsOutAMisspeltFeatureOnce(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	r := ovsgate(t, cleanEnv(), append([]string{"wait", "--require-feature", "Recirk", "--timeout", "3s"}, sandboxArgs(s)...)...)
	assert.Equal(t, 1, r.Code, r.Stderr)
	const typo = `bridge br-int: feature "Recirk" is not reported by the datapath (did you mean Recirc?)`
	var warnings []string
	for _, line := range strings.Split(strings.TrimSpace(r.Stderr), "\n") {
		if strings.HasPrefix(line, "ovsgate: warning: ") {
			warnings = append(warnings, line)
		}
	}
	assert.Equal(t, []string{"ovsgate: warning: " + typo + "; still waiting, as a later Open vSwitch may report it"}, warnings, r.Stderr)
	assert.True(t, strings.HasSuffix(r.Stderr, "ovsgate: timed out after 3s: "+typo+"\n"), r.Stderr)
}
