package hack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Without Go, or with one too old, make says so in one line instead of
// failing in a recipe with "command not found".
func TestMakeSaysWhatIsMissing(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not found")
	}
	oldGo := filepath.Join(t.TempDir(), "go")
	require.NoError(t, os.WriteFile(oldGo, []byte("#!/bin/sh\necho go1.25.3\n"), 0o755))
	for _, tt := range []struct {
		goBin, want string
	}{
		{"/nonexistent/go", "make: Go 1.26 or newer is needed and '/nonexistent/go' is not on PATH: install it from https://go.dev/dl (or set GO=/path/to/go)"},
		{oldGo, "make: Go 1.26 or newer is needed, '" + oldGo + "' is 1.25.3"},
	} {
		cmd := exec.Command("make", "-s", "--no-print-directory", "need-go", "GO="+tt.goBin)
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "make must fail: %s", out)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		assert.Equal(t, tt.want, lines[0])
	}
	cmd := exec.Command("make", "-s", "--no-print-directory", "need-go")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "this machine's Go is good enough: %s", out)
}
