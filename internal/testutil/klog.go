package testutil

import (
	"flag"
	"os"
	"testing"

	"k8s.io/klog/v2"
)

// CaptureKlog sends klog's output, at verbosity 0, to a buffer until the
// test ends; the returned func sets the verbosity (-v).
func CaptureKlog(t testing.TB) (*SyncBuffer, func(v string)) {
	t.Helper()
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	set := func(name, value string) {
		if err := fs.Set(name, value); err != nil {
			t.Fatalf("klog -%s=%s: %v", name, value, err)
		}
	}
	buf := &SyncBuffer{}
	set("logtostderr", "false")
	set("one_output", "true")
	set("v", "0")
	klog.SetOutput(buf)
	t.Cleanup(func() {
		klog.Flush()
		set("v", "0")
		set("one_output", "false")
		set("logtostderr", "true")
		klog.SetOutput(os.Stderr)
	})
	return buf, func(v string) { set("v", v) }
}
