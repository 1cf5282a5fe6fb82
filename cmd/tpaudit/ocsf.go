package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// OCSF API Activity (class 6003, category Application Activity), the class
// for a request to an API and its outcome. docs/AUDIT.md, "OCSF", gives the
// mapping; this is its one implementation.
const (
	ocsfVersion       = "1.3.0"
	ocsfClassUID      = 6003
	ocsfCategoryUID   = 6
	ocsfActivityOther = 99
)

// ocsfActivity maps an HTTP method to an API Activity activity_id.
func ocsfActivity(method string) (int, string) {
	switch method {
	case "POST":
		return 1, "Create"
	case "GET", "HEAD", "OPTIONS":
		return 2, "Read"
	case "PUT", "PATCH":
		return 3, "Update"
	case "DELETE":
		return 4, "Delete"
	}
	return ocsfActivityOther, "Other"
}

// ocsfSeverity: allows and applied bundles are informational, denials
// medium, a refused bundle document high (someone signed or put a bad one).
func ocsfSeverity(e *audit.Event) (int, string) {
	switch {
	case e.Outcome == audit.OutcomeDeny:
		return 3, "Medium"
	case e.ReasonCode == reason.BundleRejected:
		return 4, "High"
	}
	return 1, "Informational"
}

// toOCSF maps one audit event (the stream's JSON) to an OCSF API Activity
// event. Members without an OCSF home (the chain, the jti hash, key
// binding, policy identity) go under unmapped, so nothing is dropped.
func toOCSF(data []byte) ([]byte, error) {
	var e audit.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode audit event: %w", err)
	}
	at, err := time.Parse(time.RFC3339Nano, e.OccurredAt)
	if err != nil {
		return nil, fmt.Errorf("audit event %s: occurred_at: %w", e.EventID, err)
	}
	activity, activityName := ocsfActivity(e.Method)
	if e.Outcome == audit.OutcomeBundle {
		activity, activityName = ocsfActivityOther, "Other"
	}
	severity, severityName := ocsfSeverity(&e)
	status, statusName := 2, "Failure"
	if e.Accepted {
		status, statusName = 1, "Success"
	}
	operation := e.RouteID
	if e.Outcome == audit.OutcomeBundle {
		operation = string(e.ReasonCode) // bundle_applied or bundle_rejected
	}
	out := map[string]any{
		"class_uid":     ocsfClassUID,
		"class_name":    "API Activity",
		"category_uid":  ocsfCategoryUID,
		"category_name": "Application Activity",
		"activity_id":   activity,
		"activity_name": activityName,
		"type_uid":      ocsfClassUID*100 + activity,
		"type_name":     "API Activity: " + activityName,
		"time":          at.UnixMilli(),
		"severity_id":   severity,
		"severity":      severityName,
		"status_id":     status,
		"status":        statusName,
		"status_code":   string(e.ReasonCode),
		"status_detail": e.DetailReason,
		"message":       fmt.Sprintf("%s %s", e.Outcome, e.ReasonCode),
		"metadata": map[string]any{
			"version":         ocsfVersion,
			"uid":             e.EventID,
			"correlation_uid": e.RequestID,
			"original_time":   e.OccurredAt,
			"product": map[string]any{
				"name":        "tpcluster",
				"vendor_name": "tpcluster",
				"feature":     map[string]any{"name": e.Component},
			},
		},
		"actor": map[string]any{
			"user": map[string]any{"uid": e.Subject, "name": e.Subject},
			"idp":  map[string]any{"name": e.Issuer},
		},
		"api": map[string]any{
			"operation": operation,
			"service":   map[string]any{"name": e.Audience},
			"request":   map[string]any{"uid": e.RequestID},
			"response":  map[string]any{"code": e.Status},
		},
		"http_request": map[string]any{
			"http_method": e.Method,
			"url":         map[string]any{"path": e.Path},
		},
		// OCSF requires cloud on API Activity; the "cloud" here is the
		// tpcluster fleet and the node's region.
		"cloud": map[string]any{"provider": "tpcluster", "region": e.Region},
		"unmapped": map[string]any{
			"version":              e.Version,
			"outcome":              e.Outcome,
			"jti":                  e.JTI,
			"key_binding":          e.KeyBinding,
			"required_key_binding": e.RequiredKeyBinding,
			"transcript_sha256":    e.TranscriptSHA256,
			"policy_id":            e.PolicyID,
			"policy_version":       e.PolicyVersion,
			"node_id":              e.NodeID,
			"latency_us":           e.LatencyUS,
			"bundle_sequence":      e.BundleSequence,
			"bundle_kind":          e.BundleKind,
			"bundle_sha256":        e.BundleSHA256,
			"trace_id":             e.TraceID,
			"node_seq":             e.NodeSeq,
			"prev_event_sha256":    e.PrevEventSHA256,
		},
	}
	return json.Marshal(out)
}
