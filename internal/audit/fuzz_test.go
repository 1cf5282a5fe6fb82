package audit

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// seedSegment is a well-formed segment of n events.
func seedSegment(n int) []byte {
	b := appendChainRecord(nil, 1, 0, [sha256.Size]byte{}, "node-a")
	var prev []byte
	for i := range n {
		e := decision(i)
		e.NodeSeq, e.EventID, e.NodeID = uint64(i+1), fmt.Sprintf("id-%d", i), "node-a"
		e.PrevEventSHA256 = zeroHash
		if prev != nil {
			e.PrevEventSHA256 = sha(prev)
		}
		data, _ := e.Encode()
		b = appendEventRecord(b, uint64(i+1), uint64(i+1), int64(i), e.NATSSubject(), e.EventID, data)
		prev = data
	}
	return b
}

func fuzzSeeds() map[string][]byte {
	full := seedSegment(3)
	return map[string][]byte{
		"seed-empty":      {},
		"seed-chain-only": seedSegment(0),
		"seed-three":      full,
		"seed-torn":       full[:len(full)-7],
		"seed-bad-crc":    append(append([]byte(nil), full[:len(full)-1]...), full[len(full)-1]^1),
		"seed-huge-len":   {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0},
	}
}

// TestWriteFuzzSeeds rewrites the committed seed corpus with -update.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzSpoolReader")
	for name, b := range fuzzSeeds() {
		path := filepath.Join(dir, name)
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if *update {
			os.MkdirAll(dir, 0o755)
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != content {
			t.Errorf("seed %s is missing or stale (run with -update): %v", path, err)
		}
	}
}

// FuzzSpoolReader feeds arbitrary bytes as the last segment of a spool, as a
// kill -9 or a disk could leave it: opening never panics, keeps only whole
// well-formed records, and what the reader returns then is exactly what
// scanSegment accepted, after which appends continue the chain.
//
// Run it without the NATS tests linked in, which slow the fuzzer's coverage
// bookkeeping about twentyfold:
//
//	go test -tags auditfuzz -run '^$' -fuzz FuzzSpoolReader -fuzztime 120s ./internal/audit
//
// The worker reports executions in batches; "0/sec" between reports is not
// a hang.
func FuzzSpoolReader(f *testing.F) {
	for _, b := range fuzzSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, scanErr := scanSegment(b)
		if st.valid > int64(len(b)) || (scanErr == nil && st.valid != int64(len(b))) {
			t.Fatalf("scanSegment: valid %d of %d bytes, err %v", st.valid, len(b), scanErr)
		}
		// The same bytes in two chunks parse to the same first record.
		if r1, n1, err1 := parseRecord(b); err1 == nil {
			if r2, n2, err2 := parseRecord(b[:n1]); err2 != nil || n2 != n1 || r2.pos != r1.pos {
				t.Fatalf("parseRecord of its own %d bytes: %v", n1, err2)
			}
		}
		dir := t.TempDir()
		name := segmentName(1)
		if st.valid > 0 {
			name = segmentName(st.first)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenSpool(SpoolConfig{Dir: dir, NodeID: "node-a", noSync: true})
		if err != nil {
			return // refused, with a reason: fine
		}
		defer s.Close()
		r := newReader(s, 1)
		defer r.close()
		var got int
		for {
			rec, ok, err := r.Next()
			if err != nil {
				t.Fatalf("reader after a successful open: %v", err)
			}
			if !ok {
				break
			}
			got++
			if rec.kind != kindEvent {
				t.Fatalf("reader returned a record of kind %d", rec.kind)
			}
		}
		if st.nodeID == "node-a" && got != st.events {
			t.Fatalf("reader returned %d events, scan accepted %d", got, st.events)
		}
		e := decision(0)
		if err := s.Append(t.Context(), e); err != nil {
			t.Fatalf("Append after recovery: %v", err)
		}
		if st.nodeID == "node-a" && st.valid > 0 && e.NodeSeq != st.nodeSeq+1 {
			t.Fatalf("Append after recovery: node_seq %d, want %d", e.NodeSeq, st.nodeSeq+1)
		}
	})
}
