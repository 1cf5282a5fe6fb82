package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tpcluster/tpcluster/internal/loadgen"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart size: about one screen column in a rendered Markdown page.
const (
	width  = 16 * vg.Centimeter
	height = 10 * vg.Centimeter
)

// percentile is one latency series of a chart.
type percentile struct {
	name string
	of   func(loadgen.Latency) float64
}

var percentiles = []percentile{
	{"p50", func(l loadgen.Latency) float64 { return l.P50 }},
	{"p90", func(l loadgen.Latency) float64 { return l.P90 }},
	{"p99", func(l loadgen.Latency) float64 { return l.P99 }},
	{"p99.9", func(l loadgen.Latency) float64 { return l.P999 }},
}

// generator is tpload's own CPU role: it measures, it is not under test.
const generator = "tpload"

// render writes every chart of runs into dir as format ("svg" or "png")
// and returns the files written.
func render(runs []run, dir, format string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chart directory: %w", err)
	}
	var files []string
	save := func(p *plot.Plot, name string) error {
		f := filepath.Join(dir, name+"."+format)
		if err := p.Save(width, height, f); err != nil {
			return fmt.Errorf("write chart %s: %w", f, err)
		}
		files = append(files, f)
		return nil
	}
	names := scenarios(runs)
	for _, s := range names {
		p, err := latencyChart(runs, s)
		if err != nil {
			return nil, err
		}
		if err := save(p, "latency-"+s+""); err != nil {
			return nil, err
		}
	}
	p, err := p99Chart(runs, names)
	if err != nil {
		return nil, err
	}
	if err := save(p, "latency"); err != nil {
		return nil, err
	}
	p, err = cpuChart(runs, names)
	if err != nil {
		return nil, err
	}
	if err := save(p, "cpu"); err != nil {
		return nil, err
	}
	return files, nil
}

// points returns scenario s's runs as (throughput, latency) points in
// throughput order; a log axis cannot show zero, so a zero latency is an
// error rather than a point quietly dropped.
func points(runs []run, s string, of func(loadgen.Latency) float64) (plotter.XYs, error) {
	var xys plotter.XYs
	for _, r := range runs {
		if r.Scenario != s {
			continue
		}
		y := of(r.Report.LatencyMs)
		if y <= 0 {
			return nil, fmt.Errorf("scenario %s, %s run: latency %v ms cannot be drawn on a log axis", s, r.Kind, y)
		}
		xys = append(xys, plotter.XY{X: r.Report.ThroughputPerSec, Y: y})
	}
	slices.SortFunc(xys, func(a, b plotter.XY) int {
		switch {
		case a.X < b.X:
			return -1
		case a.X > b.X:
			return 1
		}
		return 0
	})
	return xys, nil
}

func latencyAxes(p *plot.Plot) {
	// Log on both axes: the scenarios' rates span more than a decade
	// (nginx near 1,000/s, the bare upstream past 30,000/s).
	p.X.Label.Text = "answers per second (log scale)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = logTicks{}
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks{}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
}

// latencyChart draws scenario s's percentiles against its throughput: the
// open-loop run at half the maximum, the closed-loop maximum, and the
// mixed run where there is one.
func latencyChart(runs []run, s string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: latency against throughput (%s)", s, kindsOf(runs, s))
	latencyAxes(p)
	for i, pc := range percentiles {
		xys, err := points(runs, s, pc.of)
		if err != nil {
			return nil, err
		}
		if err := addLine(p, pc.name, i, xys); err != nil {
			return nil, err
		}
	}
	headroom(p)
	return p, nil
}

// p99Chart compares the scenarios' p99 on one chart.
func p99Chart(runs []run, names []string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "p99 latency against throughput, by scenario"
	latencyAxes(p)
	for i, s := range names {
		xys, err := points(runs, s, func(l loadgen.Latency) float64 { return l.P99 })
		if err != nil {
			return nil, err
		}
		if err := addLine(p, s, i, xys); err != nil {
			return nil, err
		}
	}
	headroom(p)
	return p, nil
}

// headroom raises the top of a log latency axis so the legend (top left)
// sits above the lines instead of over them.
func headroom(p *plot.Plot) {
	p.Y.Max *= 4
	p.X.Min /= 1.2
	p.X.Max *= 1.2
}

func addLine(p *plot.Plot, name string, i int, xys plotter.XYs) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("series %s: %w", name, err)
	}
	l.Color = plotutil.Color(i)
	pts.Color = plotutil.Color(i)
	pts.Shape = plotutil.Shape(i)
	p.Add(l, pts)
	p.Legend.Add(name, l, pts)
	return nil
}

// kindsOf names the runs a scenario's chart holds, for its title.
func kindsOf(runs []run, s string) string {
	var ks []string
	for _, k := range kinds {
		if _, ok := find(runs, s, k); ok {
			ks = append(ks, k)
		}
	}
	return strings.Join(ks, ", ")
}

// cpuChart draws, per scenario, the CPU milliseconds per answered request
// of each process group under test, from the open-loop run (half the
// maximum rate: the least contended figure; the closed run where a
// scenario has no open run). One stacked bar per scenario, one colour per
// component, so the bar's height is the whole cost of a request.
func cpuChart(runs []run, names []string) (*plot.Plot, error) {
	var picked []run
	for _, s := range names {
		r, ok := find(runs, s, "open")
		if !ok {
			r, _ = find(runs, s, "closed")
		}
		if r.Scenario == "" {
			continue // only a mixed run: no comparable figure
		}
		picked = append(picked, r)
	}
	var roles []string
	for _, r := range picked {
		for _, c := range r.Report.CPU {
			if c.Role != generator && !slices.Contains(roles, c.Role) {
				roles = append(roles, c.Role)
			}
		}
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("no CPU figures of processes under test in the reports")
	}
	p := plot.New()
	p.Title.Text = "CPU per answered request, by component (open-loop runs)"
	p.Y.Label.Text = "CPU ms per request"
	p.Legend.Top = true
	p.Legend.Left = true
	const barWidth = 9 * vg.Millimeter
	var labels []string
	for _, r := range picked {
		labels = append(labels, r.Scenario)
	}
	var below *plotter.BarChart
	for i, role := range roles {
		vs := make(plotter.Values, len(picked))
		for j, r := range picked {
			for _, c := range r.Report.CPU {
				if c.Role == role {
					// seconds per 1,000 requests is milliseconds per request.
					vs[j] = c.PerThousand
				}
			}
		}
		b, err := plotter.NewBarChart(vs, barWidth)
		if err != nil {
			return nil, fmt.Errorf("cpu bars for %s: %w", role, err)
		}
		b.LineStyle.Width = 0
		b.Color = plotutil.Color(i)
		if below != nil {
			b.StackOn(below)
		}
		below = b
		p.Add(b)
		p.Legend.Add(role, b)
	}
	p.NominalX(labels...)
	return p, nil
}
