package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/signer"
)

// Brokers: issuer keys that sign passports for another key (the caller's
// cnf), so the passport is not self-issued and its cnf.key_binding is an
// attestation (SPEC §2.1). broker-1 has no cap; broker-capped may attest
// at most remote_kms (SPEC §5.2 max_key_binding).

const (
	brokerKID = "broker-1"
	cappedKID = "broker-capped"
)

// addBrokers adds the two broker keys to the world's trust material and
// signs it again with the world's bundle key.
func addBrokers(t *testing.T, w *world) (broker, capped *signer.Key) {
	t.Helper()
	var err error
	if broker, err = signer.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	if capped, err = signer.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(w.trust)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "signature")
	delete(doc, "signed_by")
	iss := doc["issuers"].([]any)[0].(map[string]any)
	iss["keys"] = append(iss["keys"].([]any),
		map[string]any{"kid": brokerKID, "alg": "EdDSA", "status": "active", "public_key_b64url": broker.PublicKeyB64()},
		map[string]any{"kid": cappedKID, "alg": "EdDSA", "status": "active", "public_key_b64url": capped.PublicKeyB64(),
			"max_key_binding": "remote_kms"})
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	bk, err := keyfile.ReadPrivate(filepath.Join(w.dir, "bundle.key"))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := bundle.Sign(out, bundle.NewSigningKey(bk), "local://e2e")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.trust, signed, 0o644); err != nil {
		t.Fatal(err)
	}
	return broker, capped
}

// brokered makes a passport for the caller's key (cnf) claiming class kb,
// signed by the broker key kid.
func brokered(kid, kb string) func(s *suite, o *signer.PassportOptions) (string, *signer.Key) {
	return func(s *suite, o *signer.PassportOptions) (string, *signer.Key) {
		b := s.broker
		if kid == cappedKID {
			b = s.capped
		}
		p := rep(`"key_binding":"software"`, `"key_binding":"`+kb+`"`)(payload(s.w.caller, o))
		return jwsBy(b, `{"alg":"EdDSA","kid":"`+kid+`","typ":"JWT"}`, p), s.w.caller
	}
}
