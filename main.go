// Command ovsgate is a readiness gate for Open vSwitch: it tells CNI agents,
// kubelet and operators when ovs-vswitchd has configured the gated bridges and
// answers for their datapath features.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit code; it is the
// one place where errors become exit codes.
func run(args []string, stdout, stderr io.Writer) int {
	defer klog.Flush()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "ovsgate: %v\n", ee.err)
		}
		return ee.code
	}
	// Anything not wrapped by our commands comes from cobra's own parsing: an
	// unknown command or flag, a wrong argument count.
	fmt.Fprintf(stderr, "ovsgate: %v\n", err)
	return exitUsage
}

// Exit codes, as the README lists them for every command; users' scripts
// and manifests branch on them.
const (
	exitOK       = 0
	exitNotReady = 1
	exitFatal    = 1
	exitUsage    = 2
)

// exitError carries the exit code a command wants; err, when non-nil, is
// printed as the one line on stderr.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error { return &exitError{code: exitUsage, err: err} }
func fatalError(err error) error { return &exitError{code: exitFatal, err: err} }

// silentExit ends the command with code after it has printed what it had to say.
func silentExit(code int) error { return &exitError{code: code} }

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "ovsgate",
		Short: "Readiness gate for Open vSwitch bridges",
		Long: "ovsgate tells CNI agents, kubelet and operators when ovs-vswitchd has configured\n" +
			"the gated bridges and answers for their datapath features.",
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })

	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	for _, name := range []string{"v", "vmodule"} {
		root.PersistentFlags().AddFlag(pflag.PFlagFromGoFlag(klogFlags.Lookup(name)))
	}
	root.PersistentFlags().Lookup("v").Shorthand = "v"
	root.PersistentFlags().Lookup("v").Value = verbosityValue{root.PersistentFlags().Lookup("v").Value}

	root.AddCommand(
		newServeCommand(),
		newWaitCommand(stderr),
		newCheckCommand(stdout),
		newVersionCommand(stdout),
	)
	return root
}
