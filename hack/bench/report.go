package main

import (
	_ "embed"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/ovsgate/ovsgate/nodecondition"
)

//go:embed BENCHMARKS.md.tmpl
var reportTemplate string

// report is what BENCHMARKS.md.tmpl reads: every figure of one run.
type report struct {
	Date, Platform, GoVersion, OVS, CPU, Figure string
	Cores, Trials                               int

	Goals   goals
	Met     verdicts
	Go      map[string]results // the runs of goBenches, by key
	Kubelet kubeletBaseline
}

// goals are the project's performance targets: each is a row at the top of
// the table, met only when every part of it is.
type goals struct {
	ProbeRatio    float64 // server CPU per /readyz, ours / bare net/http
	RSSKiB        float64 // a ready serve with one bridge
	SoakGrowthKiB float64 // RSS a day of probes may add
	ReactionP99Ms float64 // add-br returns -> ready
	ReactionShare float64 // of the shell gate's median
	CheckRatio    float64 // check CPU relative to version's, 5,000 ports / none
	IdlePercent   float64 // of a core
}

var targetGoals = goals{ProbeRatio: 1.10, RSSKiB: 12 << 10, SoakGrowthKiB: 1 << 10,
	ReactionP99Ms: 3, ReactionShare: 0.25, CheckRatio: 1.10, IdlePercent: 0.05}

// verdicts says which parts of the targets were met.
type verdicts struct{ Probe, RSS, Soak, ReactionP99, ReactionShare, Check, Idle bool }

// M is a metric of a benchmark of any run, e.g. ("Reaction/ovsgate",
// "p99-ms"); NaN when no run reported it.
func (r report) M(name, unit string) float64 {
	for _, res := range r.Go {
		if v := res.Get(name, unit); !math.IsNaN(v) {
			return v
		}
	}
	return math.NaN()
}

// ReactionShare is ovsgate's median reaction over the shell gate's.
func (r report) ReactionShare() float64 {
	return r.M("Reaction/ovsgate", "p50-ms") / r.M("Reaction/shell-gate", "p50-ms")
}

func (r report) IdlePercent() float64 {
	return 100 * r.M("ServeFootprint/idle", "cpu-ms") / 1e3 / r.M("ServeFootprint/idle", "s")
}

// CheckRatio is check's CPU relative to version's with 5,000 ports over the
// same with none.
func (r report) CheckRatio() float64 {
	return r.M("Scale/check/ports=5000", "check/version") / r.M("Scale/check/ports=0", "check/version")
}

// ScalePorts are the port counts of the scale rows, increasing.
func (r report) ScalePorts() []int {
	var ports []int
	for name := range r.Go["Scale"].metrics {
		if n, err := strconv.Atoi(strings.TrimPrefix(name, "Scale/start/ports=")); err == nil {
			ports = append(ports, n)
		}
	}
	slices.Sort(ports)
	return ports
}

// verdicts judges the figures against the goals; a figure not measured
// (NaN) meets no goal.
func (r report) verdicts() verdicts {
	g, day := r.Goals, "ServeFootprint/day"
	return verdicts{
		Probe: r.M("ReadyzCPU", "ratio") <= g.ProbeRatio,
		RSS:   r.M("ServeFootprint/idle", "rss-KiB") <= g.RSSKiB,
		Soak: r.M(day, "after-rss-KiB")-r.M(day, "before-rss-KiB") <= g.SoakGrowthKiB &&
			r.M(day, "before-goroutines") > 0 && r.M(day, "after-goroutines") == r.M(day, "before-goroutines"),
		ReactionP99:   r.M("Reaction/ovsgate", "p99-ms") <= g.ReactionP99Ms,
		ReactionShare: r.ReactionShare() <= g.ReactionShare,
		Check:         r.CheckRatio() <= g.CheckRatio,
		Idle:          r.IdlePercent() <= g.IdlePercent,
	}
}

// summary is the one line on stderr: how many targets were met, and which
// were not.
func (v verdicts) summary() string {
	var missed []string
	all := []struct {
		name string
		met  bool
	}{{"probe CPU vs bare net/http", v.Probe}, {"RSS and soak", v.RSS && v.Soak},
		{"reaction", v.ReactionP99 && v.ReactionShare}, {"check CPU", v.Check}, {"idle CPU", v.Idle}}
	for _, t := range all {
		if !t.met {
			missed = append(missed, t.name)
		}
	}
	s := fmt.Sprintf("targets met: %d of %d", len(all)-len(missed), len(all))
	if len(missed) > 0 {
		s += " (missed: " + strings.Join(missed, ", ") + ")"
	}
	return s
}

// kubeletBaseline is the kubelet's own Node status writes, the baseline of
// the API server rows: with node leases, its default, it PATCHes the status
// when it changes and otherwise every 5 min; its 10 s
// --node-status-update-frequency is how often it looks. Leases (40 s,
// renewed every quarter of that) are writes to another, small object.
type kubeletBaseline struct {
	StatusEvery, LeaseEvery, Heartbeat, MergeWindow time.Duration
	Nodes, MergesPerHour, PerNodeHour               float64
	PerSecond, LeasesPerSecond                      float64
}

func newKubeletBaseline() kubeletBaseline {
	k := kubeletBaseline{StatusEvery: 5 * time.Minute, LeaseEvery: 10 * time.Second, Nodes: 5000,
		Heartbeat: nodecondition.DefaultHeartbeat, MergeWindow: nodecondition.DefaultMergeWindow}
	k.PerNodeHour = float64(time.Hour / k.StatusEvery)
	k.PerSecond = k.PerNodeHour * k.Nodes / 3600
	k.LeasesPerSecond = k.Nodes / k.LeaseEvery.Seconds()
	k.MergesPerHour = float64(time.Hour / k.MergeWindow)
	return k
}

var templateFuncs = template.FuncMap{
	"f0":        func(v float64) string { return fmt.Sprintf("%.0f", v) },
	"f1":        func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"f2":        func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"ms":        func(v float64) string { return fmt.Sprintf("%.2f ms", v) },
	"us":        func(v float64) string { return fmt.Sprintf("%.0f µs", v) },
	"mib":       func(kib float64) string { return fmt.Sprintf("%.1f MiB", kib/1024) },
	"mibDelta":  func(from, to float64) string { return fmt.Sprintf("%+.2f MiB", (to-from)/1024) },
	"x":         func(r float64) string { return fmt.Sprintf("%.2fx", r) },
	"div":       func(a, b float64) float64 { return a / b },
	"ratio":     ratio,
	"verdict":   verdict,
	"thousands": func(n float64) string { return thousands(int(n)) },
	"span":      span,
	"cell":      func(s string) string { return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s) },
}

// render writes BENCHMARKS.md.
func render(w io.Writer, r report) error {
	t, err := template.New("BENCHMARKS.md").Funcs(templateFuncs).Parse(reportTemplate)
	if err != nil {
		return err
	}
	return t.Execute(w, r)
}

// ratio is base / ours, with one decimal below 10 and none above; "-" when
// ours is nothing to compare with.
func ratio(base, ours float64) string {
	switch r := base / ours; {
	case !(ours > 0):
		return "-"
	case r < 10:
		return fmt.Sprintf("%.1fx", r)
	default:
		return fmt.Sprintf("%.0fx", r)
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// span prints a whole number of minutes or seconds as people write it.
func span(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return fmt.Sprintf("%g s", d.Seconds())
}

// thousands prints n with comma separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// curves are the latency picture's lines: benchmarks of the latency set.
var curves = []struct{ bench, label string }{
	{"Reaction/ovsgate", "reaction: ovsgate"},
	{"Reaction/shell-gate", "reaction: shell gate"},
	{"Reaction/poll-1s", "reaction: 1 s poll"},
	{"Detection/exit", "detection: SIGKILL → not ready"},
	{"Detection/restart", "detection: restart → ready"},
}

// quantiles are the percentiles the latency benchmarks report as "pN-ms".
var quantiles = []int{0, 10, 25, 50, 75, 90, 99, 100}

// drawLatency draws the share of trials done by each time, per curve,
// through the percentiles the benchmarks report, on a logarithmic time axis,
// with the legend to the right of the plot so that it hides no curve.
func drawLatency(w io.Writer, lat results, trials int) error {
	p, legend := plot.New(), plot.NewLegend()
	p.Title.Text = fmt.Sprintf("Latency distributions, %d trials per curve", trials)
	p.X.Label.Text = "ms after the event (log scale)"
	p.Y.Label.Text = "share of trials done"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	for i, c := range curves {
		xys := make(plotter.XYs, len(quantiles))
		for j, q := range quantiles {
			// A log axis has no 0: a trial under a microsecond is drawn at one.
			xys[j] = plotter.XY{X: max(lat.Get(c.bench, fmt.Sprintf("p%d-ms", q)), 1e-3), Y: float64(q) / 100}
			if math.IsNaN(xys[j].X) {
				return fmt.Errorf("%s reported no p%d-ms", c.bench, q)
			}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("%s: %w", c.bench, err)
		}
		l.Color, l.Dashes, l.Width = plotutil.Color(i), plotutil.Dashes(i), vg.Points(1.5)
		p.Add(l)
		legend.Add(c.label, l)
	}
	const width, legendWidth = 9 * vg.Inch, 2.4 * vg.Inch
	c := vgsvg.New(width, 4.5*vg.Inch)
	dc := draw.New(c)
	p.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
	legend.Top, legend.Left = true, true
	legend.Draw(draw.Crop(dc, width-legendWidth+vg.Points(6), 0, 0, -vg.Inch/2))
	_, err := c.WriteTo(w)
	return err
}
