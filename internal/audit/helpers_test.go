package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/tpcluster/tpcluster/internal/reason"
)

func openSpool(t testing.TB, cfg SpoolConfig) *Spool {
	t.Helper()
	if cfg.NodeID == "" {
		cfg.NodeID = "node-a"
	}
	s, err := OpenSpool(cfg)
	if err != nil {
		t.Fatalf("OpenSpool: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// decision is a small request event.
func decision(i int) *Event {
	return &Event{Component: "verifier", Outcome: OutcomeDeny, ReasonCode: reason.PassportMissing,
		RequestID: fmt.Sprintf("req-%d", i), Method: "GET", Path: "/v1/orders/x", Status: 401}
}

func appendN(t testing.TB, s *Spool, from, n int) []*Event {
	t.Helper()
	var out []*Event
	for i := from; i < from+n; i++ {
		e := decision(i)
		if err := s.Append(t.Context(), e); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
