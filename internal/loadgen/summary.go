package loadgen

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// The bench's section of docs/PERFORMANCE.md lies between these markers;
// ReplaceSection rewrites only what is between them.
const (
	SectionBegin = "<!-- loadtest:begin (tpload summarize: a bench run's summary.md; edits here are lost on the next --doc) -->"
	SectionEnd   = "<!-- loadtest:end -->"
)

// Scenario is one row of the bench table: the reports of its runs, by the
// file names bench.sh gives them.
type Scenario struct {
	Name     string // file name prefix: "direct", "r1", ...
	Title    string
	Expect   string // what the CPU column measures
	CPURoles []string
	// Ledger is the serial ledger benchmark the p99 target compares with
	// ("R1", "R3"), empty for rows without a verifier.
	Ledger string
	// Setup says what ran on NATS where no server's counters were read
	// (no NATS, or verifierd's embedded server, which has no monitor).
	Setup string
}

// scenarios returns the bench's rows, in order.
func scenarios() []Scenario {
	return []Scenario{
		{Name: "direct", Title: "b. direct to the demo upstream", CPURoles: []string{"upstream"}, Setup: "no NATS"},
		{Name: "proxy", Title: "b. plain `httputil.ReverseProxy` → upstream", CPURoles: []string{"proxy"}, Setup: "no NATS"},
		{Name: "r1", Title: "c. verifierd proxy mode, embedded NATS, R1", CPURoles: []string{"verifier"}, Ledger: "R1",
			Setup: "embedded server (no monitor; verifierd's defaults, not read back): ledger R1, 1 shard; audit R1; --ledger-sync always"},
		{Name: "r3", Title: "d. 3 verifierd, 3-node NATS cluster, R3", CPURoles: []string{"verifier", "nats"}, Ledger: "R3"},
		{Name: "nginx", Title: "e. nginx auth_request → 3 verifierd check mode, R3", CPURoles: []string{"nginx", "verifier", "nats"}, Ledger: "R3"},
	}
}

// Summary is what the bench derives from one run's reports: the table
// rows and the load test's target ratios. Every figure is recorded, met or not.
type Summary struct {
	Rows    []Row    `json:"rows"`
	Targets []Target `json:"targets"`
	// Inputs of the ratios, in microseconds.
	CeilingCPUMicros    float64            `json:"ceiling_cpu_us_per_decision"`
	CeilingSerialMicros float64            `json:"ceiling_serial_us_per_decision"`
	CeilingPerSec       float64            `json:"ceiling_decisions_per_sec"`
	ProxyCPUMicros      float64            `json:"plain_proxy_cpu_us_per_request"`
	LedgerSerialMicros  map[string]float64 `json:"ledger_serial_us"`
	Errors              int64              `json:"errors"`
	// Floor compares the nats-servers' CPU per decision with the NATS
	// floor's per raw pair (tpload nats-floor).
	Floor []FloorRow `json:"nats_floor,omitempty"`
}

// Row is one scenario's figures.
type Row struct {
	Scenario  string  `json:"scenario"`
	MaxPerSec float64 `json:"max_per_sec"`
	CPUMicros float64 `json:"cpu_us_per_decision"` // the measured processes, closed loop
	CPUByRole string  `json:"cpu_by_role"`
	HalfRate  float64 `json:"open_rate_per_sec"`
	P50       float64 `json:"p50_ms"` // open loop at half the maximum
	P99       float64 `json:"p99_ms"`
	P999      float64 `json:"p99_9_ms"`
	DirectP99 float64 `json:"direct_p99_at_same_rate"`
	Errors    int64   `json:"errors"`
	// Setup is what ran on the nats-servers, as they reported it (the
	// closed-loop run's NATSUsage); "—" where they were not read.
	Setup string `json:"setup"`

	name, ledger string
}

// Target is one load test target and whether this run met it.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Bound string  `json:"bound"`
	Met   bool    `json:"met"`
	How   string  `json:"how"`
}

// Summarize reads the reports bench.sh wrote into dir and derives the
// table and the targets.
func Summarize(dir string) (*Summary, error) {
	read := func(name string) (*Report, error) {
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			return nil, err
		}
		var r Report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s.json: %w", name, err)
		}
		return &r, nil
	}
	s := &Summary{LedgerSerialMicros: map[string]float64{}}
	var errs []error
	ceil, err := read("ceiling")
	if err != nil {
		return nil, fmt.Errorf("loadgen: summarize: %w", err)
	}
	s.CeilingCPUMicros = roleCPU(ceil, "tpload")
	s.CeilingPerSec = ceil.ThroughputPerSec
	if one, err := read("ceiling-1core"); err == nil {
		s.CeilingSerialMicros = one.LatencyMs.P50 * 1000
	} else {
		errs = append(errs, err)
	}
	if err := readLedgerBench(filepath.Join(dir, "ledger-bench.txt"), s.LedgerSerialMicros); err != nil {
		errs = append(errs, err)
	}
	for _, sc := range scenarios() {
		closed, err := read(sc.Name + "-closed")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		row := Row{Scenario: sc.Title, MaxPerSec: closed.ThroughputPerSec, Errors: closed.Errors.Total(), Setup: cmp.Or(setupOf(closed), sc.Setup, "—"), name: sc.Name, ledger: sc.Ledger}
		var parts []string
		for _, role := range sc.CPURoles {
			c := roleCPU(closed, role)
			row.CPUMicros += c
			parts = append(parts, fmt.Sprintf("%s %.0f", role, c))
		}
		row.CPUByRole = strings.Join(parts, " + ")
		if open, err := read(sc.Name + "-open"); err == nil {
			row.HalfRate, row.P50, row.P99, row.P999 = open.RatePerSec, open.LatencyMs.P50, open.LatencyMs.P99, open.LatencyMs.P999
			row.Errors += open.Errors.Total()
		} else {
			errs = append(errs, err)
		}
		if d, err := read("direct-at-" + sc.Name); err == nil {
			row.DirectP99 = d.LatencyMs.P99
			row.Errors += d.Errors.Total()
		}
		if sc.Name == "proxy" {
			s.ProxyCPUMicros = roleCPU(closed, "proxy")
		}
		s.Errors += row.Errors
		s.Rows = append(s.Rows, row)
	}
	if m, err := read("r1-mixed"); err == nil {
		s.Errors += m.Errors.Total()
	}
	s.targets()
	s.floorRows(read)
	if len(s.Rows) == 0 {
		return nil, fmt.Errorf("loadgen: summarize: no scenario reports: %w", errors.Join(errs...))
	}
	return s, nil
}

// roleCPU returns the CPU microseconds per answer of role in r.
func roleCPU(r *Report, role string) float64 {
	for _, c := range r.CPU {
		if c.Role == role {
			return c.PerThousand * 1000 // s per 1000 = ms per one; ×1000 = µs
		}
	}
	return 0
}

// benchLine matches "BenchmarkConsume/R1/sync-always/serial-2   2000
// 49123 ns/op" (the shipped durability; bench.sh runs only that one) and
// the older "BenchmarkConsume/R1/serial-2 ...", from before the sync
// variants.
var benchLine = regexp.MustCompile(`^BenchmarkConsume/(R[13])/(?:sync-always/)?serial(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

func readLedgerBench(path string, into map[string]float64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if m := benchLine.FindStringSubmatch(sc.Text()); m != nil {
			ns, _ := strconv.ParseFloat(m[2], 64)
			into[m[1]] = ns / 1000
		}
	}
	return nil
}

func (s *Summary) targets() {
	row := func(name string) *Row {
		for i := range s.Rows {
			if s.Rows[i].name == name {
				return &s.Rows[i]
			}
		}
		return nil
	}
	floor := s.CeilingCPUMicros + s.ProxyCPUMicros
	for _, t := range []struct {
		name  string
		bound float64
	}{{"r1", 0.70}, {"r3", 0.55}} {
		r := row(t.name)
		if r == nil || r.CPUMicros == 0 {
			continue
		}
		v := floor / r.CPUMicros
		s.Targets = append(s.Targets, Target{
			Name: "efficiency " + strings.ToUpper(t.name), Value: v, Bound: fmt.Sprintf("≥ %.2f", t.bound), Met: v >= t.bound,
			How: fmt.Sprintf("(%.0f µs two verifies + %.0f µs plain proxy) ÷ %.0f µs per decision (%s)", s.CeilingCPUMicros, s.ProxyCPUMicros, r.CPUMicros, r.CPUByRole),
		})
		if s.CeilingCPUMicros > 0 {
			s.Targets = append(s.Targets, Target{
				Name: "decisions per CPU-second " + strings.ToUpper(t.name), Value: 1e6 / r.CPUMicros, Bound: "report",
				Met: true, How: fmt.Sprintf("crypto ceiling alone: %.0f per CPU-second (%.2f of it)", 1e6/s.CeilingCPUMicros, s.CeilingCPUMicros/r.CPUMicros),
			})
		}
	}
	for i := range s.Rows {
		r := &s.Rows[i]
		if r.ledger == "" || r.DirectP99 == 0 {
			continue
		}
		serial := s.CeilingSerialMicros + s.LedgerSerialMicros[r.ledger]
		added := (r.P99 - r.DirectP99) * 1000
		how := ""
		if added < 0 {
			// The reference run had the worse tail: the machine, not the
			// verifier, set both p99s. Nothing was shown to be met.
			how = "inconclusive, the direct run's tail was worse: "
		}
		s.Targets = append(s.Targets, Target{
			Name: "p99 added at half max, " + r.name, Value: added / serial, Bound: "≤ 4 × serial", Met: added >= 0 && added <= 4*serial,
			How: how + fmt.Sprintf("p99 %.2f ms − direct p99 %.2f ms at %.0f/s = %.0f µs; serial = %.0f µs two verifies + %.0f µs ledger %s = %.0f µs",
				r.P99, r.DirectP99, r.HalfRate, added, s.CeilingSerialMicros, s.LedgerSerialMicros[r.ledger], r.ledger, serial),
		})
	}
	s.Targets = append(s.Targets, Target{
		Name: "errors other than intended denials", Value: float64(s.Errors), Bound: "0", Met: s.Errors == 0,
		How: "transport errors, unexpected answers, double allows and never-allowed requests over every run",
	})
}

// Markdown renders the section: header lines, the table and the targets.
func (s *Summary) Markdown(header []string) string {
	var b strings.Builder
	b.WriteString(SectionBegin + "\n## Load test\n\n")
	for _, h := range header {
		b.WriteString(h + "\n")
	}
	fmt.Fprintf(&b, "\na. Crypto ceiling: two `ed25519.Verify` per decision on all cores: **%.0f decisions/s**, %.0f µs CPU per decision; one core, serial: %.0f µs per decision (p50).\n",
		s.CeilingPerSec, s.CeilingCPUMicros, s.CeilingSerialMicros)
	fmt.Fprintf(&b, "Ledger `Consume` serial, sync_interval always (`go test -bench BenchmarkConsume/R[13]/sync-always/serial`, same run): R1 %.0f µs, R3 %.0f µs.\n\n",
		s.LedgerSerialMicros["R1"], s.LedgerSerialMicros["R3"])
	b.WriteString("| scenario | what ran on NATS (as the servers reported it) | max/s (closed loop) | CPU µs per request (closed loop) | open loop at half max | p50 / p99 / p99.9 ms | direct p99 at that rate | errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range s.Rows {
		direct := "—"
		if r.DirectP99 > 0 {
			direct = fmt.Sprintf("%.2f ms", r.DirectP99)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f (%s) | %.0f/s | %.2f / %.2f / %.2f | %s | %d |\n",
			r.Scenario, r.Setup, r.MaxPerSec, r.CPUMicros, r.CPUByRole, r.HalfRate, r.P50, r.P99, r.P999, direct, r.Errors)
	}
	s.floorMarkdown(&b)
	b.WriteString("\nTargets, from this run:\n\n| target | value | bound | met | how |\n|---|---|---|---|---|\n")
	for _, t := range s.Targets {
		met := "**no**"
		if t.Met {
			met = "yes"
		}
		if t.Bound == "report" {
			met = "—"
		}
		fmt.Fprintf(&b, "| %s | %.2f | %s | %s | %s |\n", t.Name, t.Value, t.Bound, met, t.How)
	}
	b.WriteString("\n" + SectionEnd + "\n")
	return b.String()
}

// ReplaceSection returns doc with the text between the markers replaced
// by section (which carries the markers), or with section appended when
// doc has none.
func ReplaceSection(doc []byte, section string) ([]byte, error) {
	i := bytes.Index(doc, []byte(SectionBegin))
	j := bytes.Index(doc, []byte(SectionEnd))
	switch {
	case i < 0 && j < 0:
		out := bytes.TrimRight(doc, "\n")
		return append(append(out, "\n\n"...), section...), nil
	case i < 0 || j < i:
		return nil, errors.New("loadgen: the load test markers are unpaired or out of order")
	}
	end := j + len(SectionEnd)
	if end < len(doc) && doc[end] == '\n' {
		end++
	}
	out := append([]byte{}, doc[:i]...)
	out = append(out, section...)
	return append(out, doc[end:]...), nil
}
