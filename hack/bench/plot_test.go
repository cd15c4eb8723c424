package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// plotted is what a reader of the SVG can find in it, per panel.
type plotted struct {
	title   string
	box     [4]float64              // x, y, width, height of the plot area
	curves  map[string][][2]float64 // series name -> path points
	order   []string                // series names in document order
	xLabels []string
}

// parseSVG reads the figure back with encoding/xml, which fails on anything
// that is not well-formed XML.
func parseSVG(t *testing.T, doc []byte) []*plotted {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var (
		panels  []*plotted
		series  string
		inXTick bool
		root    = true
	)
	attr := func(se xml.StartElement, name string) string {
		for _, a := range se.Attr {
			if a.Name.Local == name {
				return a.Value
			}
		}
		return ""
	}
	num := func(se xml.StartElement, name string) float64 {
		v, err := strconv.ParseFloat(attr(se, name), 64)
		require.NoError(t, err, "attribute %s of <%s>", name, se.Name.Local)
		return v
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "the SVG is not well-formed XML")
		switch tok := tok.(type) {
		case xml.StartElement:
			if root {
				require.Equal(t, "svg", tok.Name.Local)
				require.Equal(t, "http://www.w3.org/2000/svg", tok.Name.Space)
				root = false
			}
			switch {
			case tok.Name.Local == "g" && attr(tok, "class") == "panel":
				panels = append(panels, &plotted{title: attr(tok, "data-title"), curves: map[string][][2]float64{}})
			case tok.Name.Local == "g" && attr(tok, "class") == "series":
				require.NotEmpty(t, panels, "a series outside a panel")
				series = attr(tok, "data-name")
				p := panels[len(panels)-1]
				p.order = append(p.order, series)
				p.curves[series] = nil
			case tok.Name.Local == "rect" && attr(tok, "class") == "plot":
				panels[len(panels)-1].box = [4]float64{num(tok, "x"), num(tok, "y"), num(tok, "width"), num(tok, "height")}
			case tok.Name.Local == "path" && series != "":
				f := strings.Fields(attr(tok, "d"))
				require.Zero(t, len(f)%3, "path %q is not M/L x y triples", attr(tok, "d"))
				p := panels[len(panels)-1]
				for i := 0; i < len(f); i += 3 {
					x, err := strconv.ParseFloat(f[i+1], 64)
					require.NoError(t, err)
					y, err := strconv.ParseFloat(f[i+2], 64)
					require.NoError(t, err)
					p.curves[series] = append(p.curves[series], [2]float64{x, y})
				}
			case tok.Name.Local == "text" && attr(tok, "class") == "xtick":
				inXTick = true
			}
		case xml.CharData:
			if inXTick {
				p := panels[len(panels)-1]
				p.xLabels = append(p.xLabels, string(tok))
			}
		case xml.EndElement:
			if tok.Name.Local == "g" {
				series = ""
			}
			inXTick = false
		}
	}
	return panels
}

func TestWriteECDF(t *testing.T) {
	msN := func(v ...float64) []time.Duration {
		var d []time.Duration
		for _, f := range v {
			d = append(d, time.Duration(f*float64(time.Millisecond)))
		}
		return d
	}
	tests := []struct {
		name    string
		panels  []panel
		xLabels []string // of the first panel
	}{
		{
			name: "reaction and detection",
			panels: []panel{
				{title: "reaction <add-br> & ready", series: []series{
					{name: "ovsgate", color: "#0072B2", vals: msN(2.1, 1.5, 1.7, 1.5, 2.25)},
					{name: "shell gate", color: "#E69F00", dash: "6 3", vals: msN(6.5, 8.2, 7)},
					{name: "1 s poll", color: "#D55E00", vals: msN(555, 994.9, 12, 300)},
				}},
				{title: "detection", series: []series{
					{name: "exit", color: "#0072B2", vals: msN(2.1, 3.9)},
					{name: "restart", color: "#009E73", vals: msN(3.1, 72.2, 3)},
				}},
			},
			xLabels: []string{"1 ms", "10 ms", "100 ms", "1 s"},
		},
		{
			name:    "one decade gets labels at 2 and 5",
			panels:  []panel{{title: "narrow", series: []series{{name: "a", color: "black", vals: msN(1.2, 9)}}}},
			xLabels: []string{"1 ms", "2 ms", "5 ms", "10 ms"},
		},
		{
			name:    "sub-microsecond and zero values stay on the axis",
			panels:  []panel{{title: "tiny", series: []series{{name: "a", color: "black", vals: []time.Duration{0, 500, 3 * time.Microsecond}}}}},
			xLabels: []string{"1 µs", "2 µs", "5 µs"},
		},
		{
			name:    "a series without values",
			panels:  []panel{{title: "empty", series: []series{{name: "none", color: "black"}, {name: "some", color: "red", vals: msN(40)}}}},
			xLabels: []string{"20 ms", "50 ms"},
		},
		{
			name:    "nothing at all",
			panels:  []panel{{title: "nothing"}},
			xLabels: []string{"1 ms", "10 ms", "100 ms", "1 s"},
		},
		{name: "no panels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, writeECDF(&buf, "latency & more", tt.panels))
			got := parseSVG(t, buf.Bytes())
			require.Len(t, got, len(tt.panels))
			for i, want := range tt.panels {
				p := got[i]
				assert.Equal(t, want.title, p.title)
				var names []string
				for _, s := range want.series {
					names = append(names, s.name)
				}
				assert.Equal(t, names, p.order, "one series per method, in order")
				require.NotZero(t, p.box[2], "panel %q has no plot area", p.title)

				for _, s := range want.series {
					pts := p.curves[s.name]
					if len(s.vals) == 0 {
						assert.Empty(t, pts, "series %q has no values but a curve", s.name)
						continue
					}
					// Two points per value, the start, and the run to the edge.
					require.Len(t, pts, 2*len(s.vals)+1, "series %q", s.name)
					for j, pt := range pts {
						assert.True(t, pt[0] >= p.box[0]-0.05 && pt[0] <= p.box[0]+p.box[2]+0.05, "series %q point %v is left or right of the axis %v", s.name, pt, p.box)
						assert.True(t, pt[1] >= p.box[1]-0.05 && pt[1] <= p.box[1]+p.box[3]+0.05, "series %q point %v is above or below the axis %v", s.name, pt, p.box)
						if j > 0 {
							// SVG's y grows downwards: a cumulative share never falls.
							assert.GreaterOrEqual(t, pt[0], pts[j-1][0], "series %q goes back in time at point %d", s.name, j)
							assert.LessOrEqual(t, pt[1], pts[j-1][1], "series %q falls at point %d", s.name, j)
						}
					}
					assert.InDelta(t, p.box[1]+p.box[3], pts[0][1], 0.05, "series %q must start at 0%%", s.name)
					assert.InDelta(t, p.box[1], pts[len(pts)-1][1], 0.05, "series %q must end at 100%%", s.name)
				}
			}
			if len(tt.xLabels) > 0 {
				assert.Equal(t, tt.xLabels, got[0].xLabels)
			}
		})
	}
}

// The axis runs from the 1-2-5 step at or below the fastest trial to the one
// at or above the slowest.
func TestLogAxis(t *testing.T) {
	tests := []struct {
		vals   []time.Duration
		lo, hi float64
	}{
		{nil, 1e-3, 1},
		{[]time.Duration{1500 * time.Microsecond, 995 * time.Millisecond}, 1e-3, 1},
		{[]time.Duration{time.Millisecond}, 1e-3, 2e-3},
		{[]time.Duration{10 * time.Millisecond, 10 * time.Millisecond}, 1e-2, 2e-2},
		{[]time.Duration{0, 2 * time.Second}, 1e-6, 2},
		{[]time.Duration{480 * time.Microsecond, 1020 * time.Millisecond}, 2e-4, 2},
		{[]time.Duration{3 * time.Millisecond, 4999 * time.Microsecond}, 2e-3, 5e-3},
		{[]time.Duration{5001 * time.Microsecond, 99 * time.Millisecond}, 5e-3, 1e-1},
	}
	for _, tt := range tests {
		lo, hi := logAxis(tt.vals)
		assert.InEpsilon(t, tt.lo, lo, 1e-9, "lo of %v", tt.vals)
		assert.InEpsilon(t, tt.hi, hi, 1e-9, "hi of %v", tt.vals)
		for _, v := range tt.vals {
			assert.True(t, secs(v) >= lo*(1-1e-9) && secs(v) <= hi*(1+1e-9), "%v is off the axis %g..%g", v, lo, hi)
		}
	}
}
