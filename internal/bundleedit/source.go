package bundleedit

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// Errors returned by MergeSource.Apply and RemoveSource.Apply (wrapped;
// match with errors.Is).
var (
	// ErrDuplicateKID: the issuer already has a key with that kid.
	ErrDuplicateKID = errors.New("kid already present")
	// ErrDuplicateSource: a route already has a source rule with the same
	// issuer, trust domain and subject selector but other settings.
	ErrDuplicateSource = errors.New("source rule already present")
	// ErrUnknownRoute: a named route is not in the policy bundle.
	ErrUnknownRoute = errors.New("no such route")
	// ErrUnknownKey: the issuer or the kid to remove is not in the trust
	// material.
	ErrUnknownKey = errors.New("no such key")
	// ErrEmptyRoute: the edit would leave a route with no allowed sources,
	// which internal/bundle refuses at load time (a route nobody may call).
	ErrEmptyRoute = errors.New("route would have no allowed sources")
	// ErrConflict: the client contradicts the trust material (another trust
	// domain or source type for the issuer, a public key already used by
	// another kid of the issuer).
	ErrConflict = errors.New("conflicts with the trust material")
)

// Subject is a source rule's subject selector: exactly one of Exact and
// Prefix is set (SPEC §5.1).
type Subject struct {
	Exact, Prefix string
}

func (s Subject) member() (name, value string) {
	if s.Exact != "" {
		return "subject_exact", s.Exact
	}
	return "subject_prefix", s.Prefix
}

func (s Subject) String() string {
	n, v := s.member()
	return n + " " + strconv.Quote(v)
}

func (s Subject) valid() bool { return (s.Exact == "") != (s.Prefix == "") }

// matches reports whether source rule r selects exactly s.
func (s Subject) matches(r *object) bool {
	n, v := s.member()
	_, hasExact := r.get("subject_exact")
	_, hasPrefix := r.get("subject_prefix")
	return r.str(n) == v && hasExact != hasPrefix
}

// Client is a caller to admit: a passport-signing key of an issuer (trust
// material, SPEC §5.2) and the subject its passports carry (source rules,
// §5.1).
type Client struct {
	Issuer      string
	TrustDomain string
	// SourceType is the issuer's source_type for a new issuer; if empty,
	// software_jwks. For a known issuer it must be empty or equal.
	SourceType string
	KID        string
	PublicKey  ed25519.PublicKey
	Subject    Subject
	// RequiredKeyBinding is the source rule's minimum signer class; if
	// empty, software.
	RequiredKeyBinding string
	// KeyBinding and MaxKeyBinding, if set, are the key entry's key_binding
	// and max_key_binding (SPEC §2.1, §5.2); if empty, the entry has none
	// (software, no cap).
	KeyBinding, MaxKeyBinding string
}

// Result is an edit's outcome: the documents to write and what changed.
type Result struct {
	// Policy and Trust are the documents to write. A document the edit
	// changed is unsigned (signed_by and signature removed); one it did not
	// change is the input, byte for byte, signature kept.
	Policy, Trust                 []byte
	PolicyChanged, TrustChanged   bool
	PolicySequence, TrustSequence int64 // the inputs' sequences (0 if absent)
	// Changes says what changed, one sentence each.
	Changes []string
}

// MergeSource adds a client's key to the trust material (and the issuer,
// if new) and a source rule admitting it to each named route.
type MergeSource struct {
	Client Client
	Routes []string
	// ReplaceExisting replaces the issuer's key with the same kid, and a
	// route's source rule for the same issuer, trust domain and subject
	// selector, instead of refusing them.
	ReplaceExisting bool
}

// Apply applies m to a policy bundle and trust material. Both inputs must
// have the shape their kind requires (their signatures are not checked:
// they are being edited). Member order and every member not edited are
// kept. It returns an error wrapping ErrDuplicateKID, ErrDuplicateSource,
// ErrUnknownRoute or ErrConflict where those apply.
func (m MergeSource) Apply(policy, trust []byte) (*Result, error) {
	e, err := newEdit(policy, trust)
	if err != nil {
		return nil, err
	}
	c := m.Client
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("bundleedit: merge source: %w", err)
	}
	if len(m.Routes) == 0 {
		return nil, errors.New("bundleedit: merge source: no route named")
	}
	sourceType, err := e.mergeKey(c, m.ReplaceExisting)
	if err != nil {
		return nil, fmt.Errorf("bundleedit: merge source: %w", err)
	}
	if err := e.mergeRule(c, sourceType, m.Routes, m.ReplaceExisting); err != nil {
		return nil, fmt.Errorf("bundleedit: merge source: %w", err)
	}
	return e.finish()
}

func (c Client) check() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("issuer is empty"))
	}
	if c.TrustDomain == "" {
		errs = append(errs, errors.New("trust domain is empty"))
	}
	if c.KID == "" {
		errs = append(errs, errors.New("kid is empty"))
	}
	if len(c.PublicKey) != ed25519.PublicKeySize {
		errs = append(errs, fmt.Errorf("public key is %d bytes, want %d", len(c.PublicKey), ed25519.PublicKeySize))
	}
	if !c.Subject.valid() {
		errs = append(errs, errors.New("want exactly one of subject exact and subject prefix"))
	}
	for _, b := range []struct{ name, v string }{
		{"", c.RequiredKeyBinding}, {"key_binding: ", c.KeyBinding}, {"max_key_binding: ", c.MaxKeyBinding},
	} {
		if _, ok := signerclass.Parse(b.v); b.v != "" && !ok {
			errs = append(errs, fmt.Errorf("%sunknown key binding %q", b.name, b.v))
		}
	}
	return errors.Join(errs...)
}

// mergeKey adds (or replaces) the client's key and returns the issuer's
// source type.
func (e *edit) mergeKey(c Client, replace bool) (string, error) {
	issuers, err := e.trust.objects("issuers", "")
	if err != nil {
		return "", err
	}
	pub := base64.RawURLEncoding.EncodeToString(c.PublicKey)
	key := newObject("kid", c.KID, "alg", "EdDSA", "public_key_b64url", pub, "status", "active")
	if c.KeyBinding != "" {
		key.set("key_binding", c.KeyBinding)
	}
	if c.MaxKeyBinding != "" {
		key.set("max_key_binding", c.MaxKeyBinding)
	}
	is := findIssuer(issuers, c.Issuer)
	if is == nil {
		st := c.SourceType
		if st == "" {
			st = "software_jwks"
		}
		is = newObject("issuer", c.Issuer, "trust_domain", c.TrustDomain, "source_type", st)
		is.setObjects("keys", []*object{key})
		e.trust.setObjects("issuers", append(issuers, is))
		e.trustChanged = true
		e.notef("added issuer %q (trust domain %q, %s)", c.Issuer, c.TrustDomain, st)
		e.notef("added key %q to issuer %q", c.KID, c.Issuer)
		return st, nil
	}
	if td := is.str("trust_domain"); td != c.TrustDomain {
		return "", fmt.Errorf("issuer %q has trust domain %q, not %q: %w", c.Issuer, td, c.TrustDomain, ErrConflict)
	}
	st := is.str("source_type")
	if c.SourceType != "" && c.SourceType != st {
		return "", fmt.Errorf("issuer %q has source type %q, not %q: %w", c.Issuer, st, c.SourceType, ErrConflict)
	}
	keys, err := is.objects("keys", "issuer "+strconv.Quote(c.Issuer))
	if err != nil {
		return "", err
	}
	at := -1
	for i, k := range keys {
		switch {
		case k.str("kid") == c.KID:
			at = i
		case k.str("public_key_b64url") == pub:
			return "", fmt.Errorf("issuer %q already has this public key as kid %q: %w", c.Issuer, k.str("kid"), ErrConflict)
		}
	}
	switch {
	case at < 0:
		is.setObjects("keys", append(keys, key))
		e.trustChanged = true
		e.notef("added key %q to issuer %q", c.KID, c.Issuer)
	case !replace:
		return "", fmt.Errorf("issuer %q already has kid %q (--replace-existing replaces it): %w", c.Issuer, c.KID, ErrDuplicateKID)
	case keys[at].equal(key):
		e.notef("key %q of issuer %q is already this key: unchanged", c.KID, c.Issuer)
	default:
		keys[at] = key
		is.setObjects("keys", keys)
		e.trustChanged = true
		e.notef("replaced key %q of issuer %q", c.KID, c.Issuer)
	}
	return st, nil
}

// mergeRule adds the client's source rule to each route.
func (e *edit) mergeRule(c Client, sourceType string, routeIDs []string, replace bool) error {
	routes, err := e.routes()
	if err != nil {
		return err
	}
	binding := c.RequiredKeyBinding
	if binding == "" {
		binding = signerclass.Software.String()
	}
	subjName, subjValue := c.Subject.member()
	var added, replaced, same []string
	for _, id := range dedupe(routeIDs) {
		r := routes.byID(id)
		if r == nil {
			return fmt.Errorf("route %q: %w", id, ErrUnknownRoute)
		}
		rule := newObject("source_type", sourceType, "issuer", c.Issuer, "trust_domain", c.TrustDomain,
			subjName, subjValue, "required_key_binding", binding)
		srcs, err := r.objects("allowed_sources", "route "+strconv.Quote(id))
		if err != nil {
			return err
		}
		at := slices.IndexFunc(srcs, func(s *object) bool {
			return s.str("issuer") == c.Issuer && s.str("trust_domain") == c.TrustDomain && c.Subject.matches(s)
		})
		switch {
		case at < 0:
			r.setObjects("allowed_sources", append(srcs, rule))
			added = append(added, id)
		case srcs[at].equal(rule):
			same = append(same, id)
		case !replace:
			return fmt.Errorf("route %q already has a source rule for issuer %q, %s, with other settings (--replace-existing replaces it): %w",
				id, c.Issuer, c.Subject, ErrDuplicateSource)
		default:
			srcs[at] = rule
			r.setObjects("allowed_sources", srcs)
			replaced = append(replaced, id)
		}
	}
	what := fmt.Sprintf("source rule (%s, issuer %q, trust domain %q, %s, required_key_binding %s)",
		sourceType, c.Issuer, c.TrustDomain, c.Subject, binding)
	if len(added) > 0 {
		e.notef("added %s to routes %s", what, strings.Join(added, ","))
	}
	if len(replaced) > 0 {
		e.notef("replaced the source rule for issuer %q, %s, with %s in routes %s", c.Issuer, c.Subject, what, strings.Join(replaced, ","))
	}
	if len(same) > 0 {
		e.notef("routes %s already had this %s: unchanged", strings.Join(same, ","), what)
	}
	e.policyChanged = e.policyChanged || len(added)+len(replaced) > 0
	return nil
}

func findIssuer(issuers []*object, iss string) *object {
	for _, is := range issuers {
		if is.str("issuer") == iss {
			return is
		}
	}
	return nil
}

// newObject builds an object from name, value pairs, in that order.
func newObject(kv ...any) *object {
	o := new(object)
	for i := 0; i+1 < len(kv); i += 2 {
		o.members = append(o.members, member{kv[i].(string), kv[i+1]})
	}
	return o
}

func dedupe(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
