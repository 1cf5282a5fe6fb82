package bundle

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// TrustMaterial is loaded trust material (SPEC §5.2): the issuers whose
// passports we accept and their keys. It is immutable once returned and
// safe for concurrent use.
type TrustMaterial struct {
	Sequence int64
	IssuedAt time.Time
	SHA256   string // lowercase hex SHA-256 of the exact bytes parsed
	Signed   bool
	Issuers  map[string]*Issuer // by issuer
	// AuditNodes lists the verifier nodes whose audit keys sign the audit
	// stream (optional member audit_nodes, docs/AUDIT.md): tpaudit verify
	// authenticates every event and checkpoint against it. Verifiers
	// ignore it. Nil when the member is absent.
	AuditNodes []*AuditNode
	// AssertionKeys lists the fleet's backend assertion keys (optional
	// member assertion_keys [ours], docs/BACKEND-JWT.md): the JWKS every
	// node serves, and the keys a node may sign with. Nil when the member
	// is absent.
	AssertionKeys []*AssertionKey
}

// AssertionKeyStatus is an assertion_keys[] entry's status.
type AssertionKeyStatus uint8

// Statuses: a next key is published before it signs; an active key signs;
// a retired key is published until every assertion it signed expired.
const (
	AssertionKeyNext AssertionKeyStatus = iota
	AssertionKeyActive
	AssertionKeyRetired
)

// AssertionKey is one assertion_keys[] entry: one node's key. Kids and
// public keys are unique in the list.
type AssertionKey struct {
	KID       string
	PublicKey ed25519.PublicKey // ed25519.PublicKeySize bytes
	Status    AssertionKeyStatus
}

// AuditNode is one audit_nodes[] entry: a fleet member's audit key. A node
// id may appear more than once (a key rotation); a public key only once.
type AuditNode struct {
	NodeID       string
	PublicKey    ed25519.PublicKey // ed25519.PublicKeySize bytes
	PublicKeyB64 string            // canonical unpadded base64url of PublicKey
	// Active is status "active": the node is in service and must publish
	// checkpoints. A "retired" node's events still verify; no
	// checkpoints are expected from it.
	Active bool
}

// Issuer is one issuers[] entry.
type Issuer struct {
	Issuer      string
	TrustDomain string
	SourceType  string // software_jwks, oidc_jwks or spiffe_spire
	Keys        []*Key
}

// Key is one passport-signing key of an issuer. Within an issuer, kids and
// public keys are unique.
type Key struct {
	KID          string
	PublicKey    ed25519.PublicKey // ed25519.PublicKeySize bytes
	PublicKeyB64 string            // canonical unpadded base64url of PublicKey
	// NotBefore and NotAfter bound the key's use; zero means unbounded.
	NotBefore, NotAfter time.Time
	// Active is status "active"; a "retired" key verifies nothing.
	Active bool
	// KeyBinding is key_binding: the signer class the operator vouches for
	// when this key signs its own passports (SPEC §2.1, §5.2). If absent,
	// signerclass.Software: a key's holder saying "my key is in hardware" is
	// only its own word.
	KeyBinding signerclass.Class
	// MaxKeyBinding is max_key_binding: the highest class this key may attest
	// when it signs passports for other keys (a broker). Zero (absent) means
	// no cap.
	MaxKeyBinding signerclass.Class
}

// Usable reports whether k may verify a passport at now: active, and now
// within [NotBefore, NotAfter].
func (k *Key) Usable(now time.Time) bool {
	return k.Active &&
		(k.NotBefore.IsZero() || !now.Before(k.NotBefore)) &&
		(k.NotAfter.IsZero() || !now.After(k.NotAfter))
}

// PassportKey returns the key that verifies a passport of issuer iss at now
// (SPEC §2 "Signature key"), or nil when there is none, which is
// passport_key_unknown. With a header kid (hasKID) it is the issuer's key
// with that kid. Without one, it is the issuer's usable key whose public key
// equals cnfPublicKeyB64 (the self-issued software shape), else the issuer's
// only usable key. "Usable" (Key.Usable) counts for "only": a key
// published ahead of rotation, not yet valid, does not make the lookup
// ambiguous.
func (t *TrustMaterial) PassportKey(iss, kid string, hasKID bool, cnfPublicKeyB64 string, now time.Time) *Key {
	is := t.Issuers[iss]
	if is == nil {
		return nil
	}
	if hasKID {
		for _, k := range is.Keys {
			if k.KID == kid {
				if k.Usable(now) {
					return k
				}
				return nil
			}
		}
		return nil
	}
	var only *Key
	usable := 0
	for _, k := range is.Keys {
		if !k.Usable(now) {
			continue
		}
		if cnfPublicKeyB64 != "" && k.PublicKeyB64 == cnfPublicKeyB64 {
			return k
		}
		only = k
		usable++
	}
	if usable == 1 {
		return only
	}
	return nil
}

// ParseTrustMaterial parses and authenticates trust material. Errors name
// the offending field and wrap ErrUnsigned, ErrUnknownKey or ErrBadSignature
// where those apply. Unknown members are refused at every level; version,
// kind, issuers and, per issuer, issuer, trust_domain, source_type and keys
// are required; per key kid, alg (EdDSA), public_key_b64url and status
// (active or retired), and optionally not_before, not_after, key_binding and
// max_key_binding (signer class names, SPEC §5.2).
func ParseTrustMaterial(data []byte, o Options) (*TrustMaterial, error) {
	t, err := parseTrustMaterial(data, o)
	if err != nil {
		return nil, fmt.Errorf("bundle: trust material: %w", err)
	}
	return t, nil
}

func parseTrustMaterial(data []byte, o Options) (*TrustMaterial, error) {
	top, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	h, err := loadHeader(top, TrustMaterialVersion, TrustMaterialKind, verifyKeys(o.Keys), o.AllowUnsigned, o.ModTime)
	if err != nil {
		return nil, err
	}
	doc := object{m: top}
	if err := doc.only("version", "kind", "sequence", "issued_at", "issuers", "audit_nodes", "assertion_keys", "signed_by", "signature"); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	t := &TrustMaterial{
		Sequence: h.sequence,
		IssuedAt: h.issuedAt,
		SHA256:   hex.EncodeToString(sum[:]),
		Signed:   h.signed,
		Issuers:  make(map[string]*Issuer),
	}
	issuers, ok, err := doc.objects("issuers")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, missing(doc, "issuers")
	}
	for _, io := range issuers {
		is, err := parseIssuer(io)
		if err != nil {
			return nil, err
		}
		if t.Issuers[is.Issuer] != nil {
			return nil, fmt.Errorf("%s: duplicate issuer %q", io.at("issuer"), is.Issuer)
		}
		t.Issuers[is.Issuer] = is
	}
	if t.AuditNodes, err = parseAuditNodes(doc); err != nil {
		return nil, err
	}
	if t.AssertionKeys, err = parseAssertionKeys(doc); err != nil {
		return nil, err
	}
	return t, nil
}

// parseAssertionKeys reads the optional assertion_keys member: each entry
// kid, public_key_b64url and status (next, active or retired), nothing
// else. A kid or a public key listed twice is refused: an upstream must
// find exactly one key for a kid.
func parseAssertionKeys(doc object) ([]*AssertionKey, error) {
	entries, ok, err := doc.objects("assertion_keys")
	if err != nil || !ok {
		return nil, err
	}
	out := make([]*AssertionKey, 0, len(entries))
	kids, pubs := map[string]bool{}, map[string]bool{}
	for _, o := range entries {
		if err := o.only("kid", "public_key_b64url", "status"); err != nil {
			return nil, err
		}
		k := new(AssertionKey)
		if k.KID, err = o.required("kid"); err != nil {
			return nil, err
		}
		b64, pub, err := publicKey(o)
		if err != nil {
			return nil, err
		}
		k.PublicKey = pub
		status, err := o.required("status")
		if err != nil {
			return nil, err
		}
		switch status {
		case "next":
			k.Status = AssertionKeyNext
		case "active":
			k.Status = AssertionKeyActive
		case "retired":
			k.Status = AssertionKeyRetired
		default:
			return nil, fmt.Errorf("%s: %q is not \"next\", \"active\" or \"retired\"", o.at("status"), status)
		}
		if kids[k.KID] || pubs[b64] {
			return nil, fmt.Errorf("%s: kid %q or its public key is listed twice", o.at("kid"), k.KID)
		}
		kids[k.KID], pubs[b64] = true, true
		out = append(out, k)
	}
	return out, nil
}

// parseAuditNodes reads the optional audit_nodes member: each entry
// node_id, public_key_b64url and status (active or retired), nothing else.
// A public key listed twice is refused: one key must name one node, or a
// node could sign as another.
func parseAuditNodes(doc object) ([]*AuditNode, error) {
	entries, ok, err := doc.objects("audit_nodes")
	if err != nil || !ok {
		return nil, err
	}
	out := make([]*AuditNode, 0, len(entries))
	seen := map[string]string{} // public key -> node id
	for _, o := range entries {
		if err := o.only("node_id", "public_key_b64url", "status"); err != nil {
			return nil, err
		}
		n := new(AuditNode)
		if n.NodeID, err = o.required("node_id"); err != nil {
			return nil, err
		}
		if n.PublicKeyB64, n.PublicKey, err = publicKey(o); err != nil {
			return nil, err
		}
		if n.Active, err = activeStatus(o); err != nil {
			return nil, err
		}
		if other, dup := seen[n.PublicKeyB64]; dup {
			return nil, fmt.Errorf("%s: same public key as node %q", o.at("public_key_b64url"), other)
		}
		seen[n.PublicKeyB64] = n.NodeID
		out = append(out, n)
	}
	return out, nil
}

func parseIssuer(o object) (*Issuer, error) {
	if err := o.only("issuer", "trust_domain", "source_type", "keys"); err != nil {
		return nil, err
	}
	is := new(Issuer)
	var err error
	if is.Issuer, err = o.required("issuer"); err != nil {
		return nil, err
	}
	if is.TrustDomain, err = o.required("trust_domain"); err != nil {
		return nil, err
	}
	if is.SourceType, err = o.required("source_type"); err != nil {
		return nil, err
	}
	if !slices.Contains(sourceTypes, is.SourceType) {
		return nil, fmt.Errorf("%s: unknown source type %q", o.at("source_type"), is.SourceType)
	}
	keys, ok, err := o.objects("keys")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, missing(o, "keys")
	}
	for _, ko := range keys {
		k, err := parseKey(ko)
		if err != nil {
			return nil, err
		}
		for _, other := range is.Keys {
			if other.KID == k.KID {
				return nil, fmt.Errorf("%s: duplicate kid %q", ko.at("kid"), k.KID)
			}
			// Unique public keys keep the no-kid lookup by cnf key unambiguous.
			if other.PublicKeyB64 == k.PublicKeyB64 {
				return nil, fmt.Errorf("%s: same public key as kid %q", ko.at("public_key_b64url"), other.KID)
			}
		}
		is.Keys = append(is.Keys, k)
	}
	return is, nil
}

func parseKey(o object) (*Key, error) {
	if err := o.only("kid", "alg", "public_key_b64url", "not_before", "not_after", "status",
		"key_binding", "max_key_binding"); err != nil {
		return nil, err
	}
	k := &Key{KeyBinding: signerclass.Software}
	var err error
	if k.KID, err = o.required("kid"); err != nil {
		return nil, err
	}
	alg, err := o.required("alg")
	if err != nil {
		return nil, err
	}
	if alg != "EdDSA" {
		return nil, fmt.Errorf("%s: %q is not \"EdDSA\"", o.at("alg"), alg)
	}
	if k.PublicKeyB64, k.PublicKey, err = publicKey(o); err != nil {
		return nil, err
	}
	if k.Active, err = activeStatus(o); err != nil {
		return nil, err
	}
	if k.NotBefore, _, err = o.timestamp("not_before"); err != nil {
		return nil, err
	}
	if k.NotAfter, _, err = o.timestamp("not_after"); err != nil {
		return nil, err
	}
	if !k.NotBefore.IsZero() && !k.NotAfter.IsZero() && k.NotAfter.Before(k.NotBefore) {
		return nil, fmt.Errorf("%s: before not_before", o.at("not_after"))
	}
	// keyBinding refuses anything but one of the four class names (a
	// number, null, "", "HARDWARE_LOCAL"): a class we cannot read must not
	// fall back to the default, least of all for the cap.
	if kb, ok, err := keyBinding(o, "key_binding"); err != nil {
		return nil, err
	} else if ok {
		k.KeyBinding = kb
	}
	if k.MaxKeyBinding, _, err = keyBinding(o, "max_key_binding"); err != nil {
		return nil, err
	}
	return k, nil
}

// publicKey reads o's required public_key_b64url: canonical unpadded
// base64url of an Ed25519 public key, so one key has one spelling and a
// duplicate check on the text is a check on the key.
func publicKey(o object) (string, ed25519.PublicKey, error) {
	b64, err := o.required("public_key_b64url")
	if err != nil {
		return "", nil, err
	}
	pub, err := base64.RawURLEncoding.Strict().DecodeString(b64)
	if err != nil || base64.RawURLEncoding.EncodeToString(pub) != b64 || len(pub) != ed25519.PublicKeySize {
		return "", nil, fmt.Errorf("%s: not canonical unpadded base64url of 32 bytes", o.at("public_key_b64url"))
	}
	return b64, pub, nil
}

// activeStatus reads o's required status, "active" or "retired".
func activeStatus(o object) (bool, error) {
	status, err := o.required("status")
	if err != nil {
		return false, err
	}
	switch status {
	case "active":
		return true, nil
	case "retired":
		return false, nil
	}
	return false, fmt.Errorf("%s: %q is neither \"active\" nor \"retired\"", o.at("status"), status)
}
