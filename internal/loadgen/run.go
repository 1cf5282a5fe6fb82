package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// Expect says what answers the targets must give.
type Expect int

const (
	// ExpectVerifier: targets verify (verifierd, or nginx in front of its
	// check mode). Each send must get the answer its kind calls for, and
	// every signed request must be allowed exactly once.
	ExpectVerifier Expect = iota
	// ExpectUpstream: targets do not verify (the upstream itself, a plain
	// reverse proxy). Every send must get a 2xx.
	ExpectUpstream
)

func (e Expect) String() string {
	if e == ExpectUpstream {
		return "upstream"
	}
	return "verifier"
}

// Config is one load run.
type Config struct {
	Plan *Plan
	// Targets are base URLs (see CheckTarget); the plan's target indexes
	// refer to them.
	Targets []string
	Expect  Expect
	// Rate is the open-loop arrival rate per second. If zero, the run is
	// closed loop: Workers send as fast as they are answered.
	Rate float64
	// Workers is the number of concurrent senders, the bound on requests
	// in flight. If zero, 64.
	Workers int
	// Duration bounds the run: no request is started after it. If zero,
	// only the plan's size bounds the run.
	Duration time.Duration
	// Timeout bounds one request. If zero, 10s.
	Timeout time.Duration
	// CPU lists the processes whose CPU time is reported per 1,000
	// decisions.
	CPU []CPUGroup
	// NATSMonitor lists the monitoring base URLs of nats-servers
	// (http://127.0.0.1:8222) whose counters and streams are read before
	// and after the run (Report.NATS). If empty, none.
	NATSMonitor []string
	// Progress, if not nil, receives a one-line progress display, redrawn
	// every second.
	Progress io.Writer
}

// maxSamples is how many error descriptions a report keeps.
const maxSamples = 10

// worker is the state one sender owns; it is merged after the run.
type worker struct {
	hist     *hdrhistogram.Histogram
	outcomes map[string]int64
	byKind   [numKinds]int64 // answered sends per kind
	late     int64
	errs     Errors
}

// Run sends the plan and reports what came back. It returns an error only
// if the run could not be made (bad config, a process to measure is
// gone); failed requests are counted in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Plan == nil || len(cfg.Targets) == 0 {
		return nil, errors.New("loadgen: run: no plan or no targets")
	}
	for i, t := range cfg.Targets {
		base, err := CheckTarget(t)
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		cfg.Targets[i] = base
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	p := cfg.Plan
	client := &http.Client{
		Transport: newTransport(cfg.Workers, cfg.Timeout),
		// A redirect would be an unexpected answer, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()

	workers := make([]*worker, cfg.Workers)
	for i := range workers {
		workers[i] = &worker{hist: newHist(), outcomes: map[string]int64{}}
	}
	// Per signed request: allows, answers and transport failures.
	allowed := make([]atomic.Int32, p.groups)
	groupAnswered := make([]atomic.Int32, p.groups)
	groupFailed := make([]atomic.Int32, p.groups)
	codes := requestCodes()
	var answered, failed atomic.Int64

	do := func(ctx context.Context, wi, slot int) {
		w := workers[wi]
		sd := p.sends[slot]
		r := &p.reqs[sd.req]
		out, err := roundTrip(ctx, client, codes, cfg.Targets[sd.target], r, cfg.Timeout)
		if err != nil {
			failed.Add(1)
			if r.group >= 0 {
				groupFailed[r.group].Add(1)
			}
			w.errs.add(&w.errs.Transport, fmt.Sprintf("send %d (%s) to %s: %v", slot, sd.kind, cfg.Targets[sd.target], err))
			return
		}
		answered.Add(1)
		w.byKind[sd.kind]++
		if cfg.Expect == ExpectUpstream && out.name == outcomeAllowed {
			out.name = outcome2xx // nothing was verified
		}
		w.outcomes[out.name]++
		if cfg.Expect == ExpectUpstream {
			if out.status/100 != 2 {
				failed.Add(1)
				w.errs.add(&w.errs.Unexpected, fmt.Sprintf("send %d (%s) to %s: status %d, want 2xx", slot, sd.kind, cfg.Targets[sd.target], out.status))
			}
			return
		}
		if r.group >= 0 {
			groupAnswered[r.group].Add(1)
			if out.name == outcomeAllowed {
				allowed[r.group].Add(1)
			}
		}
		if want := wantOutcome(sd.kind, out); want != "" {
			failed.Add(1)
			w.errs.add(&w.errs.Unexpected, fmt.Sprintf("send %d (%s) to %s: got %s (status %d), want %s", slot, sd.kind, cfg.Targets[sd.target], out.name, out.status, want))
		}
	}
	record := func(wi, _ int, latency, late time.Duration) {
		w := workers[wi]
		recordLatency(w.hist, latency)
		if late > time.Millisecond {
			w.late++
		}
	}

	m, err := startMeter(ctx, cfg.CPU, cfg.NATSMonitor)
	if err != nil {
		return nil, err
	}
	s := schedule{n: p.Sends(), workers: cfg.Workers, rate: cfg.Rate, stopAfter: cfg.Duration}
	stopProgress := startProgress(cfg.Progress, p.Sends(), &answered, &failed)
	start, started := s.run(ctx, do, record)
	elapsed := time.Since(start)
	stopProgress()
	reading, err := m.stop(ctx)
	if err != nil {
		return nil, err
	}

	rep := newReport(cfg, started, elapsed)
	for _, w := range workers {
		rep.merge(w)
	}
	if cfg.Expect == ExpectVerifier {
		rep.checkGroups(allowed, groupAnswered, groupFailed)
	}
	m.finish(rep, reading)
	return rep, ctx.Err()
}

// outcome is what an answer said.
type outcome struct {
	status int
	name   string // "allowed", a reason code, or "http_<status>"
}

// The outcome names of a 2xx answer: from a verifier, an allow; from a
// target that verifies nothing, just a success.
const (
	outcomeAllowed = string(reason.Allowed)
	outcome2xx     = "2xx"
)

// requestCodes returns the reason codes an answer may name by their text;
// anything else is reported by its status only, so a report never carries
// text a target made up.
func requestCodes() map[string]reason.Code {
	m := map[string]reason.Code{}
	for _, c := range reason.RequestCodes() {
		m[string(c)] = c
	}
	return m
}

// roundTrip sends one request and classifies the answer.
func roundTrip(ctx context.Context, c *http.Client, codes map[string]reason.Code, base string, r *request, timeout time.Duration) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if len(r.body) > 0 {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, base+r.target, body)
	if err != nil {
		return outcome{}, err
	}
	req.Header = r.header // shared and read-only: the transport does not write it
	req.Host = Authority
	resp, err := c.Do(req)
	if err != nil {
		return outcome{}, err
	}
	defer resp.Body.Close()
	o := outcome{status: resp.StatusCode}
	if resp.StatusCode/100 == 2 {
		o.name = outcomeAllowed
		_, err = io.Copy(io.Discard, resp.Body)
		return o, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return outcome{}, fmt.Errorf("status %d: read body: %w", resp.StatusCode, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // keep the connection reusable
	var deny struct {
		Reason string `json:"reason"`
	}
	o.name = "http_" + strconv.Itoa(resp.StatusCode)
	if json.Unmarshal(b, &deny) == nil {
		if code, ok := codes[deny.Reason]; ok && code.HTTPStatus() == resp.StatusCode {
			o.name = string(code)
		}
	}
	return o, nil
}

// wantOutcome returns "" if o is what a send of kind k may get, else what
// it should have got. Fresh and Replay sends may get either allowed or
// jti_replay: which of the sends of one signed request arrives first is
// up to the network, and checkGroups counts the allows.
func wantOutcome(k Kind, o outcome) string {
	var want reason.Code
	switch k {
	case Fresh, Replay:
		if o.name == outcomeAllowed || o.name == string(reason.JTIReplay) {
			return ""
		}
		return "allowed or " + string(reason.JTIReplay)
	case Tampered:
		want = reason.RequestBindingMismatch
	case BadSignature:
		want = reason.PassportSignatureInvalid
	case Malformed:
		want = reason.PassportMalformed
	}
	if o.name == string(want) {
		return ""
	}
	return string(want)
}

// Errors counts what went wrong.
type Errors struct {
	// Transport counts requests without an answer (refused, reset,
	// timed out).
	Transport int64 `json:"transport"`
	// Unexpected counts answers other than the send's kind calls for.
	Unexpected int64 `json:"unexpected"`
	// DoubleAllow counts allows beyond the first of one signed request:
	// a replay let through.
	DoubleAllow int64 `json:"double_allow"`
	// NeverAllowed counts signed requests whose every send was answered
	// and none allowed.
	NeverAllowed int64 `json:"never_allowed"`
	// Samples describe the first few errors.
	Samples []string `json:"samples,omitempty"`
}

// Total returns the number of errors.
func (e *Errors) Total() int64 { return e.Transport + e.Unexpected + e.DoubleAllow + e.NeverAllowed }

func (e *Errors) add(counter *int64, sample string) {
	*counter++
	if len(e.Samples) < maxSamples {
		e.Samples = append(e.Samples, sample)
	}
}

// histogram bounds: 1 µs to 1 hour, 3 significant digits.
const (
	histMin = 1
	histMax = int64(time.Hour / time.Microsecond)
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, 3) }

// recordLatency records d in microseconds, clamped to the histogram's
// range, so an extreme value is counted at the top rather than lost.
func recordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	_ = h.RecordValue(min(max(d.Microseconds(), histMin), histMax))
}

// startProgress redraws a progress line on w every second until the
// returned function is called; that function waits for the redrawing
// goroutine and ends the line.
func startProgress(w io.Writer, planned int, answered, failed *atomic.Int64) func() {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		start := time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var last int64
		for {
			select {
			case <-done:
				fmt.Fprintln(w)
				return
			case <-tick.C:
				n := answered.Load()
				fmt.Fprintf(w, "\r%6.1fs  answered %d/%d  %d/s  errors %d   ",
					time.Since(start).Seconds(), n, planned, n-last, failed.Load())
				last = n
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
