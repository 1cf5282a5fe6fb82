package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundleedit"
)

type buildConfig struct {
	Config    string
	OutPolicy string
	OutTrust  string
	Sequence  int64
	IssuedAt  string
	Force     bool

	issuedAt time.Time // from IssuedAt, by validate
}

const buildAbout = `Builds an unsigned policy bundle (trustplane-bundle-v1) and unsigned trust material
from an authoring config; sign both next. Format (docs/BUNDLEPUB.md):

  {"version": "tpcluster-authoring-v1",
   "trust_domain": "example.local",
   "default_required_key_binding": "software",   optional (default software)
   "default_freshness_class": "bounded",         optional (default realtime)
   "default_max_staleness_seconds": 300,         optional
   "apis": [{"api_id": "orders-api", "audience": "orders-api", "base_url": "https://orders.example"}],
   "clients": [{
     "name": "orders-client",                    what routes refer to
     "issuer": "https://issuer.example",
     "trust_domain": "example.local",            optional (default the top-level one)
     "source_type": "software_jwks",             optional (default software_jwks)
     "kid": "proof-key-1",                       optional (default the key file's kid or thumbprint)
     "public_key_file": "orders-client.pub",     or "public_key_b64url"; relative to the config
     "subject_exact": "spiffe://example.local/workload/orders",   or "subject_prefix"
     "required_key_binding": "software"}],       optional (default software)
   "routes": [{
     "route_id": "orders.create", "method": "POST", "path_template": "/v1/orders",
     "api_id": "orders-api", "audience": "...",  audience optional (default the API's)
     "freshness_class": "bounded", "max_staleness_seconds": 300,
     "required_key_binding": "software", "risk": "high",
     "signed_headers": {"required": [], "ignore": []}, "body_hash_from_gateway": false,
     "allowed_clients": ["orders-client"]}]}

Each API becomes one route group (route_group_id = api_id); each allowed client one
source rule; clients sharing an issuer share its issuers[] entry.
`

func parseBuild(args []string, stderr io.Writer, now time.Time) (*buildConfig, error) {
	c := new(buildConfig)
	fs := newFlagSet("build", "--config authoring.json --out-policy F --out-trust F [--sequence N] [--issued-at now|RFC3339] [--force]",
		buildAbout, stderr)
	fs.StringVar(&c.Config, "config", "", "authoring config file (required)")
	fs.StringVar(&c.OutPolicy, "out-policy", "", "where to write the policy bundle (required)")
	fs.StringVar(&c.OutTrust, "out-trust", "", "where to write the trust material (required)")
	fs.Int64Var(&c.Sequence, "sequence", 1, "sequence of both documents (above the fleet's current ones)")
	fs.StringVar(&c.IssuedAt, "issued-at", "now", `issued_at of both documents: "now" or an RFC 3339 time`)
	fs.BoolVar(&c.Force, "force", false, "overwrite --out-policy and --out-trust if they exist")
	if err := parseFlags(fs, args, false); err != nil {
		return nil, err
	}
	return c, c.validate(now)
}

func (c *buildConfig) validate(now time.Time) error {
	var p problems
	p.required("config", c.Config)
	p.required("out-policy", c.OutPolicy)
	p.required("out-trust", c.OutTrust)
	if c.OutPolicy != "" && filepath.Clean(c.OutPolicy) == filepath.Clean(c.OutTrust) {
		p.add("out-trust", c.OutTrust, "must differ from --out-policy")
	}
	// An output may be the signed document in force: replacing it with an
	// unsigned build must be asked for.
	for _, out := range []struct{ name, path string }{{"out-policy", c.OutPolicy}, {"out-trust", c.OutTrust}} {
		if _, err := os.Lstat(out.path); out.path != "" && err == nil && !c.Force {
			p.add(out.name, out.path, "exists; give --force to overwrite it")
		}
	}
	checkSequence(&p, "sequence", c.Sequence)
	t, err := parseIssuedAt(c.IssuedAt, now)
	if err != nil {
		p.add("issued-at", c.IssuedAt, err.Error())
	}
	c.issuedAt = t
	return p.err()
}

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseBuild(args, stderr, time.Now())
	if err != nil {
		return err
	}
	data, err := os.ReadFile(c.Config)
	if err != nil {
		return err
	}
	a, err := bundleedit.ParseAuthoring(data, filepath.Dir(c.Config))
	if err != nil {
		return err
	}
	policy, trust, err := bundleedit.Build(a, c.Sequence, c.issuedAt)
	if err != nil {
		return err
	}
	if err := writeAtomic(c.OutPolicy, policy, 0o644); err != nil {
		return err
	}
	if err := writeAtomic(c.OutTrust, trust, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "built %s (%d routes) -> %s\nbuilt %s (%d clients) -> %s\n"+
		"both are unsigned, sequence %d, issued_at %s: sign them with bundlepub sign\n",
		bundleedit.Policy, len(a.Routes), c.OutPolicy, bundleedit.TrustMaterial, len(a.Clients), c.OutTrust,
		c.Sequence, bundleedit.FormatTime(c.issuedAt))
	return nil
}
