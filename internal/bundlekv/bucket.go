package bundlekv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBucket is the bundle channel's KV bucket (SPEC §8.1).
const DefaultBucket = "TRUSTPLANE_BUNDLES"

// Keys of the bucket (SPEC §8.1, §8.3). Each value is the exact bytes of a
// signed document.
const (
	KeyTrustMaterial = "trust-material"
	KeyPolicyBundle  = "policy-bundle"
	KeyFreshness     = "freshness"
)

// StatusSubject is where every node answers fleet status requests
// (SPEC §10.3: bundlepub status).
const StatusSubject = "trustplane.status"

// Kind names a document of the channel in metrics, logs and bundle events.
type Kind string

const (
	KindTrustMaterial Kind = "trust_material"
	KindPolicyBundle  Kind = "policy_bundle"
	KindBeacon        Kind = "freshness_beacon"
)

// keyKind maps a bucket key to its document kind.
func keyKind(key string) (Kind, bool) {
	switch key {
	case KeyTrustMaterial:
		return KindTrustMaterial, true
	case KeyPolicyBundle:
		return KindPolicyBundle, true
	case KeyFreshness:
		return KindBeacon, true
	}
	return "", false
}

// String is the kind as prose ("policy bundle"), for errors.
func (k Kind) String() string {
	switch k {
	case KindTrustMaterial:
		return "trust material"
	case KindPolicyBundle:
		return "policy bundle"
	case KindBeacon:
		return "freshness beacon"
	}
	return string(k)
}

// RollbackError is a document refused because its sequence is not above the
// one already in place while its bytes differ (SPEC §5.3, §8.1, §8.2).
type RollbackError struct {
	Kind     Kind
	Sequence int64 // of the refused document
	Current  int64 // of the document in place
}

func (e *RollbackError) Error() string {
	return fmt.Sprintf("%s sequence %d is not above %d already in place: rollback refused", e.Kind, e.Sequence, e.Current)
}

// EnsureBucket creates the bundle bucket if it is missing: the admin
// role's step (tpnats setup, docs/NATS-SECURITY.md).
func EnsureBucket(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) error {
	if bucket == "" {
		bucket = DefaultBucket
	}
	if _, err := openBucket(ctx, js, bucket, replicas, false); err != nil {
		return fmt.Errorf("bundlekv: %w", err)
	}
	return nil
}

// openBucket returns the bundle bucket, creating it if it is missing unless
// noCreate. Without credentials, bundlepub and every verifierd call it,
// whichever starts first (SPEC §8.1), so "already exists" means use the one
// there. With the roles of docs/NATS-SECURITY.md only admin creates it, and
// a bucket that disappears is reported, never recreated by a node.
func openBucket(ctx context.Context, js jetstream.JetStream, bucket string, replicas int, noCreate bool) (jetstream.KeyValue, error) {
	if replicas == 0 {
		replicas = 1
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	if noCreate {
		return nil, fmt.Errorf("bucket %s: %w (the admin role creates it: tpnats setup, docs/NATS-SECURITY.md)", bucket, err)
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "tpcluster bundle channel (SPEC §8)",
		// A little history lets an operator see what was published before.
		History:  5,
		Storage:  jetstream.FileStorage,
		Replicas: replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		// Created by another node or publisher a moment ago.
		kv, err = js.KeyValue(ctx, bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// validBucket reports whether name is a usable bucket name.
func validBucket(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// digest is the lowercase hex SHA-256 of a document's exact bytes, as
// Policy.SHA256 and TrustMaterial.SHA256 are.
func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// claimedSequence reads a document's sequence without verifying it, for
// reports about a document that failed verification. It is never used to
// decide anything. -1 when there is none.
func claimedSequence(b []byte) int64 {
	var v struct {
		Sequence json.Number `json:"sequence"`
	}
	if json.Unmarshal(b, &v) != nil {
		return -1
	}
	n, err := v.Sequence.Int64()
	if err != nil {
		return -1
	}
	return n
}
