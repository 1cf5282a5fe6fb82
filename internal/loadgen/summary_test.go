package loadgen

import (
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
		"BenchmarkConsume/R3/serial-2   2000   109524 ns/op\nBenchmarkConsume/R1/inflight64-2 100 5000 ns/op\n"
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
