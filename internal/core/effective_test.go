package core

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/passport"
	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// TestAttestAll checks attest on every combination of claimed class, key
// entry key_binding and max_key_binding, self-issued and broker-signed,
// against SPEC §2.1 written with ranks: self-issued takes the lower of the
// claim and key_binding, broker-signed the lower of the claim and the cap.
func TestAttestAll(t *testing.T) {
	selfKey, otherKey := make([]byte, 32), make([]byte, 32)
	otherKey[0] = 1
	caps := append([]signerclass.Class{0}, signerclass.Ordered[:]...) // 0: no cap
	for _, claimed := range signerclass.Ordered {
		for _, kb := range signerclass.Ordered {
			for _, max := range caps {
				for _, self := range []bool{true, false} {
					key := &bundle.Key{KID: "k", PublicKey: selfKey, KeyBinding: kb, MaxKeyBinding: max, Active: true}
					c := &passport.Claims{
						KeyBinding: claimed, PublicKey: otherKey,
						Provenance: &passport.Provenance{Posture: "p"}, Ctx: &passport.Context{ToolName: "t"},
					}
					if self {
						c.PublicKey = selfKey
					}
					want := claimed.Rank()
					switch {
					case self:
						want = min(want, kb.Rank())
					case max != 0:
						want = min(want, max.Rank())
					}
					a := attest(c, key)
					if a.keyBinding.Rank() != want || a.selfIssued != self {
						t.Errorf("attest(claimed %s, key_binding %s, max %s, self-issued %v) = %s (self-issued %v), want rank %d",
							claimed, kb, max, self, a.keyBinding, a.selfIssued, want)
					}
					// Only a broker vouches for provenance and ctx.
					if (a.provenance != nil) == self || (a.ctx != nil) == self {
						t.Errorf("attest(self-issued %v) provenance %v ctx %v", self, a.provenance, a.ctx)
					}
				}
			}
		}
	}
}

// classRoute is a route orders.<id> at POST /v1/<id> requiring class min.
func classRoute(id, min string) doc {
	r := route("orders."+id, "POST", "/v1/"+id)
	r["required_key_binding"] = min
	return r
}

// TestEffectiveClass: a self-issued passport claiming a stronger binding
// than its key has, and its neighbours, end to end through Decide. The
// decision (what proxy mode forwards as X-TrustPlane-Key-Binding and the
// audit event records) carries the effective class, and step 13 compares
// it.
func TestEffectiveClass(t *testing.T) {
	tests := []struct {
		name     string
		route    string // route id suffix: sw, hw or aw
		claimed  string
		broker   bool
		selfKey  func(k doc) // the caller key's trust material entry
		brokerKy func(k doc) // the broker key's entry
		want     reason.Code
		wantKB   string
	}{
		{"self-issued hardware claim on a software route", "sw", "hardware_local", false, nil, nil, reason.Allowed, "software"},
		{"self-issued hardware claim on a hardware route", "hw", "hardware_local", false, nil, nil, reason.InsufficientKeyBinding, "software"},
		{"self-issued, operator vouches hardware", "hw", "hardware_local", false,
			func(k doc) { k["key_binding"] = "hardware_local" }, nil, reason.Allowed, "hardware_local"},
		{"self-issued claims less than vouched", "hw", "software", false,
			func(k doc) { k["key_binding"] = "hardware_local" }, nil, reason.InsufficientKeyBinding, "software"},
		{"self-issued claims more than vouched", "aw", "attested_workload", false,
			func(k doc) { k["key_binding"] = "hardware_local" }, nil, reason.InsufficientKeyBinding, "hardware_local"},
		{"self-issued max_key_binding raises nothing", "hw", "hardware_local", false,
			func(k doc) { k["max_key_binding"] = "attested_workload" }, nil, reason.InsufficientKeyBinding, "software"},
		{"broker without cap", "hw", "hardware_local", true, nil, nil, reason.Allowed, "hardware_local"},
		{"broker, its own key_binding does not cap", "aw", "attested_workload", true,
			nil, func(k doc) { k["key_binding"] = "software" }, reason.Allowed, "attested_workload"},
		{"broker capped", "hw", "attested_workload", true,
			nil, func(k doc) { k["max_key_binding"] = "remote_kms" }, reason.InsufficientKeyBinding, "remote_kms"},
		{"broker under its cap", "hw", "hardware_local", true,
			nil, func(k doc) { k["max_key_binding"] = "attested_workload" }, reason.Allowed, "hardware_local"},
		{"broker at its cap", "hw", "hardware_local", true,
			nil, func(k doc) { k["max_key_binding"] = "hardware_local" }, reason.Allowed, "hardware_local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			bk := brokerKey(t)
			tm := testTrust(f.key.PublicKeyB64())
			if tt.selfKey != nil {
				tt.selfKey(tm["issuers"].([]any)[0].(doc)["keys"].([]any)[0].(doc))
			}
			tm = withKey(tm, brokerKID, bk.PublicKeyB64(), tt.brokerKy)
			pol := testPolicy(classRoute("sw", "software"), classRoute("hw", "hardware_local"), classRoute("aw", "attested_workload"))
			f.snap.Store(loadSnapshot(t, pol, tm, f.now))
			c := derivedCall()
			c.url, c.routeID = "https://orders.example/v1/"+tt.route, "orders."+tt.route
			po := passportOptions()
			po.KeyBinding = tt.claimed
			c.passport = &po
			if tt.broker {
				c.broker = bk
			}
			d := f.p.Decide(t.Context(), f.request(c))
			if d.Reason != tt.want || d.KeyBinding != tt.wantKB {
				t.Fatalf("Decide(%s) = %q, key binding %q (%v); want %q, %q", tt.name, d.Reason, d.KeyBinding, d.Err, tt.want, tt.wantKB)
			}
		})
	}
}

// TestBrokerOnlyClaims: provenance and ctx count only when a broker signed
// them; a self-issued passport carrying matching ones is treated as having
// none (docs/SPEC-EXTENSIONS.md).
func TestBrokerOnlyClaims(t *testing.T) {
	prov := func(r doc) doc {
		return withSource(r, func(s doc) {
			s["provenance_policy"] = doc{"profile": "trustplane-spiffe-spire-k8s-v1", "required_posture": "spiffe_svid_verified"}
		})
	}
	ctx := func(r doc) doc {
		return withSource(r, func(s doc) {
			s["context_policy"] = doc{"required_tool_name": "orders-worker", "max_txn_value": "1000.00"}
		})
	}
	goodProv := &signer.Provenance{Profile: "trustplane-spiffe-spire-k8s-v1", Posture: "spiffe_svid_verified"}
	goodCtx := &signer.Context{ToolName: "orders-worker", MaxTxnValue: "999.99"}
	tests := []struct {
		name   string
		route  string
		broker bool
		prov   *signer.Provenance
		ctx    *signer.Context
		want   reason.Code
	}{
		{"broker provenance", "p", true, goodProv, nil, reason.Allowed},
		{"self-issued provenance", "p", false, goodProv, nil, reason.MissingProvenance},
		{"broker provenance differs", "p", true, &signer.Provenance{Profile: "trustplane-spiffe-spire-k8s-v1", Posture: "none"}, nil, reason.ProvenanceMismatch},
		{"broker without provenance", "p", true, nil, nil, reason.MissingProvenance},
		{"broker ctx", "c", true, nil, goodCtx, reason.Allowed},
		{"self-issued ctx", "c", false, nil, goodCtx, reason.MissingContext},
		{"broker ctx above ceiling", "c", true, nil, &signer.Context{ToolName: "orders-worker", MaxTxnValue: "1000.01"}, reason.ContextMismatch},
		{"self-issued ctx on a route without context policy", "plain", false, nil, goodCtx, reason.Allowed},
		{"self-issued provenance on a route without policy", "plain", false, goodProv, nil, reason.Allowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			bk := brokerKey(t)
			pol := testPolicy(prov(route("orders.p", "POST", "/v1/p")), ctx(route("orders.c", "POST", "/v1/c")),
				route("orders.plain", "POST", "/v1/plain"))
			f.snap.Store(loadSnapshot(t, pol, withKey(testTrust(f.key.PublicKeyB64()), brokerKID, bk.PublicKeyB64(), nil), f.now))
			c := derivedCall()
			c.url, c.routeID = "https://orders.example/v1/"+tt.route, "orders."+tt.route
			po := passportOptions()
			po.Provenance, po.Ctx = tt.prov, tt.ctx
			c.passport = &po
			if tt.broker {
				c.broker = bk
			}
			if d := f.p.Decide(t.Context(), f.request(c)); d.Reason != tt.want {
				t.Fatalf("Decide(%s) = %q (%v), want %q", tt.name, d.Reason, d.Err, tt.want)
			}
		})
	}
}

// TestKeyBindingBeforeSignature: a decision denied before the passport
// signature verified carries no key binding; the claim is unverified text.
func TestKeyBindingBeforeSignature(t *testing.T) {
	f := newFixture(t, nil)
	c := derivedCall()
	po := passportOptions()
	po.KeyBinding, po.KID = "hardware_local", "proof-key-2"
	c.passport = &po
	d := f.p.Decide(t.Context(), f.request(c))
	if d.Reason != reason.PassportKeyUnknown || d.KeyBinding != "" {
		t.Fatalf("Decide(unknown kid) = %q, key binding %q; want passport_key_unknown, none", d.Reason, d.KeyBinding)
	}
}
