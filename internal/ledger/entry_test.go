package ledger

import (
	"encoding/json"
	"testing"
	"time"
)

// TestEntryJSON: the hand-written ledger value decodes to what was written,
// for awkward strings too.
func TestEntryJSON(t *testing.T) {
	at := time.Date(2026, 11, 23, 14, 0, 0, 123e6, time.FixedZone("x", 3600))
	for _, s := range []string{"", "node-1", `q"uote\\back`, "ctl\x00\x1f\n", "ünï©ødé", "bad\xffutf8", "<html>&"} {
		b := appendEntry(nil, s, at, s+"-route")
		var got struct {
			Node    string `json:"node"`
			At      string `json:"at"`
			RouteID string `json:"route_id"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("appendEntry(%q) = %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s) // encoding/json's reading of s (U+FFFD for bad UTF-8)
		var ws string
		json.Unmarshal(want, &ws)
		if got.Node != ws || got.RouteID != ws+"-route" || got.At != "2026-11-23T13:00:00.123Z" {
			t.Errorf("appendEntry(%q) decodes to %+v", s, got)
		}
	}
}
