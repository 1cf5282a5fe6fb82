package bundleedit

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// RemoveSource removes a client's key from the trust material and the
// source rules that admitted it. Precisely:
//
//  1. Key: the issuer's key KID must exist; it is removed. An issuer left
//     with no key is removed too.
//  2. Scope: the routes named in Routes, or, when none is named, every
//     route of the bundle.
//  3. Rules: in the scope, a source rule is removed when its issuer is
//     Issuer and, if Subject is set, its subject selector is exactly
//     Subject (same member, same value; a prefix rule is not an exact one).
//     When no route and no subject is named and the issuer keeps other
//     keys, no rule is removed: that is a key rotation, and the issuer's
//     remaining keys still sign for those subjects.
//  4. Refusals: a named route that is not in the bundle, or that has no
//     rule to remove; a route left with no allowed sources (ErrEmptyRoute,
//     naming every such route); and an issuer left with no key while rules
//     for it remain anywhere, since a key later added to that issuer would
//     silently reopen them (self-issued passports carry whatever subject
//     their key holder writes).
type RemoveSource struct {
	Issuer  string
	KID     string
	Subject Subject // optional: zero means any subject
	Routes  []string
}

// Apply applies r to a policy bundle and trust material. Like
// MergeSource.Apply it keeps member order and every member not edited, and
// returns unsigned documents for those it changed. Errors wrap
// ErrUnknownKey, ErrUnknownRoute or ErrEmptyRoute where those apply.
func (r RemoveSource) Apply(policy, trust []byte) (*Result, error) {
	e, err := newEdit(policy, trust)
	if err != nil {
		return nil, err
	}
	if r.Issuer == "" || r.KID == "" {
		return nil, errors.New("bundleedit: remove source: issuer and kid are required")
	}
	if (r.Subject != Subject{}) && !r.Subject.valid() {
		return nil, errors.New("bundleedit: remove source: want at most one of subject exact and subject prefix")
	}
	left, err := e.removeKey(r.Issuer, r.KID)
	if err != nil {
		return nil, fmt.Errorf("bundleedit: remove source: %w", err)
	}
	if err := e.removeRules(r, left); err != nil {
		return nil, fmt.Errorf("bundleedit: remove source: %w", err)
	}
	return e.finish()
}

// removeKey removes the key and returns the kids the issuer keeps.
func (e *edit) removeKey(iss, kid string) ([]string, error) {
	issuers, err := e.trust.objects("issuers", "")
	if err != nil {
		return nil, err
	}
	at := slices.IndexFunc(issuers, func(o *object) bool { return o.str("issuer") == iss })
	if at < 0 {
		return nil, fmt.Errorf("issuer %q: %w", iss, ErrUnknownKey)
	}
	keys, err := issuers[at].objects("keys", "issuer "+strconv.Quote(iss))
	if err != nil {
		return nil, err
	}
	k := slices.IndexFunc(keys, func(o *object) bool { return o.str("kid") == kid })
	if k < 0 {
		return nil, fmt.Errorf("kid %q of issuer %q: %w", kid, iss, ErrUnknownKey)
	}
	keys = slices.Delete(keys, k, k+1)
	e.trustChanged = true
	e.notef("removed key %q from issuer %q", kid, iss)
	var left []string
	for _, o := range keys {
		left = append(left, o.str("kid"))
	}
	if len(keys) == 0 {
		e.trust.setObjects("issuers", slices.Delete(issuers, at, at+1))
		e.notef("removed issuer %q: it has no key left", iss)
	} else {
		issuers[at].setObjects("keys", keys)
	}
	return left, nil
}

func (e *edit) removeRules(r RemoveSource, keysLeft []string) error {
	routes, err := e.routes()
	if err != nil {
		return err
	}
	named := dedupe(r.Routes)
	for _, id := range named {
		if routes.byID(id) == nil {
			return fmt.Errorf("route %q: %w", id, ErrUnknownRoute)
		}
	}
	hasSubject := r.Subject != Subject{}
	if len(named) == 0 && !hasSubject && len(keysLeft) > 0 {
		e.notef("kept the source rules of issuer %q: it still has keys %s (name --route or a subject to remove rules)",
			r.Issuer, strings.Join(keysLeft, ","))
		return nil
	}
	var touched, empty, dangling []string
	for i, route := range routes.routes {
		id := routes.ids[i]
		inScope := len(named) == 0 || slices.Contains(named, id)
		srcs, err := route.objects("allowed_sources", "route "+strconv.Quote(id))
		if err != nil {
			return err
		}
		kept := slices.DeleteFunc(slices.Clone(srcs), func(s *object) bool {
			return inScope && s.str("issuer") == r.Issuer && (!hasSubject || r.Subject.matches(s))
		})
		if n := len(srcs) - len(kept); n > 0 {
			touched = append(touched, fmt.Sprintf("%s (%d)", id, n))
			route.setObjects("allowed_sources", kept)
		} else if slices.Contains(named, id) {
			return fmt.Errorf("route %q has no source rule of issuer %q%s to remove", id, r.Issuer, subjectNote(r.Subject))
		}
		if len(kept) == 0 {
			empty = append(empty, id)
		}
		if len(keysLeft) == 0 && slices.ContainsFunc(kept, func(s *object) bool { return s.str("issuer") == r.Issuer }) {
			dangling = append(dangling, id)
		}
	}
	if len(empty) > 0 {
		return fmt.Errorf("routes %s: %w; add another source first or remove the route", strings.Join(empty, ","), ErrEmptyRoute)
	}
	if len(dangling) > 0 {
		return fmt.Errorf("issuer %q has no key left, but routes %s keep source rules for it; remove those too (fewer --route, no subject)",
			r.Issuer, strings.Join(dangling, ","))
	}
	if len(touched) == 0 {
		e.notef("no source rule of issuer %q%s was found", r.Issuer, subjectNote(r.Subject))
		return nil
	}
	e.policyChanged = true
	e.notef("removed source rules of issuer %q%s from routes %s", r.Issuer, subjectNote(r.Subject), strings.Join(touched, ", "))
	return nil
}

func subjectNote(s Subject) string {
	if s == (Subject{}) {
		return ""
	}
	return " with " + s.String()
}
