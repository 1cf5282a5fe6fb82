package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tpcluster/tpcluster/internal/egress/oauthtest"
)

// egressSetup is a real OAuth authorization server (internal/egress/oauthtest,
// in the test process) with one client, and what a world's policy and a
// verifierd need to bridge to it as provider "acme": TestEgress and
// TestMonitoringMetricsExist share it.
type egressSetup struct {
	op       *oauthtest.Server
	provider map[string]any // the policy's egress_providers entry for acme
	secret   string         // acme's client secret file, 0600
}

// newEgressSetup starts the authorization server (stopped on cleanup) and
// writes the client secret verifierd reads with --egress-secret.
func newEgressSetup(t testing.TB) *egressSetup {
	t.Helper()
	op := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{
		{ID: "tp-basic", Secret: "e2e-basic-secret", Scopes: []string{"crm.read", "crm.list"}},
	}})
	secret := filepath.Join(t.TempDir(), "acme.secret")
	if err := os.WriteFile(secret, []byte("e2e-basic-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &egressSetup{op: op, secret: secret, provider: map[string]any{"provider_id": "acme",
		"token_endpoint": op.TokenEndpoint, "client_id": "tp-basic", "client_auth": "client_secret_basic"}}
}

// edit is a newWorldWith (or fleetOpts) edit: the policy declares acme and
// two routes bridged to it with client_credentials, crm.get
// (GET /crm/contacts/{id}) and crm.list (GET /crm/contacts). Their egress
// blocks are equal, but the route is part of the token cache key, so a
// crm.list request after a crm.get one asks the provider again.
func (e *egressSetup) edit(w *world, policy map[string]any) {
	policy["egress_providers"] = []any{e.provider}
	eg := map[string]any{"provider": "acme", "grant": "client_credentials", "scope": []any{"crm.read", "crm.list"},
		"audience": "https://crm.example", "tenant": "t-7", "max_token_lifetime_seconds": 900}
	g := policy["route_groups"].([]any)[0].(map[string]any)
	g["routes"] = append(g["routes"].([]any),
		w.route("crm.get", "GET", "/crm/contacts/{id}", map[string]any{"egress": eg}),
		w.route("crm.list", "GET", "/crm/contacts", map[string]any{"egress": eg}))
}

// flags give verifierd acme's credential.
func (e *egressSetup) flags() []string {
	return []string{"--egress-secret", "acme=" + e.secret}
}
