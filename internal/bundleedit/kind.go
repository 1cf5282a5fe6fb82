package bundleedit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// Kind is a document kind.
type Kind int

const (
	// Policy is a policy bundle, trustplane-bundle-v1 (SPEC §5.1).
	Policy Kind = iota + 1
	// TrustMaterial is trust material, trustplane-trust-material-v1 (§5.2).
	TrustMaterial
)

// String returns the kind as the commands print it.
func (k Kind) String() string {
	switch k {
	case Policy:
		return "policy bundle"
	case TrustMaterial:
		return "trust material"
	}
	return "unknown document"
}

// DetectKind reports which kind doc is, from its version and kind members.
func DetectKind(doc []byte) (Kind, error) {
	o, err := parseDoc(doc)
	if err != nil {
		return 0, fmt.Errorf("bundleedit: %w", err)
	}
	return kindOf(o)
}

func kindOf(o *object) (Kind, error) {
	v, k := o.str("version"), o.str("kind")
	switch {
	case v == bundle.PolicyVersion && k == bundle.PolicyKind:
		return Policy, nil
	case v == bundle.TrustMaterialVersion && k == bundle.TrustMaterialKind:
		return TrustMaterial, nil
	}
	return 0, fmt.Errorf("bundleedit: version %q, kind %q: neither a policy bundle (%s, %s) nor trust material (%s, %s)",
		v, k, bundle.PolicyVersion, bundle.PolicyKind, bundle.TrustMaterialVersion, bundle.TrustMaterialKind)
}

// Summary describes a document that loaded.
type Summary struct {
	Kind     Kind
	Sequence int64
	IssuedAt time.Time
	Signed   bool
	// Issuer and KID are signed_by's; empty when unsigned.
	Issuer, KID string
	SHA256      string // lowercase hex SHA-256 of the exact bytes
}

// Check loads doc as its kind with o, exactly as a verifier would
// (bundle.ParsePolicy or bundle.ParseTrustMaterial), and summarises it.
// Errors wrap bundle.ErrUnsigned, bundle.ErrUnknownKey or
// bundle.ErrBadSignature where those apply.
func Check(doc []byte, o bundle.Options) (*Summary, error) {
	k, err := DetectKind(doc)
	if err != nil {
		return nil, err
	}
	s := &Summary{Kind: k}
	switch k {
	case Policy:
		p, err := bundle.ParsePolicy(doc, o)
		if err != nil {
			return nil, err
		}
		s.Sequence, s.IssuedAt, s.Signed = p.Sequence, p.IssuedAt, p.Signed
	case TrustMaterial:
		t, err := bundle.ParseTrustMaterial(doc, o)
		if err != nil {
			return nil, err
		}
		s.Sequence, s.IssuedAt, s.Signed = t.Sequence, t.IssuedAt, t.Signed
	}
	if s.Signed {
		tree, err := parseDoc(doc) // cannot fail: it just loaded
		if err != nil {
			return nil, fmt.Errorf("bundleedit: %w", err)
		}
		if v, _ := tree.get("signed_by"); v != nil {
			if by, ok := v.(*object); ok {
				s.Issuer, s.KID = by.str("issuer"), by.str("kid")
			}
		}
	}
	sum := sha256.Sum256(doc)
	s.SHA256 = hex.EncodeToString(sum[:])
	return s, nil
}

// maxSequence is 2^53-1, the largest integer RFC 8785 keeps exact (the
// bound internal/bundle enforces).
const maxSequence = 1<<53 - 1

// Header is what Sign may change besides the envelope. A nil field leaves
// the document's member as it is (SPEC §10.3: sign never changes sequence
// or issued_at unless told to).
type Header struct {
	Sequence *int64
	IssuedAt *time.Time
}

// SignOptions configure Sign.
type SignOptions struct {
	// Issuer is signed_by.issuer. If empty, DefaultSignedByIssuer.
	Issuer string
	Header Header
}

// DefaultSignedByIssuer is signed_by.issuer when none is given.
const DefaultSignedByIssuer = "local://tpcluster.bundlepub"

// Sign applies o.Header to doc, signs it with k (bundle.Sign: signed_by and
// signature set, RFC 8785 output), and loads the result with k's public key
// as a verifier would, so a document that would be refused is never
// returned. It refuses a sequence below the document's own (sequences only
// grow, SPEC §5.3) and a document without sequence or issued_at (signed
// documents must carry both) with an error saying which flag to give.
func Sign(doc []byte, k *keyfile.PrivateKey, o SignOptions) ([]byte, *Summary, error) {
	tree, err := parseDoc(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("bundleedit: %w", err)
	}
	kind, err := kindOf(tree)
	if err != nil {
		return nil, nil, err
	}
	if err := applyHeader(tree, o.Header); err != nil {
		return nil, nil, fmt.Errorf("bundleedit: sign %s: %w", kind, err)
	}
	if _, ok := tree.get("sequence"); !ok {
		return nil, nil, fmt.Errorf("bundleedit: sign %s: it has no sequence; give --sequence N", kind)
	}
	if _, ok := tree.get("issued_at"); !ok {
		return nil, nil, fmt.Errorf("bundleedit: sign %s: it has no issued_at; give --issued-at now", kind)
	}
	edited, err := tree.encode()
	if err != nil {
		return nil, nil, fmt.Errorf("bundleedit: sign %s: %w", kind, err)
	}
	issuer := o.Issuer
	if issuer == "" {
		issuer = DefaultSignedByIssuer
	}
	signed, err := bundle.Sign(edited, bundle.NewSigningKey(k), issuer)
	if err != nil {
		return nil, nil, err
	}
	s, err := Check(signed, bundle.Options{Keys: []bundle.VerifyKey{bundle.NewVerifyKey(k.Public())}})
	if err != nil {
		return nil, nil, fmt.Errorf("bundleedit: signed %s does not load: %w", kind, err)
	}
	return signed, s, nil
}

func applyHeader(tree *object, h Header) error {
	if h.Sequence != nil {
		seq := *h.Sequence
		if seq < 0 || seq > maxSequence {
			return fmt.Errorf("sequence %d out of range (0 to 2^53-1)", seq)
		}
		if v, ok := tree.get("sequence"); ok {
			n, isNum := v.(json.Number)
			cur, err := strconv.ParseInt(string(n), 10, 64)
			if !isNum || err != nil {
				return errors.New("sequence: must be an integer")
			}
			if seq < cur {
				return fmt.Errorf("--sequence %d is below the document's sequence %d; sequences only grow (SPEC §5.3)", seq, cur)
			}
		}
		tree.set("sequence", json.Number(strconv.FormatInt(seq, 10)))
	}
	if h.IssuedAt != nil {
		tree.set("issued_at", FormatTime(*h.IssuedAt))
	}
	return nil
}

// FormatTime writes t as SPEC §5.3 wants issued_at: RFC 3339 in UTC,
// ending in Z.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// stripEnvelope removes signed_by and signature: an edited document is
// unsigned until it is signed again.
func stripEnvelope(tree *object) bool {
	a := tree.del("signature")
	b := tree.del("signed_by")
	return a || b
}

// checkShape loads doc, with its envelope removed, as an unsigned document
// of kind k: the schema is checked, whoever signed it.
func checkShape(tree *object, k Kind) error {
	c := &object{members: append([]member(nil), tree.members...)}
	stripEnvelope(c)
	data, err := c.encode()
	if err != nil {
		return err
	}
	o := bundle.Options{AllowUnsigned: true}
	switch k {
	case Policy:
		_, err = bundle.ParsePolicy(data, o)
	case TrustMaterial:
		_, err = bundle.ParseTrustMaterial(data, o)
	}
	return err
}
