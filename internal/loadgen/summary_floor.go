package loadgen

import (
	"fmt"
	"strings"
)

// FloorRow is one run of the NATS comparison: a scenario's nats-servers
// per decision, or the floor's per raw pair.
type FloorRow struct {
	Run        string  `json:"run"`
	What       string  `json:"what"`
	RatePerSec float64 `json:"rate_per_sec"`
	NATSMicros float64 `json:"nats_cpu_us_per_op"`
	// Messages per op, from the servers' counters: all traffic in (client
	// and route), what the clients of the run published, and JetStream
	// API requests.
	MsgsIn     float64 `json:"msgs_in_per_op"`
	ClientMsgs float64 `json:"client_msgs_per_op"`
	API        float64 `json:"js_api_per_op"`
	Errors     int64   `json:"errors"`
}

// floorRuns are the reports of the comparison, in table order: each
// tpcluster run, then the floor at its rate; then the floor's own maximum
// and the lever measured.
var floorRuns = []struct{ name, what, client string }{
	{"r3-closed", "d. tpcluster, closed loop (64 workers)", "verifierd"},
	{"floor-at-max", "raw pairs at the same rate", "tpload-floor"},
	{"r3-open", "d. tpcluster, open loop at half max", "verifierd"},
	{"floor-open", "raw pairs at the same rate", "tpload-floor"},
	{"floor-closed", "raw pairs, closed loop (64 workers): NATS's maximum here", "tpload-floor"},
	{"floor-linger", "raw pairs at half max, audit events sent in 5 ms bursts (the lever)", "tpload-floor"},
}

// floorRows reads the comparison's reports that exist.
func (s *Summary) floorRows(read func(string) (*Report, error)) {
	for _, fr := range floorRuns {
		r, err := read(fr.name)
		if err != nil || r.NATS == nil {
			continue
		}
		in, _, _, _, api := r.NATS.PerOp(r.Answered)
		rate := r.ThroughputPerSec
		s.Floor = append(s.Floor, FloorRow{
			Run: fr.name, What: fr.what, RatePerSec: rate, NATSMicros: roleCPU(r, "nats"), MsgsIn: in,
			ClientMsgs: r.NATS.ClientMsgsPerOp(fr.client, r.Answered), API: api, Errors: r.Errors.Total(),
		})
		s.Errors += r.Errors.Total()
	}
	byRun := func(name string) *FloorRow {
		for i := range s.Floor {
			if s.Floor[i].Run == name {
				return &s.Floor[i]
			}
		}
		return nil
	}
	for _, p := range []struct{ ours, floor string }{{"r3-open", "floor-open"}, {"r3-closed", "floor-at-max"}} {
		o, f := byRun(p.ours), byRun(p.floor)
		if o == nil || f == nil || f.NATSMicros == 0 {
			continue
		}
		v := o.NATSMicros / f.NATSMicros
		s.Targets = append(s.Targets, Target{
			Name: "NATS CPU per decision ÷ floor, " + p.ours, Value: v, Bound: "≤ 1.15", Met: v <= 1.15,
			How: fmt.Sprintf("nats-servers %.0f µs per decision at %.0f/s ÷ %.0f µs per raw pair at %.0f/s (%s); messages in per op %.2f vs %.2f, client messages %.3f vs %.3f, API requests %.3f vs %.3f",
				o.NATSMicros, o.RatePerSec, f.NATSMicros, f.RatePerSec, p.floor, o.MsgsIn, f.MsgsIn, o.ClientMsgs, f.ClientMsgs, o.API, f.API),
		})
	}
}

// setupOf says what ran on the servers of a report: the ledger's and the
// audit stream's replicas, shards and events per decision, and the
// durability setting, as the servers reported them; "" if none were read.
// The names are SPEC
// §7's and §9's defaults (KV_TRUSTPLANE_REPLAY and its shards
// KV_TRUSTPLANE_REPLAY_s<i>, TRUSTPLANE_AUDIT), which deploy/local uses.
func setupOf(r *Report) string {
	u := r.NATS
	if u == nil {
		return ""
	}
	var ledger []StreamUsage
	for _, st := range u.Streams {
		if strings.HasPrefix(st.Name, "KV_TRUSTPLANE_REPLAY") && st.Added > 0 {
			ledger = append(ledger, st)
		}
	}
	parts := []string{}
	if len(ledger) > 0 {
		parts = append(parts, fmt.Sprintf("ledger R%d, %d shard(s)", ledger[0].Replicas, len(ledger)))
	} else {
		parts = append(parts, "ledger: no writes seen")
	}
	if a := u.Stream("TRUSTPLANE_AUDIT"); a != nil && a.Added > 0 {
		parts = append(parts, fmt.Sprintf("audit R%d, %.2f events per decision", a.Replicas, float64(a.Added)/float64(max(r.Answered, 1))))
	} else {
		parts = append(parts, "audit off")
	}
	sync := "sync_interval " + u.SyncInterval
	if u.SyncAlways {
		sync = "sync_interval always"
	}
	return strings.Join(append(parts, sync), "; ")
}

// floorMarkdown renders the comparison table, if any run of it exists.
func (s *Summary) floorMarkdown(b *strings.Builder) {
	if len(s.Floor) == 0 {
		return
	}
	b.WriteString("\nThe NATS floor (`tpload nats-floor`, same servers, same run): per decision under tpcluster, and per raw pair (one create-only put with the ledger's TTL into a copy of the ledger bucket, one event with the audit stream's headers and size into a copy of the audit stream, on connections placed like the verifiers', copies led by the originals' leaders):\n\n")
	b.WriteString("| run | what | rate/s | nats-server CPU µs per op | messages in per op (all servers) | client messages per op | JetStream API per op | errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, f := range s.Floor {
		fmt.Fprintf(b, "| %s | %s | %.0f | %.0f | %.2f | %.3f | %.3f | %d |\n", f.Run, f.What, f.RatePerSec, f.NATSMicros, f.MsgsIn, f.ClientMsgs, f.API, f.Errors)
	}
}
