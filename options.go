package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/ovsdb"
)

// Defaults of the shared flags: where Debian, the upstream packages and the
// CNIs' containers keep OVS's sockets, and the bridge every CNI gates on.
const (
	defaultOVSDB     = "unix:/var/run/openvswitch/db.sock"
	defaultOVSRunDir = "/var/run/openvswitch"
	defaultBridge    = "br-int"
	envPrefix        = "OVSGATE_"
)

// gateOptions are the flags serve, wait and check share.
type gateOptions struct {
	ovsdb           string
	ovsRunDir       string
	bridges         []string
	requireFeatures []string
	requirePorts    []string
	requireFlows    bool
	statusFile      string
	timeout         time.Duration

	requirements []gate.Requirement // parsed by validate
}

func (o *gateOptions) addFlags(fs *pflag.FlagSet, statusFile string, timeout time.Duration, timeoutHelp string) {
	fs.StringVar(&o.ovsdb, "ovsdb", defaultOVSDB, "OVSDB endpoint: unix:PATH or tcp:HOST:PORT")
	fs.StringVar(&o.ovsRunDir, "ovs-rundir", defaultOVSRunDir, "directory holding ovs-vswitchd.pid and ovs-vswitchd.<pid>.ctl")
	fs.StringSliceVar(&o.bridges, "bridge", []string{defaultBridge}, "bridge to gate on; repeatable or comma-separated")
	fs.StringSliceVar(&o.requireFeatures, "require-feature", nil,
		"datapath feature that must hold: NAME (must be Yes) or NAME>=N (also >, =, <=, <); repeatable or comma-separated")
	fs.StringSliceVar(&o.requirePorts, "require-port", nil,
		"interface that must exist, have an OpenFlow port number, no error, and be opened by the ovs-vswitchd answering now; repeatable or comma-separated")
	fs.BoolVar(&o.requireFlows, "require-flows-restored", false,
		"not ready while other_config:flow-restore-wait is true (off by default: the CNI agent is the one that clears it)")
	fs.StringVar(&o.statusFile, "status-file", statusFile, `JSON status file, replaced atomically; "" disables`)
	fs.DurationVar(&o.timeout, "timeout", timeout, timeoutHelp)
}

// validate rejects bad input before anything starts.
func (o *gateOptions) validate() error {
	if _, _, err := ovsdb.ParseEndpoint(o.ovsdb); err != nil {
		return err
	}
	if strings.TrimSpace(o.ovsRunDir) == "" {
		return fmt.Errorf("invalid --ovs-rundir: must not be empty")
	}
	if len(o.bridges) == 0 {
		return fmt.Errorf("invalid --bridge: bridge name must not be empty")
	}
	seen := make(map[string]bool, len(o.bridges))
	bridges := o.bridges[:0:0]
	for _, br := range o.bridges {
		if err := validateBridgeName(br); err != nil {
			return err
		}
		if !seen[br] {
			seen[br] = true
			bridges = append(bridges, br)
		}
	}
	o.bridges = bridges
	o.requirements = o.requirements[:0]
	for _, s := range o.requireFeatures {
		r, err := gate.ParseRequirement(s)
		if err != nil {
			return fmt.Errorf("invalid --require-feature %q: %w", s, err)
		}
		o.requirements = append(o.requirements, r)
	}
	ports := o.requirePorts[:0:0]
	for _, p := range o.requirePorts {
		switch {
		case p == "":
			return fmt.Errorf("invalid --require-port: port name must not be empty")
		case strings.TrimSpace(p) != p || strings.ContainsAny(p, " \t\n/"):
			return fmt.Errorf("invalid --require-port %q: interface names have no spaces or slashes", p)
		case len(p) > 255:
			return fmt.Errorf("invalid --require-port %q: longer than 255 bytes", p)
		}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	o.requirePorts = ports
	if o.timeout < 0 {
		return fmt.Errorf("invalid --timeout %s: must not be negative", o.timeout)
	}
	return nil
}

func validateBridgeName(br string) error {
	switch {
	case br == "":
		return fmt.Errorf("invalid --bridge: bridge name must not be empty")
	case strings.TrimSpace(br) != br || strings.ContainsAny(br, " \t\n/"):
		return fmt.Errorf("invalid --bridge %q: bridge names have no spaces or slashes", br)
	case len(br) > 255:
		return fmt.Errorf("invalid --bridge %q: longer than 255 bytes", br)
	}
	return nil
}

func (o *gateOptions) config() gate.Config {
	return gate.Config{
		OVSDB:        o.ovsdb,
		RunDir:       o.ovsRunDir,
		Bridges:      o.bridges,
		Requirements: o.requirements,

		RequirePorts:         o.requirePorts,
		RequireFlowsRestored: o.requireFlows,
	}
}

// bindEnv sets every flag the command line left alone from its OVSGATE_<NAME>
// variable, if set: OVSGATE_BRIDGE=br-int,br-ex, OVSGATE_STATUS_FILE=, ...
func bindEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := envName(f.Name)
		val, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if serr := cmd.Flags().Set(f.Name, val); serr != nil {
			err = fmt.Errorf("invalid %s=%q: %w", name, val, serr)
		}
	})
	return err
}

// envName is the environment variable that configures flag name.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// prepare binds the environment and validates the options; every failure is a
// usage error (exit code 2).
func prepare(cmd *cobra.Command, o *gateOptions) error {
	if err := bindEnv(cmd); err != nil {
		return usageError(err)
	}
	if err := o.validate(); err != nil {
		return usageError(err)
	}
	return nil
}

// quietUnlessVerbose keeps the gate's own log lines out of the output of the
// interactive commands, which print their own progress, unless -v was given.
func quietUnlessVerbose() {
	if !klog.V(1).Enabled() {
		klog.LogToStderr(false)
		klog.SetOutput(io.Discard)
	}
}
