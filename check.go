package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/probe"
	"github.com/ovsgate/ovsgate/status"
)

type checkOptions struct {
	gateOptions
	output          string
	serveStatusFile string
}

func newCheckCommand(stdout io.Writer) *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Evaluate readiness once and print it (exit 0 ready, 1 not ready)",
		Long: "check evaluates the gate once, bounded by --timeout, and prints a table or, with\n" +
			"-o json, the status JSON. It exits 0 when ready and 1 when not. It shows since when\n" +
			"ovs-vswitchd answers only as a running serve's status file says (--serve-status-file).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			validOutput := func() error {
				if o.output != "table" && o.output != "json" {
					return badFlag("output", o.output, "want table or json")
				}
				return nil
			}
			if err := prepare(cmd, o.validate, validOutput); err != nil {
				return err
			}
			return o.run(cmd.Context(), stdout)
		},
	}
	o.addFlags(cmd.Flags(), "", 5*time.Second, "how long the evaluation may take (0: no limit)")
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&o.serveStatusFile, "serve-status-file", probe.DefaultStatusFile,
		`a running serve's status file, read for when ovsgate first reached ovs-vswitchd and saw flow-restore-wait set; "" disables`)
	return cmd
}

func (o *checkOptions) run(ctx context.Context, stdout io.Writer) error {
	quietUnlessVerbose()
	st, err := gate.Evaluate(ctx, o.config(), o.timeout)
	if err != nil {
		return fatalError(err)
	}
	s := st.Status
	fromServe := sinceFromServe(&s, o.serveStatusFile)
	if o.statusFile != "" {
		if err := probe.NewStatusFile(o.statusFile).Write(s); err != nil {
			return fatalError(err)
		}
	}
	if o.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return fatalError(err)
		}
	} else {
		printTable(stdout, s, fromServe)
	}
	if !s.Ready {
		return silentExit(exitNotReady)
	}
	return nil
}

// sinceFromServe replaces what check cannot know itself, when ovsgate
// first reached the ovs-vswitchd answering now and first saw
// flow-restore-wait set, with what a running serve's status file at path
// says: check reached the instance just now, which says nothing of how
// long it has been answering. The file counts when its serve has not
// stopped, it names the same instance (pid and version) and it reached that
// instance no later than check did; otherwise s keeps no such times. It
// reports whether the times are the file's.
func sinceFromServe(s *gate.Status, path string) bool {
	own := s.VSwitchd
	s.VSwitchd.Since, s.VSwitchd.FlowRestoreWaitSince = nil, nil
	if path == "" || own.Since == nil {
		return false
	}
	served, err := status.Read(path)
	if err != nil {
		klog.V(2).InfoS("No serve's status file to read times from", "path", path, "err", err)
		return false
	}
	vs := served.VSwitchd
	if served.Reason == gate.ReasonStopped || vs.Since == nil || vs.PID != own.PID || vs.Version != own.Version || vs.Since.After(own.Since.Time) {
		return false
	}
	s.VSwitchd.Since = vs.Since
	if own.FlowRestoreWaitSince != nil && vs.FlowRestoreWaitSince != nil {
		s.VSwitchd.FlowRestoreWaitSince = vs.FlowRestoreWaitSince
	}
	return true
}

// printTable writes the status the way an operator reads it at a glance;
// fromServe says that its times are a running serve's.
func printTable(w io.Writer, s gate.Status, fromServe bool) {
	from := ""
	if fromServe {
		from = " (from serve's status file)"
	}
	if s.Ready {
		fmt.Fprintln(w, "READY")
	} else {
		fmt.Fprintf(w, "NOT READY: %s\n", s.Reason)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	conn := "connected"
	if !s.OVSDB.Connected {
		conn = "not connected"
	}
	fmt.Fprintf(tw, "OVSDB\t%s\t%s\n", s.OVSDB.Endpoint, conn)
	if s.VSwitchd.PID != 0 {
		since := ""
		if s.VSwitchd.Since != nil {
			since = "since " + s.VSwitchd.Since.UTC().Format(time.RFC3339) + from
		}
		fmt.Fprintf(tw, "ovs-vswitchd\tpid %d\tversion %s\t%s\n", s.VSwitchd.PID, s.VSwitchd.Version, since)
	} else {
		fmt.Fprintf(tw, "ovs-vswitchd\tnot reachable\t\n")
	}
	switch f := s.VSwitchd.FlowRestoreWait; {
	case f == nil:
		fmt.Fprintf(tw, "flow-restore-wait\tunknown\t(OVSDB not read)\n")
	case *f:
		by := ""
		if s.VSwitchd.FlowRestoreWaitBy != "" {
			by = "set by " + s.VSwitchd.FlowRestoreWaitBy
		}
		since := ""
		if s.VSwitchd.FlowRestoreWaitSince != nil {
			since = "seen since " + s.VSwitchd.FlowRestoreWaitSince.UTC().Format(time.RFC3339) + from
		}
		fmt.Fprintf(tw, "flow-restore-wait\tset: not forwarding\t%s\n", strings.TrimSpace(since+" "+by))
	default:
		fmt.Fprintf(tw, "flow-restore-wait\tnot set\t\n")
	}
	if d := s.VSwitchd.DPDK; d != nil {
		fmt.Fprintf(tw, "DPDK\tdpdk-init=%s\tinitialized %s\n", d.Init, yesNo(d.Initialized))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "BRIDGE\tREADY\tDATAPATH ID\tTYPE\tREASON")
	for _, b := range s.Bridges {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, yesNo(b.Ready), orDash(b.DatapathID), orDash(b.DatapathType), orDash(b.Reason))
	}
	if len(s.Ports) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "PORT\tREADY\tOFPORT\tERROR\tREASON")
		for _, p := range s.Ports {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", p.Name, yesNo(p.Ready), p.OFPort, orDash(p.Error), orDash(p.Reason))
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CHECK\tOK\tMESSAGE")
	for _, c := range s.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, yesNo(c.OK), orDash(c.Message))
	}
	_ = tw.Flush()

	for _, b := range s.Bridges {
		if len(b.Features) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nFEATURES OF %s\n", b.Name)
		names := make([]string, 0, len(b.Features))
		for n := range b.Features {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool { return strings.ToLower(names[i]) < strings.ToLower(names[j]) })
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, n := range names {
			fmt.Fprintf(tw, "  %s\t%s\n", n, featureValue(b.Features[n]))
		}
		_ = tw.Flush()
	}
}

func featureValue(v any) string {
	switch v := v.(type) {
	case bool:
		return yesNo(v)
	default:
		return fmt.Sprint(v)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
