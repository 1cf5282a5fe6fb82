package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// Version is the schema of every event (SPEC §9).
const Version = "trustplane-auth-audit-event-v0.1"

// SubjectPrefix starts every audit subject; the stream captures
// SubjectPrefix + ">".
const SubjectPrefix = "trustplane.audit."

// Outcomes of events (SPEC §9, §8.2).
const (
	OutcomeAllow  = "allow"
	OutcomeDeny   = "deny"
	OutcomeBundle = "bundle"
)

// zeroHash is prev_event_sha256 of a node's first event.
const zeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// maxPathBytes bounds the path recorded in an event. A request target can be
// as long as the header limit; the audit record keeps its head and says it
// was cut, so one event stays far below the NATS payload limit.
const maxPathBytes = 2048

// Event is one audit event. The members up to PolicyVersion are the public
// trustplane-auth-audit-event-v0.1 fields; the rest are ours (SPEC §9).
// The JSON member order is the field order, so encoding is deterministic.
//
// The caller fills the decision fields; Spool.Append sets EventID (if
// empty), NodeID, Region, NodeSeq and PrevEventSHA256.
type Event struct {
	Version            string      `json:"version"`
	OccurredAt         string      `json:"occurred_at"` // RFC 3339 UTC, milliseconds
	Component          string      `json:"component"`   // "verifier"
	Outcome            string      `json:"outcome"`     // allow, deny or bundle
	Accepted           bool        `json:"accepted"`
	ReasonCode         reason.Code `json:"reason_code"`
	DetailReason       string      `json:"detail_reason"`
	EventID            string      `json:"event_id"` // UUIDv7
	RequestID          string      `json:"request_id"`
	RouteID            string      `json:"route_id"`
	Audience           string      `json:"audience"`
	Issuer             string      `json:"issuer"`
	Subject            string      `json:"subject"`
	JTI                string      `json:"jti"`
	KeyBinding         string      `json:"key_binding"`
	RequiredKeyBinding string      `json:"required_key_binding"`
	TranscriptSHA256   string      `json:"transcript_sha256"`
	PolicyID           string      `json:"policy_id"`      // hex SHA-256 of the signed policy bundle
	PolicyVersion      int64       `json:"policy_version"` // its sequence

	NodeID string `json:"node_id"`
	Region string `json:"region"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status,omitempty"` // HTTP status of a request decision; none on bundle events
	// DetailCode is a denial's detail code (docs/SPEC-EXTENSIONS.md,
	// "Detail codes"): which check refused; none on allows and bundle events.
	DetailCode     reason.Detail `json:"detail_code,omitempty"`
	LatencyUS      int64         `json:"latency_us"`
	BundleSequence int64         `json:"bundle_sequence"` // request: the policy's sequence; bundle: the document's
	TraceID        string        `json:"trace_id"`

	// Bundle events only (SPEC §8.2): the document concerned.
	BundleKind   string `json:"bundle_kind,omitempty"`   // trust_material, policy_bundle or freshness_beacon
	BundleSHA256 string `json:"bundle_sha256,omitempty"` // hex SHA-256 of its signed bytes

	// An allow that minted a backend assertion (docs/BACKEND-JWT.md): its
	// jti and the key id it was signed with.
	AssertionJTI string `json:"assertion_jti,omitempty"`
	AssertionKID string `json:"assertion_kid,omitempty"`

	// A request of an egress route (docs/OAUTH-EGRESS.md): the provider
	// and grant asked, and on an allow the scopes (space-separated, in the
	// route's order) and audience requested, the token's lifetime in
	// seconds, whether it came from the cache and the SHA-256 of the
	// token, never the token.
	EgressProvider       string `json:"egress_provider,omitempty"`
	EgressGrant          string `json:"egress_grant,omitempty"`
	EgressScopes         string `json:"egress_scopes,omitempty"` // space-separated, as OAuth writes a scope
	EgressAudience       string `json:"egress_audience,omitempty"`
	EgressTokenLifetimeS int64  `json:"egress_token_lifetime_seconds,omitempty"`
	EgressFromCache      *bool  `json:"egress_from_cache,omitempty"`
	EgressTokenSHA256    string `json:"egress_token_sha256,omitempty"`

	NodeSeq         uint64 `json:"node_seq"`
	PrevEventSHA256 string `json:"prev_event_sha256"`
}

// Timestamp formats t as occurred_at: RFC 3339, UTC, milliseconds.
func Timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// NATSSubject is the subject the event is published on (SPEC §9):
// trustplane.audit.<outcome>.<reason_code>. A node of a region (Region set)
// publishes to its region's stream instead, under
// trustplane.region.<region>.audit.<outcome>.<reason_code>; the global
// stream gathers every region's events back under the SPEC subject
// (EnsureGlobalStream, docs/MULTI-REGION.md).
func (e *Event) NATSSubject() string {
	if e.Region != "" {
		return RegionSubjectPrefix(e.Region) + e.Outcome + "." + string(e.ReasonCode)
	}
	return SubjectPrefix + e.Outcome + "." + string(e.ReasonCode)
}

// RegionSubjectPrefix is the subject prefix of region's audit events:
// "trustplane.region.<region>.audit.".
func RegionSubjectPrefix(region string) string {
	return "trustplane.region." + region + ".audit."
}

// check reports an event that cannot be published as it is: its subject
// would not be a valid two-token tail.
func (e *Event) check() error {
	switch e.Outcome {
	case OutcomeAllow, OutcomeDeny, OutcomeBundle:
	default:
		return fmt.Errorf("event outcome %q: want allow, deny or bundle", e.Outcome)
	}
	if !validToken(string(e.ReasonCode)) {
		return fmt.Errorf("event reason code %q is not a subject token", e.ReasonCode)
	}
	return nil
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

// Encode returns the message bytes of e: the JSON encoding, members in field
// order. The same event always gives the same bytes, and these exact bytes
// are what the next event's prev_event_sha256 hashes.
func (e *Event) Encode() ([]byte, error) {
	if len(e.Path) > maxPathBytes {
		// Cut on a byte boundary; encoding/json replaces a split rune.
		e.Path = e.Path[:maxPathBytes] + "...(truncated)"
	}
	return json.Marshal(e)
}

// chainTail is how Encode ends for an event with NodeSeq 0 and an empty
// PrevEventSHA256: the chain members are the last two.
const chainTail = `,"node_seq":0,"prev_event_sha256":""}`

// encodeHead encodes e without its chain members: the bytes of Encode up
// to the comma before "node_seq". appendChain completes them, so the chain
// can be filled in under the spool's lock without encoding there.
func (e *Event) encodeHead() ([]byte, error) {
	seq, prev := e.NodeSeq, e.PrevEventSHA256
	e.NodeSeq, e.PrevEventSHA256 = 0, ""
	b, err := e.Encode()
	e.NodeSeq, e.PrevEventSHA256 = seq, prev
	if err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(b, []byte(chainTail)) {
		return nil, errors.New("audit: event encoding does not end with the chain members")
	}
	return b[:len(b)-len(chainTail)], nil
}

// appendChain completes head with the chain members, giving exactly the
// bytes Encode gives for the event with these values (a hex string needs
// no JSON escaping).
func appendChain(head []byte, nodeSeq uint64, prev string) []byte {
	b := append(head, `,"node_seq":`...)
	b = strconv.AppendUint(b, nodeSeq, 10)
	b = append(b, `,"prev_event_sha256":"`...)
	b = append(b, prev...)
	return append(b, `"}`...)
}

// Decode parses message bytes into an event. Unknown members are ignored, so
// a consumer reads events of later minor versions.
func Decode(data []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("audit: decode event: %w", err)
	}
	return &e, nil
}
