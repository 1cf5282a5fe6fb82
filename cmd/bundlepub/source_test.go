package main

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

func TestBuildLoadsAndResolves(t *testing.T) {
	w := newWorld(t)
	p, tm := w.load(t, w.signedPolicy, w.signedTrust)
	r := p.Resolve("GET", "/v1/orders/17")
	if r == nil || r.ID != "orders.get" || r.Audience != "orders-api" {
		t.Fatalf("Resolve(GET /v1/orders/17) = %+v, want orders.get for orders-api", r)
	}
	if len(r.Sources) != 1 || r.Sources[0].SubjectExact != "spiffe://example.local/workload/orders" {
		t.Errorf("orders.get sources = %+v", r.Sources)
	}
	client, err := keyfile.ReadPublic(w.clientPub)
	if err != nil {
		t.Fatal(err)
	}
	if k := tm.PassportKey("https://issuer.example", "client-1", true, "", time.Now()); k == nil || string(k.PublicKey) != string(client.Key) {
		t.Errorf("PassportKey(client-1) = %+v, want the client key", k)
	}
	code, _, errs := bp(t, "build", "--config", w.path("missing.json"), "--out-policy", w.policy, "--out-trust", w.policy)
	if code != 2 || !strings.Contains(errs, "--out-trust="+w.policy+" (TPCLUSTER_OUT_TRUST): must differ from --out-policy") {
		t.Errorf("build with one output for both = exit %d\n%s", code, errs)
	}
	// The outputs exist now (newWorld built them): a second build refuses
	// to replace either without --force, naming both, and leaves them.
	before, _ := os.ReadFile(w.policy)
	code, _, errs = bp(t, "build", "--config", w.config, "--out-policy", w.policy, "--out-trust", w.trust, "--sequence", "4")
	for _, want := range []string{
		"--out-policy=" + w.policy + " (TPCLUSTER_OUT_POLICY): exists; give --force to overwrite it",
		"--out-trust=" + w.trust + " (TPCLUSTER_OUT_TRUST): exists; give --force to overwrite it",
	} {
		if code != 2 || !strings.Contains(errs, want) {
			t.Errorf("build over existing outputs = exit %d, want 2 and %q\n%s", code, want, errs)
		}
	}
	if after, _ := os.ReadFile(w.policy); string(after) != string(before) {
		t.Error("a refused build changed --out-policy")
	}
	mustBP(t, "build", "--config", w.config, "--out-policy", w.policy, "--out-trust", w.trust, "--sequence", "4", "--force")
	if after, _ := os.ReadFile(w.policy); string(after) == string(before) {
		t.Error("build --force did not rewrite --out-policy")
	}
}

// TestAddClientFlow is the operator's add-a-client flow offline: keygen for
// the client, merge-source, sign with a higher sequence, verify, and the
// client's key and rule are what a verifier loads.
func TestAddClientFlow(t *testing.T) {
	w := newWorld(t)
	mustBP(t, "keygen", "--out", w.path("newclient"), "--kid", "new-1")
	merged := []string{"--policy", w.signedPolicy, "--trust", w.signedTrust,
		"--issuer", "https://new.example", "--trust-domain", "example.local",
		"--public-key", w.path("newclient.pub"), "--subject-prefix", "spiffe://example.local/ns/new/",
		"--route", "orders.get", "--route", "orders.create",
		"--out-policy", w.path("p2.json"), "--out-trust", w.path("t2.json")}
	out := mustBP(t, append([]string{"merge-source"}, merged...)...)
	for _, want := range []string{
		`added issuer "https://new.example"`,
		`added key "new-1" to issuer "https://new.example"`,
		"to routes orders.get,orders.create",
		"UNSIGNED", "--sequence 4 (or higher)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("merge-source printed %q, lacks %q", out, want)
		}
	}
	// Outputs are unsigned until signed again.
	if code, _, _ := bp(t, "verify", "--bundle-public-key", w.bundlePub, w.path("p2.json")); code != 1 {
		t.Errorf("verify of the unsigned merge output = exit %d, want 1", code)
	}
	for _, f := range []string{"p2.json", "t2.json"} {
		mustBP(t, "sign", "--key", w.bundleKey, "--in", w.path(f), "--out", w.path(f), "--sequence", "4", "--issued-at", "now")
	}
	mustBP(t, "verify", "--bundle-public-key", w.bundlePub, w.path("p2.json"), w.path("t2.json"))
	p, tm := w.load(t, w.path("p2.json"), w.path("t2.json"))
	newPub, err := keyfile.ReadPublic(w.path("newclient.pub"))
	if err != nil {
		t.Fatal(err)
	}
	// Self-issued shape: no header kid, found by the cnf key.
	k := tm.PassportKey("https://new.example", "", false, base64.RawURLEncoding.EncodeToString(newPub.Key), time.Now())
	if k == nil || k.KID != "new-1" {
		t.Errorf("PassportKey(new.example, no kid) = %+v, want new-1", k)
	}
	if k := tm.PassportKey("https://new.example", "new-1", true, "", time.Now()); k == nil {
		t.Error("PassportKey(new.example, new-1) = nil")
	}
	if k := tm.PassportKey("https://issuer.example", "client-1", true, "", time.Now()); k == nil {
		t.Error("the existing client's key is gone")
	}
	for _, id := range []string{"orders.get", "orders.create"} {
		if !admitsSubject(p.RouteByID(id), "https://new.example", "spiffe://example.local/ns/new/worker") {
			t.Errorf("route %s has no source admitting the new client", id)
		}
		if !admitsSubject(p.RouteByID(id), "https://issuer.example", "spiffe://example.local/workload/orders") {
			t.Errorf("route %s lost the existing client's source", id)
		}
	}

	// The same kid again is refused without --replace-existing, and the
	// outputs are left alone.
	before, _ := os.ReadFile(w.path("t2.json"))
	again := append([]string{"merge-source"}, merged...)
	again[2], again[4] = w.path("p2.json"), w.path("t2.json")
	code, _, errs := bp(t, again...)
	if code != 1 || !strings.Contains(errs, `already has kid "new-1" (--replace-existing replaces it)`) {
		t.Errorf("duplicate kid = exit %d, want 1\n%s", code, errs)
	}
	if after, _ := os.ReadFile(w.path("t2.json")); string(after) != string(before) {
		t.Error("a refused merge rewrote its output")
	}
	mustBP(t, append(again, "--replace-existing")...)
}

func admitsSubject(r *bundle.Route, iss, sub string) bool {
	if r == nil {
		return false
	}
	for _, s := range r.Sources {
		if s.Issuer == iss && (s.SubjectExact == sub || (s.SubjectPrefix != "" && strings.HasPrefix(sub, s.SubjectPrefix))) {
			return true
		}
	}
	return false
}

func TestMergeSourceConfig(t *testing.T) {
	code, _, errs := bp(t, "merge-source", "--public-key-b64", "short", "--subject-exact", "a", "--subject-prefix", "b",
		"--required-key-binding", "tpm", "--key-binding", "HARDWARE_LOCAL", "--max-key-binding", "none")
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, want := range []string{
		"--policy= (TPCLUSTER_POLICY): required",
		"--issuer= (TPCLUSTER_ISSUER): required",
		"--public-key-b64=short (TPCLUSTER_PUBLIC_KEY_B64): want canonical unpadded base64url of 32 bytes",
		"--subject-exact=a (TPCLUSTER_SUBJECT_EXACT): give exactly one of --subject-exact and --subject-prefix",
		"--route= (TPCLUSTER_ROUTE): name at least one route",
		"--required-key-binding=tpm (TPCLUSTER_REQUIRED_KEY_BINDING)",
		"--key-binding=HARDWARE_LOCAL (TPCLUSTER_KEY_BINDING): want software",
		"--max-key-binding=none (TPCLUSTER_MAX_KEY_BINDING): want software",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestRemoveSource(t *testing.T) {
	w := newWorld(t)
	// A second client on orders.get only, so removing the first would leave
	// orders.create empty.
	mustBP(t, "keygen", "--out", w.path("second"), "--kid", "second-1")
	mustBP(t, "merge-source", "--policy", w.signedPolicy, "--trust", w.signedTrust,
		"--issuer", "https://second.example", "--trust-domain", "example.local", "--public-key", w.path("second.pub"),
		"--subject-exact", "svc:second", "--route", "orders.get",
		"--out-policy", w.path("p2.json"), "--out-trust", w.path("t2.json"))
	files := []string{"--policy", w.path("p2.json"), "--trust", w.path("t2.json"),
		"--out-policy", w.path("p3.json"), "--out-trust", w.path("t3.json")}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"needs --confirm-remove", []string{"--issuer", "https://second.example", "--kid", "second-1"}, 2,
			"--confirm-remove=false (TPCLUSTER_CONFIRM_REMOVE): remove-source deletes a key and source rules; give --confirm-remove"},
		{"empty route refused", []string{"--issuer", "https://issuer.example", "--kid", "client-1", "--confirm-remove"}, 1,
			"routes orders.create: route would have no allowed sources"},
		{"unknown kid", []string{"--issuer", "https://second.example", "--kid", "nope", "--confirm-remove"}, 1,
			`kid "nope" of issuer "https://second.example": no such key`},
		{"removes key, issuer and rule", []string{"--issuer", "https://second.example", "--kid", "second-1", "--confirm-remove"}, 0,
			`removed source rules of issuer "https://second.example" from routes orders.get (1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(w.path("p3.json"))
			code, out, errs := bp(t, append(append([]string{"remove-source"}, tt.args...), files...)...)
			if code != tt.code || !strings.Contains(out+errs, tt.want) {
				t.Fatalf("remove-source = exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tt.code, tt.want, out, errs)
			}
			if _, err := os.Stat(w.path("p3.json")); (err == nil) != (code == 0) {
				t.Errorf("output written: %v, want only on success", err == nil)
			}
		})
	}
	for _, f := range []string{"p3.json", "t3.json"} {
		mustBP(t, "sign", "--key", w.bundleKey, "--in", w.path(f), "--out", w.path(f), "--sequence", "5")
	}
	p, tm := w.load(t, w.path("p3.json"), w.path("t3.json"))
	if tm.Issuers["https://second.example"] != nil {
		t.Error("issuer second.example is still in the trust material")
	}
	if admitsSubject(p.RouteByID("orders.get"), "https://second.example", "svc:second") {
		t.Error("orders.get still admits the removed client")
	}
	if !admitsSubject(p.RouteByID("orders.get"), "https://issuer.example", "spiffe://example.local/workload/orders") {
		t.Error("orders.get lost the other client")
	}
}
