package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set by the Makefile through -ldflags "-X main.version=... -X main.commit=...".
var (
	version string
	commit  string
)

// buildInfo returns the version and commit, falling back to what the Go
// toolchain recorded when the linker flags were not set (go install, go run).
func buildInfo() (ver, rev string) {
	ver, rev = version, commit
	if info, ok := debug.ReadBuildInfo(); ok {
		if ver == "" && info.Main.Version != "" {
			ver = info.Main.Version
		}
		if rev == "" {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					rev = s.Value
					if len(rev) > 12 {
						rev = rev[:12]
					}
				}
			}
		}
	}
	if ver == "" {
		ver = "(devel)"
	}
	if rev == "" {
		rev = "unknown"
	}
	return ver, rev
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ver, rev := buildInfo()
			fmt.Fprintf(stdout, "ovsgate %s\ncommit: %s\ngo: %s %s/%s\n", ver, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
