package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// Report is what a run measured. Its JSON form is what --json writes and
// what the bench summary reads.
type Report struct {
	Mode    string   `json:"mode"` // "open", "closed" or "ceiling"
	Expect  string   `json:"expect,omitempty"`
	Targets []string `json:"targets,omitempty"`
	FanOut  bool     `json:"fan_out,omitempty"`
	Workers int      `json:"workers"`
	// RatePerSec is the offered open-loop rate.
	RatePerSec float64 `json:"rate_per_sec,omitempty"`
	Planned    int     `json:"planned"`
	Started    int     `json:"started"`
	Answered   int64   `json:"answered"`
	// ElapsedSeconds runs from the first due time to the last answer.
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// ThroughputPerSec is answers (decisions for the ceiling) per second.
	ThroughputPerSec float64 `json:"throughput_per_sec"`
	LatencyMs        Latency `json:"latency_ms"`
	// Late counts open-loop sends that started more than 1 ms after their
	// due time: the generator or the target fell behind the offered rate
	// (their latency still counts from the due time).
	Late int64 `json:"late,omitempty"`
	// Outcomes counts answers by "allowed", reason code or "http_<status>";
	// Expected is what the plan's kinds call for, for the answered sends.
	Outcomes map[string]int64 `json:"outcomes,omitempty"`
	Expected map[string]int64 `json:"expected,omitempty"`
	Errors   Errors           `json:"errors"`
	CPU      []CPUUsage       `json:"cpu,omitempty"`
	Mix      map[string]int   `json:"mix,omitempty"` // planned sends by kind
	Distinct int              `json:"distinct_signed_requests"`
	// NATS is what the nats-servers did during the run (Config.NATSMonitor).
	NATS *NATSUsage `json:"nats,omitempty"`

	hist   *hdrhistogram.Histogram
	byKind [numKinds]int64
}

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// CPUUsage is the CPU time a group of processes used during a run.
type CPUUsage struct {
	Role    string  `json:"role"`
	PIDs    []int   `json:"pids,omitempty"`
	Seconds float64 `json:"seconds"`
	// PerThousand is CPU-seconds per 1,000 answered requests (decisions).
	PerThousand float64 `json:"seconds_per_1000"`
	// PIDSeconds is each process's share of Seconds, in PIDs order (for
	// the nats-servers: which server did the leaders' work); omitted for
	// a single process.
	PIDSeconds []float64 `json:"pid_seconds,omitempty"`
}

func newReport(cfg Config, started int, elapsed time.Duration) *Report {
	mode := "closed"
	if cfg.Rate > 0 {
		mode = "open"
	}
	return &Report{
		Mode: mode, Expect: cfg.Expect.String(), Targets: cfg.Targets, FanOut: cfg.Plan.fanOut,
		Workers: cfg.Workers, RatePerSec: cfg.Rate, Planned: cfg.Plan.Sends(), Started: started,
		ElapsedSeconds: elapsed.Seconds(), Outcomes: map[string]int64{}, Mix: cfg.Plan.KindCounts(),
		Distinct: cfg.Plan.Distinct(), hist: newHist(),
	}
}

// merge adds one worker's counts.
func (r *Report) merge(w *worker) {
	r.hist.Merge(w.hist)
	for k, n := range w.outcomes {
		r.Outcomes[k] += n
		r.Answered += n
	}
	for k, n := range w.byKind {
		r.byKind[k] += n
	}
	r.Late += w.late
	r.Errors.Transport += w.errs.Transport
	r.Errors.Unexpected += w.errs.Unexpected
	for _, s := range w.errs.Samples {
		if len(r.Errors.Samples) < maxSamples {
			r.Errors.Samples = append(r.Errors.Samples, s)
		}
	}
}

// checkGroups counts the signed requests allowed more than once (a replay
// let through) or never allowed although every send was answered, and
// sets the expected outcomes.
func (r *Report) checkGroups(allowed, answered, failed []atomic.Int32) {
	var groups int64
	for g := range allowed {
		a, n, f := allowed[g].Load(), answered[g].Load(), failed[g].Load()
		if n+f > 0 {
			groups++
		}
		switch {
		case a > 1:
			r.Errors.DoubleAllow += int64(a - 1)
			if len(r.Errors.Samples) < maxSamples {
				r.Errors.Samples = append(r.Errors.Samples, fmt.Sprintf("signed request %d allowed %d times", g, a))
			}
		case a == 0 && n > 0 && f == 0:
			r.Errors.NeverAllowed++
			if len(r.Errors.Samples) < maxSamples {
				r.Errors.Samples = append(r.Errors.Samples, fmt.Sprintf("signed request %d: %d answers, none allowed", g, n))
			}
		}
	}
	e := map[string]int64{
		outcomeAllowed:                          groups,
		string(reason.JTIReplay):                r.byKind[Fresh] + r.byKind[Replay] - groups,
		string(reason.RequestBindingMismatch):   r.byKind[Tampered],
		string(reason.PassportSignatureInvalid): r.byKind[BadSignature],
		string(reason.PassportMalformed):        r.byKind[Malformed],
	}
	maps.DeleteFunc(e, func(_ string, n int64) bool { return n == 0 })
	r.Expected = e
}

// finish computes rates, percentiles and CPU figures.
func (r *Report) finish(groups []CPUGroup, before, after cpuSample, self time.Duration) {
	if r.ElapsedSeconds > 0 {
		r.ThroughputPerSec = float64(r.Answered) / r.ElapsedSeconds
	}
	r.LatencyMs = latencyOf(r.hist)
	for i, g := range groups {
		var sum time.Duration
		per := make([]float64, len(g.PIDs))
		for j := range g.PIDs {
			d := after[i][j] - before[i][j]
			sum += d
			per[j] = d.Seconds()
		}
		u := cpuUsage(g.Role, g.PIDs, sum, r.Answered)
		if len(per) > 1 {
			u.PIDSeconds = per
		}
		r.CPU = append(r.CPU, u)
	}
	r.CPU = append(r.CPU, cpuUsage("tpload", nil, self, r.Answered))
}

func cpuUsage(role string, pids []int, d time.Duration, n int64) CPUUsage {
	u := CPUUsage{Role: role, PIDs: pids, Seconds: d.Seconds()}
	if n > 0 {
		u.PerThousand = d.Seconds() / float64(n) * 1000
	}
	return u
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000,
	}
}

// WriteText writes r as a short human table.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	switch r.Mode {
	case "ceiling":
		fmt.Fprintf(&b, "crypto ceiling: two ed25519.Verify per decision on %d workers\n", r.Workers)
	case "open":
		fmt.Fprintf(&b, "open loop at %.0f/s, %d workers, %d target(s), expect %s\n", r.RatePerSec, r.Workers, len(r.Targets), r.Expect)
	default:
		fmt.Fprintf(&b, "closed loop, %d workers, %d target(s), expect %s\n", r.Workers, len(r.Targets), r.Expect)
	}
	fmt.Fprintf(&b, "  %-11s %d planned, %d started, %d answered in %.2f s: %.1f/s\n",
		"requests", r.Planned, r.Started, r.Answered, r.ElapsedSeconds, r.ThroughputPerSec)
	l := r.LatencyMs
	fmt.Fprintf(&b, "  %-11s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms\n", "latency", l.P50, l.P90, l.P99, l.P999, l.Max)
	if r.Late > 0 {
		fmt.Fprintf(&b, "  %-11s %d sends started over 1 ms after their due time\n", "late", r.Late)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Outcomes)) {
		want := ""
		if r.Expected != nil {
			want = fmt.Sprintf(" (expected %d)", r.Expected[k])
		}
		fmt.Fprintf(&b, "  %-11s %-28s %d%s\n", "outcome", k, r.Outcomes[k], want)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Expected)) {
		if _, ok := r.Outcomes[k]; !ok {
			fmt.Fprintf(&b, "  %-11s %-28s 0 (expected %d)\n", "outcome", k, r.Expected[k])
		}
	}
	e := r.Errors
	fmt.Fprintf(&b, "  %-11s %d (transport %d, unexpected %d, double allow %d, never allowed %d)\n",
		"errors", e.Total(), e.Transport, e.Unexpected, e.DoubleAllow, e.NeverAllowed)
	for _, s := range e.Samples {
		fmt.Fprintf(&b, "    %s\n", s)
	}
	cpu := slices.SortedStableFunc(slices.Values(r.CPU), func(a, b CPUUsage) int { return cmp.Compare(a.Role, b.Role) })
	for _, c := range cpu {
		fmt.Fprintf(&b, "  %-11s %-9s %.2f s, %.3f s per 1000%s%s\n", "cpu", c.Role, c.Seconds, c.PerThousand, pidList(c.PIDs), pidSeconds(c.PIDSeconds))
	}
	writeNATS(&b, r.NATS, r.Answered)
	_, err := io.WriteString(w, b.String())
	return err
}

func pidSeconds(s []float64) string {
	if len(s) == 0 {
		return ""
	}
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return ", each " + strings.Join(parts, " / ") + " s"
}

func pidList(pids []int) string {
	if len(pids) == 0 {
		return ""
	}
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = fmt.Sprint(p)
	}
	return " (pid " + strings.Join(s, ",") + ")"
}
