package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/reason"
)

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %d: %v: %s", path, len(out)+1, err, sc.Bytes())
		}
		out = append(out, m)
	}
	return out
}

// at reads a nested member of an exported OCSF object: at(m, "metadata", "uid").
func at(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[k]
	}
	return v
}

// TestExportOCSF exports the same stream twice, as stored and as OCSF,
// and checks each event's API Activity mapping (docs/AUDIT.md, "OCSF")
// against the stored event it came from.
func TestExportOCSF(t *testing.T) {
	url := natstest.Server(t).ClientURL()
	publish(t, natstest.Connect(t, url), "node-a", []*audit.Event{
		{Component: "verifier", Outcome: audit.OutcomeAllow, Accepted: true, ReasonCode: reason.Allowed, Status: 200,
			RequestID: "req-1", RouteID: "orders.get", Method: "GET", Path: "/v1/orders/1", Audience: "https://api.example",
			Issuer: "https://issuer.example", Subject: "spiffe://example/workload/a", JTI: "jti-hash-1"},
		{Component: "verifier", Outcome: audit.OutcomeDeny, ReasonCode: reason.JTIReplay, Status: 409,
			RequestID: "req-2", RouteID: "orders.create", Method: "POST", Path: "/v1/orders",
			Subject: "spiffe://example/workload/a", DetailReason: "jti already consumed"},
		{Component: "verifier", Outcome: audit.OutcomeDeny, ReasonCode: reason.PassportMissing, Status: 401,
			RequestID: "req-3", Method: "DELETE", Path: "/v1/orders/1"},
		{Component: "verifier", Outcome: audit.OutcomeBundle, ReasonCode: reason.BundleRejected,
			BundleKind: "policy_bundle", BundleSHA256: strings.Repeat("ab", 32), BundleSequence: 7},
	}...)
	dir := t.TempDir()
	raw, ocsf := filepath.Join(dir, "raw.jsonl"), filepath.Join(dir, "ocsf.jsonl")
	if code, out := tpaudit(t, url, "export", "--durable", "raw", "--out", raw); code != 0 {
		t.Fatalf("export = %d %s", code, out)
	}
	if code, out := tpaudit(t, url, "export", "--durable", "siem", "--format", "ocsf", "--out", ocsf); code != 0 {
		t.Fatalf("export --format ocsf = %d %s", code, out)
	}
	stored, mapped := readLines(t, raw), readLines(t, ocsf)
	if len(stored) != 4 || len(mapped) != 4 {
		t.Fatalf("exported %d stored and %d OCSF events, want 4 each", len(stored), len(mapped))
	}

	want := []struct {
		activity, severity, status int
		statusCode, operation      string
	}{
		{2, 1, 1, "allowed", "orders.get"},
		{1, 3, 2, "jti_replay", "orders.create"},
		{4, 3, 2, "passport_missing", ""},
		{99, 4, 2, "bundle_rejected", "bundle_rejected"},
	}
	num := func(v any) int {
		f, _ := v.(float64)
		return int(f)
	}
	for i, o := range mapped {
		s, w := stored[i], want[i]
		name := s["request_id"].(string)
		if name == "" {
			name = "bundle event"
		}
		t.Run(name, func(t *testing.T) {
			if num(o["class_uid"]) != 6003 || num(o["category_uid"]) != 6 || o["class_name"] != "API Activity" {
				t.Errorf("class %v category %v %v, want 6003 (API Activity), 6", o["class_uid"], o["category_uid"], o["class_name"])
			}
			if got := num(o["activity_id"]); got != w.activity {
				t.Errorf("activity_id = %d, want %d", got, w.activity)
			}
			if got := num(o["type_uid"]); got != 600300+w.activity {
				t.Errorf("type_uid = %d, want %d", got, 600300+w.activity)
			}
			if num(o["severity_id"]) != w.severity || num(o["status_id"]) != w.status || o["status_code"] != w.statusCode {
				t.Errorf("severity_id %v status_id %v status_code %v, want %d %d %s", o["severity_id"], o["status_id"], o["status_code"], w.severity, w.status, w.statusCode)
			}
			if got := at(o, "api", "operation"); got != w.operation {
				t.Errorf("api.operation = %v, want %q", got, w.operation)
			}
			occurred, err := time.Parse(time.RFC3339Nano, s["occurred_at"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if got := int64(o["time"].(float64)); got != occurred.UnixMilli() {
				t.Errorf("time = %d, want occurred_at %s in ms (%d)", got, s["occurred_at"], occurred.UnixMilli())
			}
			for _, c := range []struct {
				path []string
				want any
			}{
				{[]string{"metadata", "uid"}, s["event_id"]},
				{[]string{"metadata", "correlation_uid"}, s["request_id"]},
				{[]string{"metadata", "product", "name"}, "tpcluster"},
				{[]string{"actor", "user", "uid"}, s["subject"]},
				{[]string{"actor", "idp", "name"}, s["issuer"]},
				{[]string{"api", "service", "name"}, s["audience"]},
				{[]string{"http_request", "http_method"}, s["method"]},
				{[]string{"http_request", "url", "path"}, s["path"]},
				{[]string{"api", "response", "code"}, s["status"]},
				{[]string{"unmapped", "node_id"}, "node-a"},
				{[]string{"unmapped", "node_seq"}, s["node_seq"]},
				{[]string{"unmapped", "prev_event_sha256"}, s["prev_event_sha256"]},
				{[]string{"unmapped", "jti"}, s["jti"]},
				{[]string{"unmapped", "bundle_sha256"}, s["bundle_sha256"]},
			} {
				want := c.want
				if want == nil && c.path[len(c.path)-1] == "code" {
					want = float64(0) // bundle events have no HTTP status
				}
				if want == nil {
					want = ""
				}
				if got := at(o, c.path...); got != want {
					t.Errorf("%s = %v, want %v", strings.Join(c.path, "."), got, want)
				}
			}
		})
	}

	if code, out := tpaudit(t, url, "export", "--durable", "bad", "--format", "cef"); code != exitUsage || !strings.Contains(out, "--format=cef") {
		t.Errorf("export --format cef = %d %s, want exit %d naming the flag", code, out, exitUsage)
	}
}
