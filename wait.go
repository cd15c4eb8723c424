package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/probe"
)

func newWaitCommand(stderr io.Writer) *cobra.Command {
	o := &gateOptions{}
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Block until ready (for init containers)",
		Long: "wait blocks until every gated bridge is ready, printing one line per state change\n" +
			"to stderr. It exits 0 when ready and 1 when --timeout passes first.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := prepare(cmd, o.validate); err != nil {
				return err
			}
			return runWait(cmd.Context(), o, stderr)
		},
	}
	o.addFlags(cmd.Flags(), "", 0, "give up after this long (0: wait for ever)")
	return cmd
}

func runWait(ctx context.Context, o *gateOptions, stderr io.Writer) error {
	quietUnlessVerbose()
	start := time.Now()
	cfg := o.config()
	g, err := gate.New(cfg)
	if err != nil {
		return fatalError(err)
	}
	defer g.Start(ctx)()

	var timeout <-chan time.Time
	if o.timeout > 0 {
		t := time.NewTimer(o.timeout)
		defer t.Stop()
		timeout = t.C
	}
	// Until the gate has settled, states such as "connecting" are not
	// worth a line; print the state as of settling, then every change.
	var last gate.State
	warned := map[string]bool{} // required features an answered datapath does not report
	updates := g.Subscribe()
	for {
		select {
		case s := <-updates:
			if o.statusFile != "" {
				if err := probe.NewStatusFile(o.statusFile).Write(s.Status); err != nil {
					klog.ErrorS(err, "Cannot write status file", "path", o.statusFile)
				}
			}
			if s.Ready {
				fmt.Fprintf(stderr, "ovsgate: ready after %s (ovs-vswitchd pid %d)\n",
					time.Since(start).Round(time.Millisecond), s.VSwitchd.PID)
				return nil
			}
			if s.Settled && (!last.Settled || s.Reason != last.Reason) {
				fmt.Fprintf(stderr, "ovsgate: not ready: %s\n", s.Reason)
			}
			// Most likely a typo, which waiting does not mend: said once,
			// as soon as it is known.
			for _, w := range gate.Unreported(cfg.Requirements, s.Status) {
				if !warned[w] {
					warned[w] = true
					fmt.Fprintf(stderr, "ovsgate: warning: %s; still waiting, as a later Open vSwitch may report it\n", w)
				}
			}
			last = s
		case <-timeout:
			return fatalError(fmt.Errorf("timed out after %s: %s", o.timeout, last.Reason))
		case <-ctx.Done():
			return fatalError(fmt.Errorf("interrupted after %s: %s", time.Since(start).Round(time.Millisecond), last.Reason))
		}
	}
}
