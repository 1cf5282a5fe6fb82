package proxy

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/testlog"
)

// TestDecisionDebugLog: at debug level every decision writes one "decision"
// line with the audit event's codes, the denial's detail code and its
// operator error, and never the passport or the path; at info level none.
func TestDecisionDebugLog(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		t.Run(level.String(), func(t *testing.T) {
			var buf testlog.Buffer
			r := newRig(t, func(c *Config) {
				c.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
			})
			allowed := r.sign(t, "POST", r.srv.URL, "/v1/orders", "orders.create", []byte(`{"n":1}`))
			resp, _ := do(t, allowed)
			if resp.StatusCode != 200 {
				t.Fatalf("signed request = %d, want 200", resp.StatusCode)
			}
			// The same body signed, another one sent: the body hash check refuses.
			tampered := r.sign(t, "POST", r.srv.URL, "/v1/orders", "orders.create", []byte(`{"n":1}`))
			tampered.Body = http.NoBody
			tampered.ContentLength = 0
			if resp, _ := do(t, tampered); resp.StatusCode != 401 {
				t.Fatalf("tampered request = %d, want 401", resp.StatusCode)
			}
			var lines []map[string]any
			for line := range strings.Lines(buf.String()) {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if m["msg"] == "decision" {
					lines = append(lines, m)
				}
				if strings.Contains(line, "Bearer") || strings.Contains(line, "/v1/orders") {
					t.Errorf("log line carries the passport or the path: %s", line)
				}
			}
			if level != slog.LevelDebug {
				if len(lines) != 0 {
					t.Errorf("%d decision lines at %s, want none", len(lines), level)
				}
				return
			}
			if len(lines) != 2 {
				t.Fatalf("%d decision lines, want 2:\n%s", len(lines), buf.String())
			}
			allow, deny := lines[0], lines[1]
			if allow["outcome"] != "allow" || allow["reason_code"] != "allowed" || allow["detail_code"] != nil {
				t.Errorf("allow line = %v", allow)
			}
			if deny["outcome"] != "deny" || deny["reason_code"] != "request_binding_mismatch" ||
				deny["detail_code"] != "body_hash" || deny["detail_reason"] == nil || deny["request_id"] == "" {
				t.Errorf("deny line = %v, want request_binding_mismatch, detail_code body_hash and detail_reason", deny)
			}
		})
	}
}

// TestEarlyDenialDetail: a refusal of the adapter's own, before the
// pipeline runs, records its detail code like any decision.
func TestEarlyDenialDetail(t *testing.T) {
	r := newRig(t, nil)
	req, err := http.NewRequest("get", r.srv.URL+"/v1/orders/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := do(t, req)
	if resp.StatusCode != 401 {
		t.Fatalf("lower-case method = %d, want 401", resp.StatusCode)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recs) != 1 {
		t.Fatalf("%d records, want 1", len(r.recs))
	}
	if d := r.recs[0].Decision; d.Reason != reason.RequestBindingMismatch || d.Detail != reason.DetailMethodSpelling {
		t.Errorf("record = %s / %s, want %s / %s", d.Reason, d.Detail, reason.RequestBindingMismatch, reason.DetailMethodSpelling)
	}
}
