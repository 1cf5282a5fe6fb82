package loadgen

import (
	"crypto/sha256"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// Field 14 (utime) 250 and 15 (stime) 37 ticks; the command name holds
	// a space and parentheses, as a process may name itself.
	const tail = " S 1 2 3 4 5 6 7 8 9 10 250 37 11 12 20 0 8 0 100 2000 30"
	for _, tc := range []struct {
		name, in string
		want     time.Duration
		err      string
	}{
		{"plain", "4242 (verifierd)" + tail, 2870 * time.Millisecond, ""},
		{"odd name", "4242 (a) (b c)" + tail, 2870 * time.Millisecond, ""},
		{"no name", "4242 verifierd" + tail, 0, "no ')'"},
		{"short", "4242 (x) S 1 2 3", 0, "fields after the command name"},
		{"not a number", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 x 37 11", 0, "cpu time field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseStat = %v, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStat = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestProcessCPU reads this process's own CPU time around some work.
func TestProcessCPU(t *testing.T) {
	before, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	for start := time.Now(); time.Since(start) < 200*time.Millisecond; {
		sum = sha256.Sum256(sum[:])
	}
	after, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("CPU time %v then %v after 200 ms of hashing: want growth", before, after)
	}
	if _, err := processCPU(1 << 30); err == nil {
		t.Error("processCPU of a pid that cannot exist: want an error")
	}
}

// TestFinishPerProcess: a group's CPU is the sum of its processes', and
// each process's share is kept in PID order (which nats-server led).
func TestFinishPerProcess(t *testing.T) {
	r := &Report{Answered: 1000, ElapsedSeconds: 1, hist: newHist()}
	groups := []CPUGroup{{Role: "nats", PIDs: []int{11, 12, 13}}, {Role: "verifier", PIDs: []int{21}}}
	before := cpuSample{{time.Second, 2 * time.Second, 0}, {time.Second}}
	after := cpuSample{{3 * time.Second, 2500 * time.Millisecond, 250 * time.Millisecond}, {1500 * time.Millisecond}}
	r.finish(groups, before, after, 0)
	n := r.CPU[0]
	if n.Role != "nats" || n.Seconds != 2.75 || n.PerThousand != 2.75 || len(n.PIDSeconds) != 3 ||
		n.PIDSeconds[0] != 2 || n.PIDSeconds[1] != 0.5 || n.PIDSeconds[2] != 0.25 {
		t.Errorf("nats usage = %+v, want 2.75 s in all, 2 / 0.5 / 0.25 s by process", n)
	}
	if v := r.CPU[1]; v.Seconds != 0.5 || v.PIDSeconds != nil {
		t.Errorf("verifier usage = %+v, want 0.5 s and no per-process list for one process", v)
	}
}
