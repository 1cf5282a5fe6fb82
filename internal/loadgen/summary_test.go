package loadgen

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplaceSection(t *testing.T) {
	section := SectionBegin + "\nnew\n" + SectionEnd + "\n"
	for _, tc := range []struct {
		name, doc, want, err string
	}{
		{"append", "# perf\n\nold text\n", "# perf\n\nold text\n\n" + section, ""},
		{"replace", "a\n" + SectionBegin + "\nold\n" + SectionEnd + "\nafter\n", "a\n" + section + "after\n", ""},
		{"unpaired", "a\n" + SectionBegin + "\nold\n", "", "unpaired"},
		{"reversed", SectionEnd + "\n" + SectionBegin + "\n", "", "unpaired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReplaceSection([]byte(tc.doc), section)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ReplaceSection = %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("ReplaceSection = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestReadLedgerBench(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger-bench.txt")
	out := "goos: linux\nBenchmarkConsume/R1/serial-2         	    2000	     31879 ns/op	    4719 B/op\n" +
		"BenchmarkConsume/R3/sync-always/serial-2   2000   109524 ns/op\nBenchmarkConsume/R1/inflight64-2 100 5000 ns/op\n" +
		"BenchmarkConsume/R3/sync-default/serial-2   2000   5 ns/op\n"
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	if err := readLedgerBench(path, got); err != nil {
		t.Fatal(err)
	}
	if got["R1"] != 31.879 || got["R3"] != 109.524 || len(got) != 2 {
		t.Errorf("readLedgerBench = %v, want R1 31.879 and R3 109.524", got)
	}
}

// TestSummarizeFloor: the NATS comparison and the "what ran" column come
// from the reports' server counters.
func TestSummarizeFloor(t *testing.T) {
	dir := t.TempDir()
	usage := func(client string, ops int64, msgsIn int64, audit bool) *NATSUsage {
		u := &NATSUsage{Servers: []string{"a", "b", "c"}, SyncAlways: true, InMsgs: msgsIn,
			Streams: []StreamUsage{{Name: "KV_TRUSTPLANE_REPLAY", Replicas: 3, Leader: "a", Added: ops + 3}},
			Clients: []ClientUsage{{Name: client + " 1", InMsgs: 2 * ops}}}
		if audit {
			u.Streams = append(u.Streams, StreamUsage{Name: "TRUSTPLANE_AUDIT", Replicas: 3, Leader: "b", Added: ops})
		}
		return u
	}
	write := func(name string, r Report) {
		t.Helper()
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cpu := func(usPerOp float64) []CPUUsage { return []CPUUsage{{Role: "nats", PerThousand: usPerOp / 1000}} }
	write("ceiling", Report{ThroughputPerSec: 20000, CPU: []CPUUsage{{Role: "tpload", PerThousand: 0.086}}})
	write("r3-closed", Report{Answered: 1000, ThroughputPerSec: 2000, CPU: cpu(300), NATS: usage("verifierd", 1000, 8000, true)})
	write("r3-open", Report{Answered: 1000, ThroughputPerSec: 1000, RatePerSec: 1000, CPU: cpu(600), NATS: usage("verifierd", 1000, 9000, true)})
	write("floor-at-max", Report{Answered: 1000, ThroughputPerSec: 2000, CPU: cpu(250), NATS: usage("tpload-floor", 1000, 7000, false)})
	write("floor-open", Report{Answered: 1000, ThroughputPerSec: 1000, CPU: cpu(800), NATS: usage("tpload-floor", 1000, 15000, false)})
	// An R1 run: no server was read, the row says what verifierd's defaults are.
	write("r1-closed", Report{Answered: 1000, ThroughputPerSec: 3000, CPU: []CPUUsage{{Role: "verifier", PerThousand: 0.3}}})
	s, err := Summarize(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Floor) != 4 {
		t.Fatalf("floor rows = %+v, want 4 (r3-closed, floor-at-max, r3-open, floor-open)", s.Floor)
	}
	if f := s.Floor[1]; f.Run != "floor-at-max" || f.NATSMicros != 250 || f.MsgsIn != 7 || f.ClientMsgs != 2 {
		t.Errorf("floor-at-max row = %+v, want 250 µs, 7 messages in, 2 client messages per op", f)
	}
	want := map[string]struct {
		v   float64
		met bool
	}{
		"NATS CPU per decision ÷ floor, r3-open":   {0.75, true},
		"NATS CPU per decision ÷ floor, r3-closed": {1.2, false},
	}
	for _, tg := range s.Targets {
		if w, ok := want[tg.Name]; ok {
			if tg.Value != w.v || tg.Met != w.met {
				t.Errorf("%s = %v met %v, want %v met %v (%s)", tg.Name, tg.Value, tg.Met, w.v, w.met, tg.How)
			}
			delete(want, tg.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("targets missing: %v", want)
	}
	if len(s.Rows) != 2 || s.Rows[1].Setup != "ledger R3, 1 shard(s); audit R3, 1.00 events per decision; sync_interval always" {
		t.Errorf("r3 setup = %+v, want what the servers reported", s.Rows)
	}
	if len(s.Rows) == 2 && !strings.HasPrefix(s.Rows[0].Setup, "embedded server (no monitor; verifierd's defaults, not read back)") {
		t.Errorf("r1 setup = %q, want verifierd's defaults, said to be unread", s.Rows[0].Setup)
	}
	md := s.Markdown(nil)
	for _, w := range []string{"The NATS floor", "| floor-open | raw pairs at the same rate | 1000 | 800 | 15.00 | 2.000 | 0.000 | 0 |"} {
		if !strings.Contains(md, w) {
			t.Errorf("markdown lacks %q:\n%s", w, md)
		}
	}
}
