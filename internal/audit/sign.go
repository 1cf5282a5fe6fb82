package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SignatureHeader is the NATS header that carries a node's signature of an
// event or checkpoint (docs/AUDIT.md): the unpadded base64url of the 64-byte
// Ed25519 signature. A header, not an event member, so the event bytes, the
// public fields and the hash chain stay exactly as they were.
const SignatureHeader = "Tpcluster-Audit-Sig"

// Signing contexts: a signature over an event can never pass for one over
// a checkpoint, or the other way round.
const (
	eventContext      = "tpcluster-audit-event-v1\n"
	checkpointContext = "tpcluster-audit-checkpoint-v1\n"
)

// CheckpointVersion is the version member of every checkpoint.
const CheckpointVersion = "tpcluster-audit-checkpoint-v1"

// Checkpoint is a node's signed statement about its own chain: at IssuedAt,
// JetStream had acknowledged every event up to NodeSeq, whose exact bytes
// hash to HeadSHA256 and which the node appended at HeadAt. A node
// publishes one every PublisherConfig.CheckpointInterval and one when its
// publisher stops, on CheckpointSubject(node) in the audit stream, so a
// verifier can tell a deleted newest event (and a purged stream) from a
// quiet node.
type Checkpoint struct {
	Version    string `json:"version"`
	NodeID     string `json:"node_id"`
	Region     string `json:"region,omitempty"`
	NodeSeq    uint64 `json:"node_seq"`
	HeadSHA256 string `json:"head_sha256"`
	HeadAt     string `json:"head_at"`   // RFC 3339 UTC, ms: when event NodeSeq was appended
	IssuedAt   string `json:"issued_at"` // RFC 3339 UTC, ms
}

// CheckpointSubject is the subject of node's checkpoints:
// trustplane.audit.checkpoint.<first 32 hex digits of SHA-256(node id)>
// (a node id may hold characters a subject token cannot). A node of a
// region publishes under its region's prefix, as its events do.
func CheckpointSubject(region, nodeID string) string {
	sum := sha256.Sum256([]byte(nodeID))
	prefix := SubjectPrefix
	if region != "" {
		prefix = RegionSubjectPrefix(region)
	}
	return prefix + "checkpoint." + hex.EncodeToString(sum[:16])
}

// IsCheckpointSubject reports whether subject carries checkpoints rather
// than events: its last but one token is "checkpoint", which no event
// outcome is.
func IsCheckpointSubject(subject string) bool {
	i := strings.LastIndexByte(subject, '.')
	return i >= 0 && strings.HasSuffix(subject[:i], ".checkpoint")
}

// DecodeCheckpoint parses checkpoint message bytes, refusing a wrong
// version, a missing node id or node_seq, and a head hash that is not 64
// lowercase hex digits.
func DecodeCheckpoint(data []byte) (*Checkpoint, error) {
	var c Checkpoint
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("audit: decode checkpoint: %w", err)
	}
	switch {
	case c.Version != CheckpointVersion:
		return nil, fmt.Errorf("audit: checkpoint version %q, want %s", c.Version, CheckpointVersion)
	case c.NodeID == "" || c.NodeSeq == 0:
		return nil, errors.New("audit: checkpoint without node_id or node_seq")
	case !isHex64(c.HeadSHA256):
		return nil, errors.New("audit: checkpoint head_sha256 is not 64 lowercase hex digits")
	}
	if _, err := time.Parse(time.RFC3339, c.IssuedAt); err != nil {
		return nil, fmt.Errorf("audit: checkpoint issued_at: %w", err)
	}
	if _, err := time.Parse(time.RFC3339, c.HeadAt); err != nil {
		return nil, fmt.Errorf("audit: checkpoint head_at: %w", err)
	}
	return &c, nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// signEvent returns the SignatureHeader value for event bytes data.
func signEvent(key ed25519.PrivateKey, data []byte) string {
	return sign(key, eventContext, data)
}

// signCheckpoint returns the SignatureHeader value for checkpoint bytes.
func signCheckpoint(key ed25519.PrivateKey, data []byte) string {
	return sign(key, checkpointContext, data)
}

func sign(key ed25519.PrivateKey, context string, data []byte) string {
	msg := make([]byte, 0, len(context)+len(data))
	msg = append(append(msg, context...), data...)
	return base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, msg))
}

// verifySig reports whether sig (a SignatureHeader value) is a signature of
// data in context by one of keys. It never panics: a key of the wrong
// length verifies nothing.
func verifySig(keys []ed25519.PublicKey, context string, data []byte, sig string) bool {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return false
	}
	msg := make([]byte, 0, len(context)+len(data))
	msg = append(append(msg, context...), data...)
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, msg, raw) {
			return true
		}
	}
	return false
}
