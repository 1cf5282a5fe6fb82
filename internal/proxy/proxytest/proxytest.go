// Package proxytest builds, for the tests of internal/proxy and of the
// adapters in front of it, a real core pipeline over a real replay ledger on
// an embedded NATS server: one software issuer, unsigned documents from
// route specs, one snapshot. It builds no proxy.Handler (each test
// configures its own) and mocks nothing.
//
// It is test support: only _test.go files import it.
package proxytest

import (
	"encoding/json"
	"maps"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/signer"
)

// KID is the kid of the issuer's one key in the trust material.
const KID = "k1"

// World is the issuer and API the pipeline trusts. All fields are required.
type World struct {
	Issuer      string
	TrustDomain string
	Audience    string // the orders API's audience
	Subject     string // the one subject the routes allow
	Key         *signer.Key
}

// Route is one route of the orders API: every route is offline-ok and
// allows World's subject from its software issuer.
type Route struct {
	ID, Method, Path string
	Extra            map[string]any // further route fields (backend_assertion, ...); nil for none
}

// Pipeline parses the policy (the orders API with routes, then edit
// applied to the document if edit is not nil; src is the routes'
// allowed_sources, for routes edit adds) and the trust material (w.Key
// active as KID), and returns a pipeline over a ledger on a fresh embedded
// NATS server. Everything it starts stops on t's cleanup.
func Pipeline(t testing.TB, w World, routes []Route, edit func(policy map[string]any, src []any)) *core.Pipeline {
	t.Helper()
	src := []any{map[string]any{"source_type": "software_jwks", "issuer": w.Issuer, "trust_domain": w.TrustDomain,
		"subject_exact": w.Subject, "required_key_binding": "software"}}
	var rs []any
	for _, r := range routes {
		rt := map[string]any{"route_id": r.ID, "method": r.Method, "path_template": r.Path, "freshness_class": "offline-ok", "allowed_sources": src}
		maps.Copy(rt, r.Extra)
		rs = append(rs, rt)
	}
	polDoc := map[string]any{
		"version": "trustplane-bundle-v1", "kind": "policy_runtime_bundle", "trust_domain": w.TrustDomain,
		"apis":         []any{map[string]any{"api_id": "orders", "audience": w.Audience, "base_url": "http://x"}},
		"route_groups": []any{map[string]any{"route_group_id": "g", "api_id": "orders", "routes": rs}},
	}
	if edit != nil {
		edit(polDoc, src)
	}
	pol, err := json.Marshal(polDoc)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := json.Marshal(map[string]any{
		"version": "trustplane-trust-material-v1", "kind": "trust_material",
		"issuers": []any{map[string]any{"issuer": w.Issuer, "trust_domain": w.TrustDomain, "source_type": "software_jwks",
			"keys": []any{map[string]any{"kid": KID, "alg": "EdDSA", "status": "active", "public_key_b64url": w.Key.PublicKeyB64()}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := bundle.Options{AllowUnsigned: true, ModTime: time.Now()}
	p, err := bundle.ParsePolicy(pol, opts)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := bundle.ParseTrustMaterial(tm, opts)
	if err != nil {
		t.Fatal(err)
	}
	snap := &core.Snapshot{Policy: p, Trust: trust, ViewTime: time.Now()}

	js := natstest.JetStream(t, natstest.Connect(t, natstest.Server(t).ClientURL()))
	led, err := ledger.New(t.Context(), ledger.Config{JetStream: js, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	pipe, err := core.New(core.Config{Ledger: led, Snapshot: func() *core.Snapshot { return snap }})
	if err != nil {
		t.Fatal(err)
	}
	return pipe
}
