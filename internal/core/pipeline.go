package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/passport"
	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

// Config configures a Pipeline. Zero values are documented per field.
type Config struct {
	// Ledger consumes jtis (step 19). Required.
	Ledger Ledger
	// Snapshot returns the current policy snapshot, or nil when none is
	// loaded (step 3 then denies bundle_policy_missing). It is called once per
	// request, so one request sees one snapshot. Required.
	Snapshot func() *Snapshot
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// ClockSkew is the accepted skew of SPEC §2. If zero, 30s.
	ClockSkew time.Duration
	// MaxPassportLifetime bounds exp - iat (SPEC §2). If zero, 900s.
	MaxPassportLifetime time.Duration
	// RealtimeWindow is how old a realtime route's view may be (SPEC §8.3).
	// If zero, 5s.
	RealtimeWindow time.Duration
	// IgnoreHeaders are never covered headers (--ignore-headers), in
	// addition to each route's signed_headers.ignore.
	IgnoreHeaders []string
	// MaxHeaderCandidates bounds the covered-header search (SPEC §3.4). If
	// zero, 256.
	MaxHeaderCandidates int
	// RouteID pins every request to one route (--route-id). If empty, routes
	// are resolved from method and path.
	RouteID string
	// AudienceOverride replaces every route's audience (--audience-override).
	AudienceOverride string
	// Region is this node's region (--region). If empty, the policy's
	// audience_regions are not applied and every jti is consumed in the
	// node's own ledger.
	Region string
	// AuditRoom reports whether the audit spool can take one more event
	// (step 18a). If nil, there is always room.
	AuditRoom func() bool
}

// Pipeline decides requests (SPEC §6). It is safe for concurrent use.
type Pipeline struct {
	cfg Config

	// policies caches the transcript policy of each route of the current
	// bundle, so a request merges no header lists and takes no lock. A new
	// policy bundle replaces the whole cache.
	policies atomic.Pointer[routePolicies]
	// keys caches expanded trust-material keys (keys.go).
	keys keyCache
}

// routePolicies are the transcript policies of one policy bundle's routes.
type routePolicies struct {
	pol *bundle.Policy
	m   sync.Map // *bundle.Route -> *transcript.Policy
}

// New checks cfg and returns a Pipeline.
func New(cfg Config) (*Pipeline, error) {
	var errs []error
	if cfg.Ledger == nil {
		errs = append(errs, errors.New("no ledger"))
	}
	if cfg.Snapshot == nil {
		errs = append(errs, errors.New("no snapshot source"))
	}
	if cfg.ClockSkew < 0 || cfg.MaxPassportLifetime < 0 || cfg.RealtimeWindow < 0 || cfg.MaxHeaderCandidates < 0 {
		errs = append(errs, errors.New("negative skew, lifetime, realtime window or candidate bound"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("core: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = 30 * time.Second
	}
	if cfg.MaxPassportLifetime == 0 {
		cfg.MaxPassportLifetime = 900 * time.Second
	}
	if cfg.RealtimeWindow == 0 {
		cfg.RealtimeWindow = 5 * time.Second
	}
	if cfg.MaxHeaderCandidates == 0 {
		cfg.MaxHeaderCandidates = transcript.DefaultMaxCandidates
	}
	cfg.IgnoreHeaders = lowerAll(cfg.IgnoreHeaders)
	return &Pipeline{cfg: cfg}, nil
}

// Wire header names (SPEC §3.5), in net/http's canonical form; lookups also
// try other spellings.
const (
	hdrAuthorization = "Authorization"
	hdrNonce         = "X-Trustplane-Nonce"
	hdrBodySHA256    = "X-Trustplane-Body-Sha256"
	hdrTranscript    = "X-Trustplane-Transcript-Sha256"
	hdrProof         = "X-Trustplane-Proof"
)

// Decide runs the SPEC §6 pipeline on r. The first failing check wins, and
// every check runs before the ledger is touched, so junk cannot burn a
// caller's jti. It never panics on input and never allows on doubt.
func (p *Pipeline) Decide(ctx context.Context, r *Request) Decision {
	var d Decision
	now := p.cfg.Now()

	// 1. Path hygiene, and the query's two characters that would let a
	// verifier and an upstream read different targets.
	if err := CheckPath(r.RawPath); err != nil {
		return deny(d, reason.RequestPathNoncanonical, reason.DetailPath, err)
	}
	if err := checkQuery(r.RawQuery); err != nil {
		return deny(d, reason.RequestPathNoncanonical, reason.DetailQuery, err)
	}

	// 2. A bearer passport is present.
	auth, n := firstHeader(r.Header, hdrAuthorization)
	token, ok := bearer(auth)
	if n == 0 || !ok {
		return deny(d, reason.PassportMissing, reason.DetailBearerMissing, errors.New("no bearer passport in Authorization"))
	}

	// 3. Policy loaded.
	snap := p.cfg.Snapshot()
	if snap == nil || snap.Policy == nil || snap.Trust == nil {
		return deny(d, reason.BundlePolicyMissing, reason.DetailNoPair, errors.New("no verified policy bundle and trust material loaded"))
	}
	pol := snap.Policy
	d.PolicySHA256, d.PolicySequence = pol.SHA256, pol.Sequence

	// 4. Route.
	route := p.route(pol, r)
	if route == nil {
		return deny(d, reason.BundleRouteMissing, reason.DetailNoRoute, errors.New("no route matches the request"))
	}
	d.RouteID = route.ID
	d.BackendAssertion = route.BackendAssertion
	d.Egress = route.Egress
	d.RequiredKeyBinding = route.RequiredKeyBinding.String()

	// 4a. A query_strict route ([ours]) refuses queries that frameworks
	// read in different ways; a step 1 refusal, known only with the route.
	if route.QueryStrict {
		if err := checkStrictQuery(r.RawQuery); err != nil {
			return deny(d, reason.RequestPathNoncanonical, reason.DetailQueryStrict, err)
		}
	}

	// 5, 6. Freshness (SPEC §8.3).
	switch route.CheckFresh(now.Sub(snap.ViewTime), p.cfg.RealtimeWindow) {
	case bundle.FreshOK:
	case bundle.FreshUnknownClass:
		return deny(d, reason.BundleFreshnessUnknown, reason.DetailFreshnessClass, fmt.Errorf("route %s has freshness class %q", route.ID, route.FreshnessName))
	default:
		return deny(d, reason.StaleBundleFailClosed, reason.DetailViewAge, fmt.Errorf("policy view is %s old", now.Sub(snap.ViewTime).Truncate(time.Millisecond)))
	}

	// 7. Passport parses. Two Authorization headers are ambiguous: an
	// upstream or a log could read the other one.
	if n > 1 {
		return deny(d, reason.PassportMalformed, reason.DetailAuthorizationRepeated, errors.New("more than one Authorization header"))
	}
	tok, err := passport.Parse(token)
	if err != nil {
		return deny(d, reason.PassportMalformed, reason.DetailJWS, err)
	}
	c := &tok.Claims
	d.Issuer, d.Subject, d.TrustDomain, d.JTI = c.Issuer, c.Subject, c.TrustDomain, c.JTI
	d.Audience = c.Audience

	// 8. Issuer and key known, key active.
	key := snap.Trust.PassportKey(c.Issuer, tok.KID, tok.HasKID, c.PublicKeyB64, now)
	if key == nil {
		return deny(d, reason.PassportKeyUnknown, reason.DetailIssuerKey, errors.New("no active trust material key for the passport's issuer and kid"))
	}

	// 9. Passport signature.
	trusted := p.keys.verifier(snap.Trust, key)
	if v := trusted; v == nil || !tok.VerifyWith(v) {
		return deny(d, reason.PassportSignatureInvalid, reason.DetailSignature, fmt.Errorf("passport signature does not verify with key %s", key.KID))
	}
	// The signer is known now, and with it what it may vouch for (SPEC §2.1):
	// from here on the decision carries the effective class, never the
	// caller's own word. Before this point it carries none.
	att := attest(c, key)
	d.KeyBinding = att.keyBinding.String()

	// 10. Time window.
	if err := c.CheckTime(now, p.cfg.ClockSkew, p.cfg.MaxPassportLifetime); err != nil {
		switch {
		case errors.Is(err, passport.ErrExpired):
			return deny(d, reason.PassportExpired, reason.DetailExpired, err)
		case errors.Is(err, passport.ErrNotYetValid):
			return deny(d, reason.PassportNotYetValid, reason.DetailNotYetValid, err)
		default:
			return deny(d, reason.PassportLifetimeExceeded, reason.DetailLifetime, err)
		}
	}

	// 11. Audience.
	aud := route.Audience
	if p.cfg.AudienceOverride != "" {
		aud = p.cfg.AudienceOverride
	}
	if c.Audience != aud {
		return deny(d, reason.AudienceMismatch, reason.DetailAudience, fmt.Errorf("passport audience differs from route %s audience", route.ID))
	}

	// 11a. Region ([ours]): a region-bound audience is accepted only in its
	// home region; a home-region audience is consumed in its home ledger.
	ledgerRegion, err := p.regionFor(pol, c.Audience)
	if err != nil {
		return deny(d, reason.AudienceRegionMismatch, reason.DetailRegion, err)
	}
	d.LedgerRegion = ledgerRegion

	// 12-14. Sources, signer class, provenance and context.
	if code, detail, err := matchSources(pol, route, c, &att); code != "" {
		return deny(d, code, detail, err)
	}

	// 15. Revocations.
	if err := revoked(pol, tok, now); err != nil {
		return deny(d, reason.PassportRevoked, reason.DetailRevocation, err)
	}

	// 16. Proof headers well formed.
	proof, err := readProofHeaders(r.Header)
	if err != nil {
		return deny(d, reason.InvalidRequestProof, reason.DetailProofHeaders, err)
	}

	// 17. Body and transcript binding.
	if r.BodyTooLarge {
		return deny(d, reason.RequestBodyTooLarge, reason.DetailBodySize, errors.New("request body exceeds the limit"))
	}
	bodyHex := proof.bodyHex
	if r.BodyFromGateway && !route.BodyHashFromGateway {
		// SPEC §10.2: a body the verifier never saw is bound by nothing.
		return deny(d, reason.RequestBindingMismatch, reason.DetailBodyUnseen, errors.New("the original request had a body the verifier did not see, and the route does not take the gateway's body hash"))
	}
	if !r.BodyFromGateway {
		sum := sha256.Sum256(r.Body)
		if !hexEqual(proof.bodyHex, sum[:]) {
			return deny(d, reason.RequestBindingMismatch, reason.DetailBodyHash, errors.New("body hash differs from X-TrustPlane-Body-SHA256"))
		}
	}
	treq := transcript.Request{
		Method:     r.Method,
		Scheme:     r.Scheme,
		Authority:  r.Authority,
		Path:       r.RawPath,
		RawQuery:   r.RawQuery,
		Header:     r.Header,
		BodySHA256: bodyHex,
	}
	// The transcript binds the class the caller claimed (SPEC §3.2), whatever
	// the effective one is.
	bind := transcript.Binding{
		Audience:   c.Audience,
		RouteID:    route.ID,
		JTI:        c.JTI,
		Nonce:      proof.nonce,
		IssuedAt:   c.IssuedAt,
		KeyBinding: c.KeyBinding.String(),
	}
	m, err := transcript.MatchRequest(&treq, &bind, p.transcriptPolicy(pol, route), &proof.digest)
	if err != nil {
		return deny(d, reason.RequestBindingMismatch, bindingDetail(err), err)
	}
	// Only the first value of a covered header is bound (SPEC §3.4); a
	// second one, which some upstreams read instead, is unauthenticated.
	for _, name := range m.AllowList {
		// firstHeader counts every spelling, so the lower-case name does.
		if _, n := firstHeader(r.Header, name); n > 1 {
			return deny(d, reason.RequestBindingMismatch, reason.DetailHeaderRepeated, fmt.Errorf("covered header %s appears %d times", name, n))
		}
	}
	if r.MustBeCovered != nil && !route.KeepOverrideHeaders {
		for name := range r.Header {
			if r.MustBeCovered(name) && !slices.Contains(m.AllowList, strings.ToLower(name)) {
				return deny(d, reason.RequestBindingMismatch, reason.DetailOverrideHeader, errors.New("an override header is present and not covered"))
			}
		}
	}
	d.TranscriptSHA256 = proof.digestHex
	d.CoveredHeaders = m.AllowList
	d.KeepOverrideHeaders = route.KeepOverrideHeaders

	// 18. The proof: Ed25519 by the cnf key over the 32 raw digest bytes.
	if v := cnfVerifier(c.PublicKey, key.PublicKey, trusted); v == nil || !v.Verify(m.Digest[:], proof.sig[:]) {
		return deny(d, reason.InvalidRequestProof, reason.DetailSignature, errors.New("request proof does not verify with the cnf key"))
	}

	// 18a. The audit spool has room: never allow without a record (SPEC §9).
	if p.cfg.AuditRoom != nil && !p.cfg.AuditRoom() {
		return deny(d, reason.AuditUnavailable, reason.DetailSpoolFull, errors.New("audit spool full"))
	}

	// 19. Consume the jti, exactly once across the cluster.
	ttl := ReplayTTL(time.Unix(c.ExpiresAt, 0), p.cfg.ClockSkew, now)
	switch err := p.cfg.Ledger.Consume(ctx, NewLedgerKey(c.Issuer, c.JTI), ttl, LedgerEntry{RouteID: route.ID, Region: ledgerRegion}); {
	case err == nil:
	case errors.Is(err, ErrReplay):
		return deny(d, reason.JTIReplay, reason.DetailJTIConsumed, err)
	default: // unavailable, or a broken contract: never allow on doubt
		return deny(d, reason.ReplayLedgerUnavailable, reason.DetailLedger, err)
	}

	// 20. Allow.
	d.Outcome, d.Reason, d.Status = Allow, reason.Allowed, 200
	return d
}

func deny(d Decision, code reason.Code, detail reason.Detail, err error) Decision {
	d.Outcome, d.Reason, d.Status, d.Detail, d.Err = Deny, code, code.HTTPStatus(), detail, err
	return d
}

// bindingDetail names which part of step 17's transcript binding failed.
// The transcript is bound by one digest, so a mismatch of method, host,
// path, query, content type, a covered header or a binding line reads the
// same: DetailTranscript.
func bindingDetail(err error) reason.Detail {
	switch {
	case errors.Is(err, transcript.ErrRequiredHeaderMissing):
		return reason.DetailRequiredHeader
	case errors.Is(err, transcript.ErrMalformedQuery):
		return reason.DetailQueryEncoding
	case errors.Is(err, transcript.ErrNonceMissing):
		// readProofHeaders (step 16) checked the nonce already.
		return reason.DetailProofHeaders
	default:
		return reason.DetailTranscript
	}
}

// regionFor applies step 11a: the region whose ledger consumes this
// audience's jtis, or an error when the audience is bound to another
// region. Without --region, or for an audience the policy does not map,
// that is the node's own ledger (empty).
func (p *Pipeline) regionFor(pol *bundle.Policy, aud string) (string, error) {
	if p.cfg.Region == "" {
		return "", nil
	}
	ar, ok := pol.AudienceRegions[aud]
	if !ok || ar.Home == p.cfg.Region {
		return "", nil
	}
	if ar.Mode == bundle.HomeRegion {
		return ar.Home, nil
	}
	return "", fmt.Errorf("audience is bound to region %s, this node is in %s", ar.Home, p.cfg.Region)
}

// route resolves the request's route (step 4): the pinned one, or by method
// and raw path.
func (p *Pipeline) route(pol *bundle.Policy, r *Request) *bundle.Route {
	if p.cfg.RouteID != "" {
		return pol.RouteByID(p.cfg.RouteID)
	}
	return pol.Resolve(upperASCII(strings.TrimSpace(r.Method)), r.RawPath)
}

// transcriptPolicy returns the covered-header policy of route: its required
// and ignored names plus the pipeline's own ignored names, merged once per
// route and bundle.
func (p *Pipeline) transcriptPolicy(pol *bundle.Policy, route *bundle.Route) *transcript.Policy {
	rp := p.policies.Load()
	if rp == nil || rp.pol != pol {
		next := &routePolicies{pol: pol}
		if !p.policies.CompareAndSwap(rp, next) {
			// Another request swapped first; if it installed this bundle's
			// cache, use it, else build this one uncached.
			if rp = p.policies.Load(); rp == nil || rp.pol != pol {
				return p.newTranscriptPolicy(route)
			}
		} else {
			rp = next
		}
	}
	if v, ok := rp.m.Load(route); ok {
		return v.(*transcript.Policy)
	}
	v, _ := rp.m.LoadOrStore(route, p.newTranscriptPolicy(route))
	return v.(*transcript.Policy)
}

func (p *Pipeline) newTranscriptPolicy(route *bundle.Route) *transcript.Policy {
	return &transcript.Policy{
		Required:      route.SignedHeaders.Required,
		Ignore:        append(append([]string(nil), route.SignedHeaders.Ignore...), p.cfg.IgnoreHeaders...),
		MaxCandidates: p.cfg.MaxHeaderCandidates,
	}
}

// NewLedgerKey returns the ledger key of SPEC §7: lowercase hex SHA-256 of
// iss + 0x00 + jti. Hashing keeps caller data out of NATS subjects and copes
// with jtis that NATS keys refuse.
func NewLedgerKey(iss, jti string) LedgerKey {
	h := sha256.New()
	h.Write([]byte(iss))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var sum [sha256.Size]byte
	return LedgerKey(hex.EncodeToString(h.Sum(sum[:0])))
}

// ReplayTTL is how long a consumed jti must stay in the ledger (SPEC §7):
// exp + skew - now, rounded up to whole seconds, at least 1s, so a jti never
// leaves while its passport could still be accepted.
func ReplayTTL(exp time.Time, skew time.Duration, now time.Time) time.Duration {
	d := exp.Add(skew).Sub(now)
	if d <= time.Second {
		return time.Second
	}
	// Sub saturates far in the future; rounding up there would overflow.
	if rem := d % time.Second; rem != 0 && d < math.MaxInt64-time.Second {
		d += time.Second - rem
	}
	return d
}
