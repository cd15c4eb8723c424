package main

import (
	"errors"
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
	o.bridges = []string{defaultBridge}
	fs.Var(&nameList{names: &o.bridges}, "bridge", "bridge to gate on; repeatable or comma-separated")
	fs.StringSliceVar(&o.requireFeatures, "require-feature", nil,
		"datapath feature that must hold: NAME (must be Yes) or NAME>=N (also >, =, <=, <); repeatable or comma-separated")
	fs.StringSliceVar(&o.requirePorts, "require-port", nil,
		"interface that must exist, have an OpenFlow port number, no error, and be opened by the ovs-vswitchd answering now; repeatable or comma-separated")
	fs.BoolVar(&o.requireFlows, "require-flows-restored", false,
		"not ready while other_config:flow-restore-wait is true (off by default: the CNI agent is the one that clears it)")
	fs.StringVar(&o.statusFile, "status-file", statusFile, `JSON status file, replaced atomically; "" disables`)
	fs.DurationVar(&o.timeout, "timeout", timeout, timeoutHelp)
}

// nameList is a repeatable, comma-separated list of names that keeps every
// element, empty ones included, so that validate can refuse an empty name
// wherever it stands. pflag's own string slice drops an empty value given
// after another one, so "--bridge br-int --bridge=" would pass as
// "--bridge br-int". The first value given replaces the default; later
// ones add to it.
type nameList struct {
	names *[]string
	set   bool
}

func (l *nameList) Set(v string) error {
	if !l.set {
		*l.names, l.set = nil, true
	}
	*l.names = append(*l.names, strings.Split(v, ",")...)
	return nil
}

func (l *nameList) String() string { return "[" + strings.Join(*l.names, ",") + "]" }

// Type is what the help shows after the flag's name, as for a string slice.
func (l *nameList) Type() string { return "strings" }

// flagError is bad input in one flag. Where the value came from the flag's
// OVSGATE_* variable, prepare says so, naming the variable.
type flagError struct {
	flag, value, why string
}

func (e *flagError) Error() string { return fmt.Sprintf("invalid --%s %q: %s", e.flag, e.value, e.why) }

func badFlag(flag, value, format string, args ...any) error {
	return &flagError{flag: flag, value: value, why: fmt.Sprintf(format, args...)}
}

// validate rejects bad input before anything starts.
func (o *gateOptions) validate() error {
	if _, _, err := ovsdb.ParseEndpoint(o.ovsdb); err != nil {
		return badFlag("ovsdb", o.ovsdb, "%v", err)
	}
	if strings.TrimSpace(o.ovsRunDir) == "" {
		return badFlag("ovs-rundir", o.ovsRunDir, "must not be empty")
	}
	seen := make(map[string]bool, len(o.bridges))
	bridges := o.bridges[:0:0]
	for _, br := range o.bridges {
		if err := validateName("bridge", br); err != nil {
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
			return badFlag("require-feature", s, "%v", err)
		}
		o.requirements = append(o.requirements, r)
	}
	ports := o.requirePorts[:0:0]
	for _, p := range o.requirePorts {
		if err := validateName("require-port", p); err != nil {
			return err
		}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	o.requirePorts = ports
	if o.timeout < 0 {
		return badFlag("timeout", o.timeout.String(), "must not be negative")
	}
	return nil
}

// validateName checks a bridge or interface name as OVS takes it.
func validateName(flag, name string) error {
	switch {
	case name == "":
		return badFlag(flag, name, "%s name must not be empty", strings.TrimPrefix(flag, "require-"))
	case strings.TrimSpace(name) != name || strings.ContainsAny(name, " \t\n/"):
		return badFlag(flag, name, "names have no spaces or slashes")
	case len(name) > 255:
		return badFlag(flag, name, "longer than 255 bytes")
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
// It returns the flags so set, and warns on stderr about OVSGATE_* variables
// that configure no flag of any command (a typo such as OVSGATE_BRIDGES).
func bindEnv(cmd *cobra.Command) (fromEnv map[string]bool, err error) {
	fromEnv = map[string]bool{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := envName(f.Name)
		val, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		// The value's own parser: its error names no flag, for this
		// value came from the variable.
		if serr := f.Value.Set(val); serr != nil {
			err = fmt.Errorf("invalid %s=%q: %w", name, val, serr)
			return
		}
		fromEnv[f.Name] = true
	})
	known := map[string]bool{}
	for _, c := range cmd.Root().Commands() {
		c.Flags().VisitAll(func(f *pflag.Flag) { known[envName(f.Name)] = true })
	}
	cmd.Root().PersistentFlags().VisitAll(func(f *pflag.Flag) { known[envName(f.Name)] = true })
	var unknown []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !known[name] {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		fmt.Fprintf(cmd.ErrOrStderr(), "ovsgate: warning: %s configures no flag of ovsgate; ignored\n", name)
	}
	return fromEnv, err
}

// envName is the environment variable that configures flag name.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// prepare binds the environment and runs the validations; every failure is
// a usage error (exit code 2), and one about a value that came from an
// OVSGATE_* variable names the variable, not the flag.
func prepare(cmd *cobra.Command, validations ...func() error) error {
	fromEnv, err := bindEnv(cmd)
	if err != nil {
		return usageError(err)
	}
	for _, validate := range validations {
		if err := validate(); err != nil {
			var fe *flagError
			if errors.As(err, &fe) && fromEnv[fe.flag] {
				name := envName(fe.flag)
				err = fmt.Errorf("invalid %s=%q: %s", name, os.Getenv(name), fe.why)
			}
			return usageError(err)
		}
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
