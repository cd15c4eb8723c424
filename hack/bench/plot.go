package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// A series is one method's latencies, drawn as one ECDF curve.
type series struct {
	name  string
	color string
	dash  string // SVG stroke-dasharray; "" for a solid line
	vals  []time.Duration
}

// A panel is one plot of curves that are compared with each other.
type panel struct {
	title  string
	series []series
}

// The figure is sized to be read on a page at its natural size; every
// position below is in these pixels.
const (
	plotW, plotH     = 800, 450
	panelLeft        = 70  // x of the first panel's plot area
	panelStep        = 395 // from one panel's plot area to the next
	panelW           = 310
	panelTop         = 62
	panelH           = 260
	legendLineHeight = 18
)

// Distributions rather than medians: an ECDF shows the tail and the spread
// of every method at once, and a log time axis keeps 1 ms and 1 s legible
// on one scale.
//
// writeECDF draws each panel's series as empirical cumulative distribution
// functions on one shared logarithmic time axis, so that panels compare too.
func writeECDF(w io.Writer, title string, panels []panel) error {
	var all []time.Duration
	for _, p := range panels {
		for _, s := range p.series {
			all = append(all, s.vals...)
		}
	}
	lo, hi := logAxis(all)

	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" font-family="sans-serif">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(b, "<title>%s</title>\n", esc(title))
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", plotW, plotH)
	fmt.Fprintf(b, `<text x="%d" y="24" font-size="16" font-weight="bold" text-anchor="middle">%s</text>`+"\n", plotW/2, esc(title))
	for i, p := range panels {
		writePanel(b, p, float64(panelLeft+i*panelStep), lo, hi)
	}
	_, _ = b.WriteString("</svg>\n")
	return b.Flush()
}

func writePanel(b *bufio.Writer, p panel, left, lo, hi float64) {
	top, right, bottom := float64(panelTop), left+panelW, float64(panelTop+panelH)
	x := func(d time.Duration) float64 {
		return left + (math.Log10(secs(d))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*panelW
	}
	y := func(frac float64) float64 { return bottom - frac*panelH }

	fmt.Fprintf(b, `<g class="panel" data-title="%s">`+"\n", esc(p.title))
	fmt.Fprintf(b, `<text x="%.1f" y="%d" font-size="13" font-weight="bold" text-anchor="middle">%s</text>`+"\n", left+panelW/2, panelTop-10, esc(p.title))

	// Grid and ticks: a line at every 1-9 multiple of each decade, a label
	// at each decade (and at 2 and 5 when the axis spans too few decades to
	// read without them).
	decades := math.Log10(hi / lo)
	for dec := math.Pow(10, math.Floor(math.Log10(lo)+1e-9)); dec < hi*(1+1e-9); dec *= 10 {
		for m := 1; m <= 9; m++ {
			v := dec * float64(m)
			if v < lo*(1-1e-9) {
				continue
			}
			if v > hi*(1+1e-9) {
				break
			}
			px := x(time.Duration(v * float64(time.Second)))
			grid := "#eeeeee"
			if m == 1 {
				grid = "#d0d0d0"
			}
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", px, top, px, bottom, grid)
			tick := 3.0
			if m == 1 {
				tick = 6
			}
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", px, bottom, px, bottom+tick)
			if m == 1 || (decades <= 2 && (m == 2 || m == 5)) {
				fmt.Fprintf(b, `<text class="xtick" x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%s</text>`+"\n", px, bottom+18, tickLabel(v))
			}
		}
	}
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		grid := "#eeeeee"
		if f == 0.5 {
			grid = "#b0b0b0" // the median is where a curve crosses this line
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", left, y(f), right, y(f), grid)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", left-5, y(f), left, y(f))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%.0f%%</text>`+"\n", left-8, y(f)+4, f*100)
	}
	fmt.Fprintf(b, `<rect class="plot" x="%.1f" y="%.1f" width="%d" height="%d" fill="none" stroke="black"/>`+"\n", left, top, panelW, panelH)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle">latency (log scale)</text>`+"\n", left+panelW/2, bottom+36)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">trials done by then</text>`+"\n", left-44, top+panelH/2, left-44, top+panelH/2)

	for i, s := range p.series {
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		fmt.Fprintf(b, `<g class="series" data-name="%s">`+"\n", esc(s.name))
		if len(s.vals) > 0 {
			sorted := slices.Clone(s.vals)
			slices.Sort(sorted)
			n := float64(len(sorted))
			var path strings.Builder
			fmt.Fprintf(&path, "M %.1f %.1f", x(sorted[0]), y(0))
			for j, v := range sorted {
				if j > 0 {
					fmt.Fprintf(&path, " L %.1f %.1f", x(v), y(float64(j)/n))
				}
				fmt.Fprintf(&path, " L %.1f %.1f", x(v), y(float64(j+1)/n))
			}
			// Past the slowest trial every trial is done: run on to the edge.
			fmt.Fprintf(&path, " L %.1f %.1f", right, y(1))
			fmt.Fprintf(b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", path.String(), s.color, dash)
		}
		_, _ = b.WriteString("</g>\n")

		ly := bottom + 62 + float64(i*legendLineHeight)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", left-40, ly-4, left-12, ly-4, s.color, dash)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="12"><tspan font-weight="bold">%s</tspan>: %s</text>`+"\n", left-6, ly, esc(s.name), summary(s.vals))
	}
	_, _ = b.WriteString("</g>\n")
}

// minPlotted is where the time axis ends at the latest on the left: a log
// axis cannot show zero, and nothing here is faster than a microsecond.
const minPlotted = time.Microsecond

func secs(d time.Duration) float64 { return max(d, minPlotted).Seconds() }

// logAxis returns the time axis, in seconds, from the 1, 2 or 5 times a
// power of ten at or below the smallest value to the one at or above the
// largest, so that every value lies on it and little room is wasted (a poll
// loop just over 1 s would otherwise stretch the axis to 10 s); 1 ms to 1 s
// when there are no values.
func logAxis(vals []time.Duration) (lo, hi float64) {
	if len(vals) == 0 {
		return 1e-3, 1
	}
	lo, hi = niceStep(secs(slices.Min(vals)), false), niceStep(secs(slices.Max(vals)), true)
	if hi <= lo*(1+1e-9) {
		hi = niceStep(lo*1.001, true)
	}
	return lo, hi
}

// niceStep rounds s down (or up) to 1, 2 or 5 times a power of ten.
func niceStep(s float64, up bool) float64 {
	// The epsilon keeps an exact power of ten, which log10 may return a
	// hair below its integer, in its own decade.
	dec := math.Pow(10, math.Floor(math.Log10(s)+1e-9))
	if up {
		for _, m := range []float64{1, 2, 5, 10} {
			if dec*m >= s*(1-1e-9) {
				return dec * m
			}
		}
	}
	for _, m := range []float64{5, 2, 1} {
		if dec*m <= s*(1+1e-9) {
			return dec * m
		}
	}
	return dec
}

func tickLabel(s float64) string {
	switch {
	case s < 1e-3:
		return fmt.Sprintf("%.4g µs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.4g ms", s*1e3)
	default:
		return fmt.Sprintf("%.4g s", s)
	}
}

func summary(vals []time.Duration) string {
	if len(vals) == 0 {
		return "no data"
	}
	return fmt.Sprintf("median %s, p99 %s", ms(pct(vals, 50)), ms(pct(vals, 99)))
}

var xmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")

func esc(s string) string { return xmlEscaper.Replace(s) }
