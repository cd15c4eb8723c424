package testutil

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"
)

// Kustomize renders the kustomization in dir as `kubectl kustomize` does.
// Without kubectl it skips t, or fails it in CI.
func Kustomize(t testing.TB, dir string) []byte {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		SkipUnlessCI(t, "kubectl not found, cannot render %s: %v", dir, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v: %s", dir, err, stderr.String())
	}
	return out
}
