package main

import (
	"encoding/xml"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotutil"
)

// fixture is a copy of real reports of one bench run (loadtest/results):
// r1 with its three runs, proxy with two, and two reports the charts must
// leave out (the crypto ceiling and a direct-at run).
const fixture = "testdata/results"

// svgDoc is what a test reads back from an SVG file.
type svgDoc struct {
	texts []string
	// paths holds each path's d attribute by its stroke or fill colour.
	strokes map[string][]string
	fills   map[string][]string
}

func readSVG(t *testing.T, name string) svgDoc {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc := svgDoc{strokes: map[string][]string{}, fills: map[string][]string{}}
	dec := xml.NewDecoder(f)
	root := ""
	var inText bool
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", name, err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = e.Name.Local
			}
			inText = e.Name.Local == "text"
			if e.Name.Local != "path" {
				continue
			}
			var d, style string
			for _, a := range e.Attr {
				switch a.Name.Local {
				case "d":
					d = a.Value
				case "style":
					style = a.Value
				}
			}
			for _, decl := range strings.Split(style, ";") {
				if c, ok := strings.CutPrefix(decl, "stroke:"); ok {
					doc.strokes[c] = append(doc.strokes[c], d)
				}
				if c, ok := strings.CutPrefix(decl, "fill:"); ok {
					doc.fills[c] = append(doc.fills[c], d)
				}
			}
		case xml.CharData:
			if inText {
				doc.texts = append(doc.texts, string(e))
			}
		case xml.EndElement:
			inText = false
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q, want svg", name, root)
	}
	return doc
}

func hex(c color.Color) string {
	r, g, b, _ := c.RGBA()
	return fmt.Sprintf("#%02X%02X%02X", r>>8, g>>8, b>>8)
}

// longestLine returns the most vertices of an open path drawn in colour
// c: a series of n points is one path "M..L.." with n vertices; markers
// (boxes, triangles) are closed paths ("..Z") and do not count.
func longestLine(doc svgDoc, c color.Color) int {
	most := 0
	for _, d := range doc.strokes[hex(c)] {
		if strings.Contains(d, "Z") {
			continue
		}
		most = max(most, strings.Count(d, "L")+1)
	}
	return most
}

func TestRenderSVG(t *testing.T) {
	dir := t.TempDir()
	runs, err := readRuns(fixture)
	if err != nil {
		t.Fatal(err)
	}
	files, err := render(runs, dir, "svg")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	want := []string{"latency-proxy.svg", "latency-r1.svg", "latency.svg", "cpu.svg"}
	if !slices.Equal(got, want) {
		t.Fatalf("render wrote %q, want %q (proxy before r1: bench order; ceiling and direct-at left out)", got, want)
	}

	t.Run("latency-r1", func(t *testing.T) {
		doc := readSVG(t, filepath.Join(dir, "latency-r1.svg"))
		for i, name := range []string{"p50", "p90", "p99", "p99.9"} {
			if !slices.Contains(doc.texts, name) {
				t.Errorf("legend has no %s; texts %q", name, doc.texts)
			}
			// closed, open, mixed: three points per percentile.
			if n := longestLine(doc, plotutil.Color(i)); n != 3 {
				t.Errorf("series %s: line of %d points, want 3", name, n)
			}
		}
	})
	t.Run("latency", func(t *testing.T) {
		doc := readSVG(t, filepath.Join(dir, "latency.svg"))
		for i, s := range []struct {
			name   string
			points int
		}{{"proxy", 2}, {"r1", 3}} {
			if !slices.Contains(doc.texts, s.name) {
				t.Errorf("legend has no %s; texts %q", s.name, doc.texts)
			}
			if n := longestLine(doc, plotutil.Color(i)); n != s.points {
				t.Errorf("series %s: line of %d points, want %d", s.name, n, s.points)
			}
		}
	})
	t.Run("cpu", func(t *testing.T) {
		doc := readSVG(t, filepath.Join(dir, "cpu.svg"))
		// Roles in first-seen order: proxy-open has upstream and proxy,
		// r1-open adds verifier; tpload (the generator) is not charted.
		roles := []string{"upstream", "proxy", "verifier"}
		for i, role := range roles {
			if !slices.Contains(doc.texts, role) {
				t.Errorf("legend has no %s; texts %q", role, doc.texts)
			}
			// A bar per scenario (of zero height where the role did not
			// run), plus its legend swatch.
			if n := len(doc.fills[hex(plotutil.Color(i))]); n != 3 {
				t.Errorf("role %s: %d filled shapes, want 3 (two bars and the legend)", role, n)
			}
		}
		if slices.Contains(doc.texts, generator) {
			t.Errorf("cpu chart shows %s, the load generator", generator)
		}
		for _, s := range []string{"proxy", "r1"} {
			if !slices.Contains(doc.texts, s) {
				t.Errorf("no bar label %s; texts %q", s, doc.texts)
			}
		}
	})
}

func TestRenderPNG(t *testing.T) {
	dir := t.TempDir()
	runs, err := readRuns(fixture)
	if err != nil {
		t.Fatal(err)
	}
	files, err := render(runs, dir, "png")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("render wrote %d files, want 4", len(files))
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s is not a valid PNG: %v", name, err)
		}
		// Every chart draws its first series in plotutil.Color(0).
		if !hasColor(img, plotutil.Color(0)) {
			t.Errorf("%s has no pixel of the first series' colour %s", name, hex(plotutil.Color(0)))
		}
	}
}

func hasColor(img image.Image, c color.Color) bool {
	want := hex(c)
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if hex(img.At(x, y)) == want {
				return true
			}
		}
	}
	return false
}

func TestReadRunsRefuses(t *testing.T) {
	write := func(t *testing.T, files map[string]string) string {
		t.Helper()
		dir := t.TempDir()
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"empty", nil, "no <scenario>-"},
		{"only ceiling", map[string]string{"ceiling.json": `{"mode":"ceiling","answered":5,"throughput_per_sec":5}`}, "no <scenario>-"},
		{"not JSON", map[string]string{"r1-open.json": `{`}, "r1-open.json"},
		{"nothing answered", map[string]string{"r1-open.json": `{"mode":"open","answered":0}`}, "no answered requests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readRuns(write(t, tc.files))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("readRuns = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRenderRefusesZeroLatency(t *testing.T) {
	runs := []run{{Scenario: "r1", Kind: "open"}}
	runs[0].Report.ThroughputPerSec = 100
	runs[0].Report.Answered = 100
	_, err := render(runs, t.TempDir(), "svg")
	if err == nil || !strings.Contains(err.Error(), "log axis") {
		t.Fatalf("render with a 0 ms latency = %v, want a log axis error", err)
	}
}

func TestExecuteFlags(t *testing.T) {
	var stderr strings.Builder
	err := execute([]string{"--format", "gif", "--results", fixture}, &stderr)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "--format") {
		t.Fatalf("execute(--format gif) = %v (exit %d), want a usage error naming --format", err, exitCode(err))
	}
	out := t.TempDir()
	if err := execute([]string{"--results", fixture, "--out", out}, &stderr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "cpu.svg")); err != nil {
		t.Fatalf("execute --out: %v", err)
	}
}
