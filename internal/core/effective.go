package core

import (
	"bytes"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/passport"
	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// attested are the claims of a verified passport that steps 13 and 14 may
// rely on (SPEC §2.1 "Effective class"): what the trust material lets the
// key that signed it vouch for, not what the passport says.
type attested struct {
	// selfIssued reports that the key that verified the passport is its cnf
	// key: the caller signed its own claims.
	selfIssued bool
	// keyBinding is the effective class: the one step 13 compares, the
	// upstream's X-TrustPlane-Key-Binding and the audit event's key_binding.
	keyBinding signerclass.Class
	// provenance and ctx are the claims source matching reads; nil when
	// absent or not attested.
	provenance *passport.Provenance
	ctx        *passport.Context
}

// attest applies SPEC §2.1 to a passport whose signature key verified:
//
//   - Self-issued (key is the cnf key): the class is the lower of
//     cnf.key_binding and the key entry's key_binding (default software),
//     and provenance and ctx count as absent. A trust material key entry has
//     no member that grants provenance or context (SPEC §5.2), so a caller's
//     own provenance or ctx raises nothing: a source that requires them
//     denies missing_provenance or missing_context.
//   - Signed by another key (a broker): cnf.key_binding, capped by the key
//     entry's max_key_binding when present; provenance and ctx are the
//     broker's word, as claimed.
func attest(c *passport.Claims, key *bundle.Key) attested {
	if bytes.Equal(c.PublicKey, key.PublicKey) {
		return attested{selfIssued: true, keyBinding: lower(c.KeyBinding, key.KeyBinding)}
	}
	a := attested{keyBinding: c.KeyBinding, provenance: c.Provenance, ctx: c.Ctx}
	if key.MaxKeyBinding.Valid() {
		a.keyBinding = lower(a.keyBinding, key.MaxKeyBinding)
	}
	return a
}

// lower returns the lower-ranked of a and b. An invalid class ranks 0, so
// it wins and then satisfies no requirement.
func lower(a, b signerclass.Class) signerclass.Class {
	if b.Rank() < a.Rank() {
		return b
	}
	return a
}
