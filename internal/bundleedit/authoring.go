package bundleedit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// AuthoringVersion is the version member of an authoring config.
const AuthoringVersion = "tpcluster-authoring-v1"

// Authoring is the small config `bundlepub build` turns into a policy
// bundle and trust material. Member names follow the bundle's where the
// concept is the same (docs/BUNDLEPUB.md has an example):
//
//	{"version": "tpcluster-authoring-v1",
//	 "trust_domain": "example.local",
//	 "default_required_key_binding": "software",      optional, default software
//	 "default_freshness_class": "bounded",            optional, default realtime
//	 "default_max_staleness_seconds": 300,            optional
//	 "apis": [{"api_id": "orders-api", "audience": "orders-api", "base_url": "https://orders.example"}],
//	 "clients": [{"name": "orders-client",            referenced by routes
//	   "issuer": "https://issuer.example",
//	   "trust_domain": "example.local",               optional, default the top-level one
//	   "source_type": "software_jwks",                optional, default software_jwks
//	   "kid": "proof-key-1",                          optional, default the key file's kid or the thumbprint
//	   "public_key_file": "orders-client.pub",        or "public_key_b64url": "..."; relative to the config
//	   "subject_exact": "spiffe://example.local/workload/orders",  or "subject_prefix"
//	   "required_key_binding": "software",            optional, default software
//	   "key_binding": "software",                     optional: the key entry's (SPEC §5.2), default software
//	   "max_key_binding": "remote_kms"}],             optional: the key entry's cap, default none
//	 "routes": [{"route_id": "orders.create", "method": "POST", "path_template": "/v1/orders",
//	   "api_id": "orders-api", "audience": "...",      audience optional (default the API's)
//	   "freshness_class": "bounded", "max_staleness_seconds": 300, "required_key_binding": "software",
//	   "risk": "high", "signed_headers": {"required": [], "ignore": []}, "body_hash_from_gateway": false,
//	   "query_strict": false,
//	   "allowed_clients": ["orders-client"]}]}
//
// Routes are grouped by API into one route group each (route_group_id =
// api_id); clients sharing an issuer share one issuers[] entry.
type Authoring struct {
	Version                    string            `json:"version"`
	TrustDomain                string            `json:"trust_domain"`
	DefaultRequiredKeyBinding  string            `json:"default_required_key_binding,omitempty"`
	DefaultFreshnessClass      string            `json:"default_freshness_class,omitempty"`
	DefaultMaxStalenessSeconds *int64            `json:"default_max_staleness_seconds,omitempty"`
	APIs                       []AuthoringAPI    `json:"apis"`
	Clients                    []AuthoringClient `json:"clients"`
	Routes                     []AuthoringRoute  `json:"routes"`

	resolved bool // by ParseAuthoring: key files read, references checked
}

// AuthoringAPI is an apis[] entry, copied to the bundle as is.
type AuthoringAPI struct {
	APIID    string `json:"api_id"`
	Audience string `json:"audience"`
	BaseURL  string `json:"base_url,omitempty"`
}

// AuthoringClient is a caller: an issuer's key and the subject it signs for.
type AuthoringClient struct {
	Name               string `json:"name"`
	Issuer             string `json:"issuer"`
	TrustDomain        string `json:"trust_domain,omitempty"`
	SourceType         string `json:"source_type,omitempty"`
	KID                string `json:"kid,omitempty"`
	PublicKeyFile      string `json:"public_key_file,omitempty"`
	PublicKeyB64URL    string `json:"public_key_b64url,omitempty"`
	SubjectExact       string `json:"subject_exact,omitempty"`
	SubjectPrefix      string `json:"subject_prefix,omitempty"`
	RequiredKeyBinding string `json:"required_key_binding,omitempty"`
	// KeyBinding and MaxKeyBinding go to the key's trust material entry
	// (SPEC §5.2) when set.
	KeyBinding    string `json:"key_binding,omitempty"`
	MaxKeyBinding string `json:"max_key_binding,omitempty"`

	pub ed25519.PublicKey // resolved by ParseAuthoring
}

// AuthoringRoute is a route and the clients it admits.
type AuthoringRoute struct {
	RouteID             string         `json:"route_id"`
	Method              string         `json:"method"`
	PathTemplate        string         `json:"path_template"`
	APIID               string         `json:"api_id"`
	Audience            string         `json:"audience,omitempty"`
	FreshnessClass      string         `json:"freshness_class,omitempty"`
	MaxStalenessSeconds *int64         `json:"max_staleness_seconds,omitempty"`
	RequiredKeyBinding  string         `json:"required_key_binding,omitempty"`
	Risk                string         `json:"risk,omitempty"`
	SignedHeaders       *SignedHeaders `json:"signed_headers,omitempty"`
	BodyHashFromGateway bool           `json:"body_hash_from_gateway,omitempty"`
	QueryStrict         bool           `json:"query_strict,omitempty"`
	AllowedClients      []string       `json:"allowed_clients"`
}

// SignedHeaders is a route's signed_headers (SPEC §5.3).
type SignedHeaders struct {
	Required []string `json:"required,omitempty"`
	Ignore   []string `json:"ignore,omitempty"`
}

// ParseAuthoring parses an authoring config and reads the public key files
// it names, relative to dir. Unknown and duplicate members are refused, and
// every problem found is reported (errors.Join), each naming its field.
func ParseAuthoring(data []byte, dir string) (*Authoring, error) {
	if _, err := parseDoc(data); err != nil { // duplicates, UTF-8, trailing data
		return nil, fmt.Errorf("bundleedit: authoring config: %w", err)
	}
	if errs := unknownMembers(data, reflect.TypeFor[Authoring]()); len(errs) > 0 {
		return nil, fmt.Errorf("bundleedit: authoring config:\n%w", errors.Join(errs...))
	}
	a := new(Authoring)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(a); err != nil {
		return nil, fmt.Errorf("bundleedit: authoring config: %w", err)
	}
	if err := a.resolve(dir); err != nil {
		return nil, fmt.Errorf("bundleedit: authoring config:\n%w", err)
	}
	a.resolved = true
	return a, nil
}

func (a *Authoring) resolve(dir string) error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if a.Version != AuthoringVersion {
		bad("version", "%q is not %q", a.Version, AuthoringVersion)
	}
	if a.TrustDomain == "" {
		bad("trust_domain", "required")
	}
	checkBinding := func(path, s string) {
		if _, ok := signerclass.Parse(s); s != "" && !ok {
			bad(path, "unknown key binding %q", s)
		}
	}
	checkBinding("default_required_key_binding", a.DefaultRequiredKeyBinding)
	if len(a.APIs) == 0 {
		bad("apis", "at least one API is required")
	}
	apis := map[string]bool{}
	for i, api := range a.APIs {
		p := fmt.Sprintf("apis[%d]", i)
		switch {
		case api.APIID == "":
			bad(p+".api_id", "required")
		case apis[api.APIID]:
			bad(p+".api_id", "duplicate %q", api.APIID)
		}
		apis[api.APIID] = true
		if api.Audience == "" {
			bad(p+".audience", "required")
		}
	}
	clients := map[string]bool{}
	for i := range a.Clients {
		c := &a.Clients[i]
		p := fmt.Sprintf("clients[%d]", i)
		switch {
		case c.Name == "":
			bad(p+".name", "required")
		case clients[c.Name]:
			bad(p+".name", "duplicate %q", c.Name)
		}
		clients[c.Name] = true
		if c.Issuer == "" {
			bad(p+".issuer", "required")
		}
		if c.TrustDomain == "" {
			c.TrustDomain = a.TrustDomain
		}
		if (c.SubjectExact == "") == (c.SubjectPrefix == "") {
			bad(p, "want exactly one of subject_exact and subject_prefix")
		}
		checkBinding(p+".required_key_binding", c.RequiredKeyBinding)
		checkBinding(p+".key_binding", c.KeyBinding)
		checkBinding(p+".max_key_binding", c.MaxKeyBinding)
		if err := c.readKey(dir); err != nil {
			bad(p, "%v", err)
		}
	}
	if len(a.Routes) == 0 {
		bad("routes", "at least one route is required")
	}
	for i, r := range a.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		for _, f := range []struct{ name, v string }{{"route_id", r.RouteID}, {"method", r.Method}, {"path_template", r.PathTemplate}} {
			if f.v == "" {
				bad(p+"."+f.name, "required")
			}
		}
		if !apis[r.APIID] {
			bad(p+".api_id", "no API %q in apis", r.APIID)
		}
		checkBinding(p+".required_key_binding", r.RequiredKeyBinding)
		if len(r.AllowedClients) == 0 {
			bad(p+".allowed_clients", "at least one client is required (a route nobody may call is refused)")
		}
		for j, name := range r.AllowedClients {
			if !clients[name] {
				bad(fmt.Sprintf("%s.allowed_clients[%d]", p, j), "no client %q in clients", name)
			}
		}
	}
	return errors.Join(errs...)
}

// readKey sets c.pub from public_key_file or public_key_b64url, and c.KID
// when empty.
func (c *AuthoringClient) readKey(dir string) error {
	switch {
	case (c.PublicKeyFile == "") == (c.PublicKeyB64URL == ""):
		return errors.New("want exactly one of public_key_file and public_key_b64url")
	case c.PublicKeyFile != "":
		path := c.PublicKeyFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		k, err := keyfile.ReadPublic(path)
		if err != nil {
			return err
		}
		c.pub = k.Key
		if c.KID == "" {
			c.KID = k.KID
		}
	default:
		b, err := base64.RawURLEncoding.Strict().DecodeString(c.PublicKeyB64URL)
		if err != nil || base64.RawURLEncoding.EncodeToString(b) != c.PublicKeyB64URL || len(b) != ed25519.PublicKeySize {
			return errors.New("public_key_b64url: not canonical unpadded base64url of 32 bytes")
		}
		c.pub = b
		if c.KID == "" {
			c.KID = keyfile.Thumbprint(c.pub)
		}
	}
	return nil
}

// Build turns a parsed authoring config into an unsigned policy bundle and
// unsigned trust material, both carrying sequence and issuedAt, and checks
// that each loads as its kind (unsigned). Sign them next.
func Build(a *Authoring, sequence int64, issuedAt time.Time) (policy, trust []byte, err error) {
	if !a.resolved {
		return nil, nil, errors.New("bundleedit: build: the authoring config did not come from ParseAuthoring")
	}
	if sequence < 0 || sequence > maxSequence {
		return nil, nil, fmt.Errorf("bundleedit: build: sequence %d out of range (0 to 2^53-1)", sequence)
	}
	seq := json.Number(strconv.FormatInt(sequence, 10))
	at := FormatTime(issuedAt)
	t, err := a.trustMaterial(seq, at)
	if err != nil {
		return nil, nil, fmt.Errorf("bundleedit: build: %w", err)
	}
	p := a.policy(seq, at)
	for _, d := range []struct {
		tree *object
		kind Kind
		dst  *[]byte
	}{{p, Policy, &policy}, {t, TrustMaterial, &trust}} {
		if err := checkShape(d.tree, d.kind); err != nil {
			return nil, nil, fmt.Errorf("bundleedit: build: %s: %w", d.kind, err)
		}
		if *d.dst, err = d.tree.encode(); err != nil {
			return nil, nil, fmt.Errorf("bundleedit: build: %s: %w", d.kind, err)
		}
	}
	return policy, trust, nil
}

func (c *AuthoringClient) sourceType() string {
	if c.SourceType == "" {
		return "software_jwks"
	}
	return c.SourceType
}

func (a *Authoring) trustMaterial(seq json.Number, at string) (*object, error) {
	var issuers []*object
	for _, c := range a.Clients {
		key := newObject("kid", c.KID, "alg", "EdDSA",
			"public_key_b64url", base64.RawURLEncoding.EncodeToString(c.pub), "status", "active")
		if c.KeyBinding != "" {
			key.set("key_binding", c.KeyBinding)
		}
		if c.MaxKeyBinding != "" {
			key.set("max_key_binding", c.MaxKeyBinding)
		}
		is := findIssuer(issuers, c.Issuer)
		if is == nil {
			is = newObject("issuer", c.Issuer, "trust_domain", c.TrustDomain, "source_type", c.sourceType())
			is.setObjects("keys", []*object{key})
			issuers = append(issuers, is)
			continue
		}
		if is.str("trust_domain") != c.TrustDomain || is.str("source_type") != c.sourceType() {
			return nil, fmt.Errorf("client %q: issuer %q has another client with trust domain %q and source type %q",
				c.Name, c.Issuer, is.str("trust_domain"), is.str("source_type"))
		}
		keys, _ := is.objects("keys", "")
		dup := false
		for _, k := range keys {
			if k.str("kid") == c.KID || k.str("public_key_b64url") == key.str("public_key_b64url") {
				if !k.equal(key) {
					return nil, fmt.Errorf("client %q: issuer %q has another client with kid %q or the same public key under another kid",
						c.Name, c.Issuer, c.KID)
				}
				dup = true // two clients (two subjects) on one key: one key entry
			}
		}
		if !dup {
			is.setObjects("keys", append(keys, key))
		}
	}
	t := newObject("version", bundle.TrustMaterialVersion, "kind", bundle.TrustMaterialKind,
		"sequence", seq, "issued_at", at)
	t.setObjects("issuers", issuers)
	return t, nil
}

func (a *Authoring) policy(seq json.Number, at string) *object {
	p := newObject("version", bundle.PolicyVersion, "kind", bundle.PolicyKind,
		"trust_domain", a.TrustDomain, "sequence", seq, "issued_at", at)
	var apis, groups []*object
	for _, api := range a.APIs {
		o := newObject("api_id", api.APIID, "audience", api.Audience)
		if api.BaseURL != "" {
			o.set("base_url", api.BaseURL)
		}
		apis = append(apis, o)
		var routes []*object
		for _, r := range a.Routes {
			if r.APIID == api.APIID {
				routes = append(routes, a.route(r))
			}
		}
		if len(routes) > 0 {
			g := newObject("route_group_id", api.APIID, "api_id", api.APIID)
			g.setObjects("routes", routes)
			groups = append(groups, g)
		}
	}
	p.setObjects("apis", apis)
	p.setObjects("route_groups", groups)
	p.set("default_required_key_binding", orDefault(a.DefaultRequiredKeyBinding, signerclass.Software.String()))
	p.set("default_freshness_class", orDefault(a.DefaultFreshnessClass, "realtime"))
	if a.DefaultMaxStalenessSeconds != nil {
		p.set("default_max_staleness_seconds", json.Number(strconv.FormatInt(*a.DefaultMaxStalenessSeconds, 10)))
	}
	p.set("revocations", []any{})
	return p
}

func (a *Authoring) route(r AuthoringRoute) *object {
	o := newObject("route_id", r.RouteID, "method", r.Method, "path_template", r.PathTemplate)
	if r.Audience != "" {
		o.set("audience", r.Audience)
	}
	if r.Risk != "" {
		o.set("risk", r.Risk)
	}
	if r.RequiredKeyBinding != "" {
		o.set("required_key_binding", r.RequiredKeyBinding)
	}
	if r.FreshnessClass != "" {
		o.set("freshness_class", r.FreshnessClass)
	}
	if r.MaxStalenessSeconds != nil {
		o.set("max_staleness_seconds", json.Number(strconv.FormatInt(*r.MaxStalenessSeconds, 10)))
	}
	if sh := r.SignedHeaders; sh != nil && len(sh.Required)+len(sh.Ignore) > 0 {
		h := new(object)
		if len(sh.Required) > 0 {
			h.set("required", strs(sh.Required))
		}
		if len(sh.Ignore) > 0 {
			h.set("ignore", strs(sh.Ignore))
		}
		o.set("signed_headers", h)
	}
	if r.BodyHashFromGateway {
		o.set("body_hash_from_gateway", true)
	}
	if r.QueryStrict {
		o.set("query_strict", true)
	}
	var srcs []*object
	for _, name := range r.AllowedClients {
		i := slices.IndexFunc(a.Clients, func(c AuthoringClient) bool { return c.Name == name })
		c := a.Clients[i] // resolve checked every name
		subj := Subject{Exact: c.SubjectExact, Prefix: c.SubjectPrefix}
		n, v := subj.member()
		s := newObject("source_type", c.sourceType(), "issuer", c.Issuer, "trust_domain", c.TrustDomain,
			n, v, "required_key_binding", orDefault(c.RequiredKeyBinding, signerclass.Software.String()))
		if !slices.ContainsFunc(srcs, s.equal) {
			srcs = append(srcs, s)
		}
	}
	o.setObjects("allowed_sources", srcs)
	return o
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func strs(ss []string) []any {
	a := make([]any, len(ss))
	for i, s := range ss {
		a[i] = s
	}
	return a
}
