package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/nodecondition"
	"github.com/ovsgate/ovsgate/probe"
)

// maxLoopStall is how long the gate loop may make no progress before /livez
// fails. The loop wakes at least every ping interval and nothing it does
// waits longer than one call timeout (a connect), so three times both is a
// wide margin that still catches a stuck loop within half a minute.
const maxLoopStall = 3 * (gate.DefaultPingInterval + gate.DefaultCallTimeout)

type serveOptions struct {
	gateOptions
	probeAddr   string
	metricsAddr string

	nodeCondition string
	nodeName      string
	kubeconfig    string
	heartbeat     time.Duration
}

func newServeCommand() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: status file, probe listener and metrics",
		Long: "serve watches Open vSwitch for ever and keeps the status file, the probe listener\n" +
			"(/livez, /readyz, /status) and the metrics listener current. It exits 0 after\n" +
			"SIGTERM or SIGINT, leaving the status file not ready.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var writer *nodecondition.Writer
			makeWriter := func() (err error) {
				writer, err = o.nodeConditionWriter()
				return err
			}
			if err := prepare(cmd, o.validate, o.validateListeners, makeWriter); err != nil {
				return err
			}
			return o.run(cmd.Context(), writer)
		},
	}
	o.addFlags(cmd.Flags(), probe.DefaultStatusFile, 0,
		"log a warning if not ready this long after start (0: never)")
	cmd.Flags().StringVar(&o.probeAddr, "health-probe-bind-address", probe.DefaultProbeAddr,
		"address of the probe listener (/livez, /readyz, /status); always on")
	cmd.Flags().StringVar(&o.metricsAddr, "metrics-bind-address", probe.DefaultMetricsAddr,
		`address of the Prometheus listener (/metrics); "0" disables it`)
	cmd.Flags().StringVar(&o.nodeCondition, "node-condition", "",
		`node condition type to keep on this node, e.g. ovsgate.io/OVSReady (True when ready); "" writes none`)
	cmd.Flags().StringVar(&o.nodeName, "node-name", "", "the node to write the condition to; required with --node-condition")
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", `kubeconfig for --node-condition outside a pod; "" uses the in-cluster config`)
	cmd.Flags().DurationVar(&o.heartbeat, "node-condition-heartbeat", nodecondition.DefaultHeartbeat,
		"how often an unchanged node condition is rewritten")
	return cmd
}

func (o *serveOptions) validateListeners() error {
	if err := validateAddr("health-probe-bind-address", o.probeAddr); err != nil {
		return err
	}
	if o.metricsAddr == "0" {
		return nil
	}
	if err := validateAddr("metrics-bind-address", o.metricsAddr); err != nil {
		return err
	}
	// Port 0 asks the kernel for a free port: a different one for each.
	if _, port, _ := net.SplitHostPort(o.metricsAddr); o.metricsAddr == o.probeAddr && port != "0" {
		return badFlag("metrics-bind-address", o.metricsAddr, "must differ from --health-probe-bind-address")
	}
	return nil
}

// nodeConditionWriter checks the node condition flags and makes the writer;
// nil when --node-condition is not set. Every error is a usage error: the
// flags say what to write where, or fail to.
func (o *serveOptions) nodeConditionWriter() (*nodecondition.Writer, error) {
	if o.nodeCondition == "" {
		return nil, nil
	}
	if err := nodecondition.CheckType(o.nodeCondition); err != nil {
		return nil, badFlag("node-condition", o.nodeCondition, "%v", err)
	}
	if o.nodeName == "" {
		return nil, badFlag("node-name", "", "--node-condition needs the node's name (in a pod: the downward API's spec.nodeName)")
	}
	if o.heartbeat <= 0 {
		return nil, badFlag("node-condition-heartbeat", o.heartbeat.String(), "must be positive")
	}
	if err := nodecondition.CheckNodeName(o.nodeName); err != nil {
		return nil, badFlag("node-name", o.nodeName, "%v", err)
	}
	kube, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	return nodecondition.New(kube, nodecondition.Config{Node: o.nodeName, Type: o.nodeCondition, Heartbeat: o.heartbeat})
}

// kubeConfig is the client configuration of a kubeconfig file, or the
// in-cluster one (the pod's service account) when path is empty.
func kubeConfig(path string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("--node-condition outside a pod needs --kubeconfig: %w", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", path); err != nil {
		return nil, badFlag("kubeconfig", path, "%v", err)
	}
	// Names the writer in the API server's audit log. QPS and Burst do not
	// apply: the writer's merge window (one write a second at most) and its
	// backoff bound its requests.
	cfg.UserAgent = "ovsgate"
	return cfg, nil
}

func validateAddr(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return badFlag(flag, addr, "want HOST:PORT or :PORT")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return badFlag(flag, addr, "port must be a number from 0 to 65535")
	}
	return nil
}

func (o *serveOptions) run(ctx context.Context, writer *nodecondition.Writer) error {
	probeLn, metricsLn, err := o.listen()
	if err != nil {
		return fatalError(err)
	}
	return o.serve(ctx, writer, probeLn, metricsLn)
}

// listen binds the listeners first: a port in use is a fatal error before
// anything else starts. metricsLn is nil when metrics are off.
func (o *serveOptions) listen() (probeLn, metricsLn net.Listener, err error) {
	if probeLn, err = probe.Listen(o.probeAddr); err != nil {
		return nil, nil, err
	}
	if o.metricsAddr != "0" {
		if metricsLn, err = probe.Listen(o.metricsAddr); err != nil {
			probeLn.Close()
			return nil, nil, err
		}
	}
	return probeLn, metricsLn, nil
}

// serve runs the daemon on listeners already bound (metricsLn nil: metrics
// off) until ctx is done or a part of it fails, then leaves the status file
// not ready. Each part runs on its own goroutine and hears of the gate
// through a subscription of its own, so none waits for another: a slow
// disk never delays the probe or the node condition.
func (o *serveOptions) serve(ctx context.Context, writer *nodecondition.Writer, probeLn, metricsLn net.Listener) error {
	metrics := probe.NewMetrics()
	if writer != nil {
		metrics.Register(writer.Collectors()...)
	}
	cfg := o.config()
	cfg.Observer = metrics.ObserveAppctl
	g, err := gate.New(cfg)
	if err != nil {
		probeLn.Close()
		if metricsLn != nil {
			metricsLn.Close()
		}
		return fatalError(err)
	}
	prb := probe.NewProbe(func() error { return g.Alive(maxLoopStall) })
	var file *probe.StatusFile
	if o.statusFile != "" {
		file = probe.NewStatusFile(o.statusFile)
	}
	klog.InfoS("Starting ovsgate", "bridges", o.bridges, "ovsdb", o.ovsdb, "ovsRunDir", o.ovsRunDir,
		"probe", probeLn.Addr().String(), "metrics", addrOf(metricsLn), "statusFile", o.statusFile,
		"nodeCondition", o.nodeCondition, "node", o.nodeName)

	errorLog := log.New(klogWriter{}, "", 0)
	parts, ctx := errgroup.WithContext(ctx)
	parts.Go(named("probe listener", func() error { return probe.Serve(ctx, probe.NewServer(prb, errorLog), probeLn) }))
	if metricsLn != nil {
		parts.Go(named("metrics listener", func() error { return probe.Serve(ctx, probe.NewServer(metrics.Handler(), errorLog), metricsLn) }))
	}
	parts.Go(named("gate", func() error { return g.Run(ctx) }))
	parts.Go(forEach(ctx, g.Subscribe(), func(s gate.State) { publish(s, prb, metrics, writer) }))
	if file != nil {
		parts.Go(forEach(ctx, g.Subscribe(), func(s gate.State) { file.Keep(s.Status) }))
	}
	if writer != nil {
		parts.Go(named("node condition", func() error { return writer.Run(ctx) }))
	}
	if o.timeout > 0 {
		parts.Go(func() error { warnIfNotReady(ctx, g, o.timeout); return nil })
	}
	err = parts.Wait()

	// Never leave a stale "ready": whoever reads the file after we are gone
	// must not trust an OVS nobody watches any more. The node condition is
	// left as it is: stopping ovsgate (a rollout of its DaemonSet) says
	// nothing about OVS, and a reader tells a dead writer by its heartbeat.
	final := g.State().Stopped()
	publish(final, prb, metrics, nil)
	if file != nil {
		file.Keep(final.Status)
	}
	klog.InfoS("Stopped ovsgate")
	if err != nil {
		return fatalError(err)
	}
	return nil
}

// named prefixes the error of a part with its name.
func named(name string, run func() error) func() error {
	return func() error {
		if err := run(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
}

// forEach is a part that hands each state of a subscription to f until ctx
// is done. The subscription is a mailbox of one slot: while f is busy, only
// the latest state waits for it.
func forEach(ctx context.Context, updates <-chan gate.State, f func(gate.State)) func() error {
	return func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case s := <-updates:
				f(s)
			}
		}
	}
}

// publish hands a state to the probe, the metrics and, once the gate has
// settled, the node condition (nil: none); none of them waits. What comes
// before settling (starting, connecting) is no verdict on OVS: writing it
// would turn a node's True condition False on every restart of ovsgate that
// takes longer than the writer's merge window to settle.
func publish(s gate.State, prb *probe.Probe, metrics *probe.Metrics, node *nodecondition.Writer) {
	prb.Update(s.Status)
	metrics.Observe(s)
	if node != nil && s.Settled {
		node.Update(s)
	}
}

// warnIfNotReady logs a warning if the gate is not ready d after the start.
func warnIfNotReady(ctx context.Context, g *gate.Gate, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
		if s := g.State(); !s.Ready {
			klog.Warningf("Still not ready after %s: %s", d, s.Reason)
		}
	}
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return "disabled"
	}
	return ln.Addr().String()
}

// klogWriter sends the HTTP servers' own error log through klog.
type klogWriter struct{}

func (klogWriter) Write(p []byte) (int, error) {
	klog.ErrorS(errors.New(string(trimNewline(p))), "HTTP server")
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	return p
}
