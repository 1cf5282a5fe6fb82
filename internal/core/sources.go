package core

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/passport"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// sourceDepth orders the checks of steps 12 to 14 for one source rule. A
// source that fails later got further, so its failure is the most specific.
type sourceDepth uint8

const (
	depthIssuer sourceDepth = iota
	depthTrustDomain
	depthSubject
	depthKeyBinding
	depthProvenance
	depthContext
	depthMatched
)

// matchSources applies steps 12 to 14: the route allows the passport when one
// of its sources matches issuer, trust domain, subject, signer class,
// provenance and context. Signer class, provenance and context are the
// attested ones (SPEC §2.1), never the claims as written. Otherwise it
// reports the most specific failure among the sources (SPEC §6): the one
// that got furthest, the first on ties, and the detail of that depth.
func matchSources(pol *bundle.Policy, route *bundle.Route, c *passport.Claims, att *attested) (reason.Code, reason.Detail, error) {
	best := depthIssuer
	var bestCode reason.Code = reason.SourceIssuerMismatch
	bestErr := fmt.Errorf("no source of route %s admits the passport's issuer", route.ID)
	for i := range route.Sources {
		s := &route.Sources[i]
		depth, code, err := matchSource(pol, route, s, c, att)
		if depth == depthMatched {
			return "", "", nil
		}
		if depth > best {
			best, bestCode, bestErr = depth, code, fmt.Errorf("route %s source %d: %w", route.ID, i, err)
		}
	}
	return bestCode, best.detail(), bestErr
}

// detail is the detail code of a source that failed at depth d.
func (d sourceDepth) detail() reason.Detail {
	switch d {
	case depthIssuer:
		return reason.DetailIssuer
	case depthTrustDomain:
		return reason.DetailTrustDomain
	case depthSubject:
		return reason.DetailSubject
	case depthKeyBinding:
		return reason.DetailKeyBinding
	case depthProvenance:
		return reason.DetailProvenance
	default:
		return reason.DetailContext
	}
}

func matchSource(pol *bundle.Policy, route *bundle.Route, s *bundle.Source, c *passport.Claims, att *attested) (sourceDepth, reason.Code, error) {
	if s.Issuer != c.Issuer {
		return depthIssuer, reason.SourceIssuerMismatch, errors.New("issuer differs")
	}
	if s.TrustDomain != c.TrustDomain {
		return depthTrustDomain, reason.SourceTrustDomainMismatch, errors.New("trust domain differs")
	}
	if s.SubjectExact != "" && c.Subject != s.SubjectExact ||
		s.SubjectPrefix != "" && !strings.HasPrefix(c.Subject, s.SubjectPrefix) {
		return depthSubject, reason.SourceSubjectMismatch, errors.New("subject not admitted")
	}
	// The effective minimum is the higher of the route's (or the bundle
	// default's, already folded into the route) and the source's own.
	min := route.RequiredKeyBinding
	if s.RequiredKeyBinding.Valid() && s.RequiredKeyBinding.Rank() > min.Rank() {
		min = s.RequiredKeyBinding
	}
	if !att.keyBinding.Satisfies(min) {
		if att.keyBinding != c.KeyBinding {
			return depthKeyBinding, reason.InsufficientKeyBinding, fmt.Errorf("effective key binding %s (claimed %s, %s) below %s",
				att.keyBinding, c.KeyBinding, signerOf(att), min)
		}
		return depthKeyBinding, reason.InsufficientKeyBinding, fmt.Errorf("key binding %s below %s", att.keyBinding, min)
	}
	for _, pp := range [...]*bundle.ProvenancePolicy{pol.ProvenancePolicy, s.Provenance} {
		if code, err := checkProvenance(pp, att.provenance); err != nil {
			return depthProvenance, code, unattested(err, att, c.Provenance != nil)
		}
	}
	if code, err := checkContext(s.Context, att.ctx); err != nil {
		return depthContext, code, unattested(err, att, c.Ctx != nil)
	}
	return depthMatched, "", nil
}

// signerOf names who vouched for a passport's claims, for operator errors.
func signerOf(att *attested) string {
	if att.selfIssued {
		return "self-issued"
	}
	return "capped by the signing key's max_key_binding"
}

// unattested adds to a provenance or context failure that the passport did
// carry the claim, but signed it itself, so it did not count.
func unattested(err error, att *attested, claimed bool) error {
	if att.selfIssued && claimed {
		return fmt.Errorf("%w (the self-issued passport's own claim is not attested)", err)
	}
	return err
}

// checkProvenance checks one provenance policy (bundle level or source
// level; both apply). An absent claim, or an absent member a requirement
// names, is missing_provenance; a different value is provenance_mismatch.
func checkProvenance(pp *bundle.ProvenancePolicy, got *passport.Provenance) (reason.Code, error) {
	if pp == nil {
		return "", nil
	}
	checks := [...]struct{ name, want, have string }{
		{"profile", pp.Profile, ""},
		{"spiffe_trust_domain", pp.RequiredSPIFFETrustDomain, ""},
		{"posture", pp.RequiredPosture, ""},
	}
	if got != nil {
		checks[0].have, checks[1].have, checks[2].have = got.Profile, got.SPIFFETrustDomain, got.Posture
	}
	for _, ck := range checks {
		switch {
		case ck.want == "":
		case ck.have == "":
			return reason.MissingProvenance, fmt.Errorf("provenance %s missing", ck.name)
		case ck.have != ck.want:
			return reason.ProvenanceMismatch, fmt.Errorf("provenance %s differs", ck.name)
		}
	}
	return "", nil
}

// checkContext checks a source's context policy against the ctx claim. An
// absent claim or member is missing_context; a different tool or workflow, a
// value above the ceiling or one that is not a strict decimal is
// context_mismatch (SPEC §5.1).
func checkContext(cp *bundle.ContextPolicy, got *passport.Context) (reason.Code, error) {
	if cp == nil {
		return "", nil
	}
	if got == nil {
		if cp.RequiredToolName != "" || cp.RequiredWorkflowID != "" || cp.MaxTxnValue != nil {
			return reason.MissingContext, errors.New("ctx claim missing")
		}
		return "", nil
	}
	for _, ck := range [...]struct{ name, want, have string }{
		{"tool_name", cp.RequiredToolName, got.ToolName},
		{"workflow_id", cp.RequiredWorkflowID, got.WorkflowID},
	} {
		switch {
		case ck.want == "":
		case ck.have == "":
			return reason.MissingContext, fmt.Errorf("ctx %s missing", ck.name)
		case ck.have != ck.want:
			return reason.ContextMismatch, fmt.Errorf("ctx %s differs", ck.name)
		}
	}
	if cp.MaxTxnValue != nil {
		if !got.HasMaxTxnValue {
			return reason.MissingContext, errors.New("ctx max_txn_value missing")
		}
		v, ok := bundle.ParseDecimal(got.MaxTxnValue)
		if !ok {
			return reason.ContextMismatch, errors.New("ctx max_txn_value is not a decimal")
		}
		if v.Cmp(cp.MaxTxnValue) > 0 {
			return reason.ContextMismatch, errors.New("ctx max_txn_value above the policy ceiling")
		}
	}
	return "", nil
}

// revoked applies step 15: a revocation entry lists the passport's jti,
// subject or header kid, for its issuer when it names one, until its end
// when it has one.
func revoked(pol *bundle.Policy, tok *passport.Token, now time.Time) error {
	c := &tok.Claims
	for i := range pol.Revocations {
		rv := &pol.Revocations[i]
		if rv.Issuer != "" && rv.Issuer != c.Issuer || !rv.Until.IsZero() && !now.Before(rv.Until) {
			continue
		}
		var hit bool
		switch rv.Type {
		case "jti":
			hit = rv.Value == c.JTI
		case "subject":
			hit = rv.Value == c.Subject
		case "kid":
			hit = tok.HasKID && rv.Value == tok.KID
		}
		if hit {
			return fmt.Errorf("revocation %d lists the passport's %s", i, rv.Type)
		}
	}
	return nil
}
