package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/tpcluster/tpcluster/internal/bundleedit"
	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// editFiles are the flags merge-source and remove-source share.
type editFiles struct {
	Policy, Trust       string
	OutPolicy, OutTrust string
}

func (f *editFiles) register(fs *flag.FlagSet) {
	fs.StringVar(&f.Policy, "policy", "", "policy bundle to edit (required)")
	fs.StringVar(&f.Trust, "trust", "", "trust material to edit (required)")
	fs.StringVar(&f.OutPolicy, "out-policy", "", "where to write the edited policy bundle (required; may equal --policy)")
	fs.StringVar(&f.OutTrust, "out-trust", "", "where to write the edited trust material (required; may equal --trust)")
}

func (f *editFiles) validate(p *problems) {
	p.required("policy", f.Policy)
	p.required("trust", f.Trust)
	p.required("out-policy", f.OutPolicy)
	p.required("out-trust", f.OutTrust)
	if f.OutPolicy != "" && filepath.Clean(f.OutPolicy) == filepath.Clean(f.OutTrust) {
		p.add("out-trust", f.OutTrust, "must differ from --out-policy")
	}
}

func (f *editFiles) read() (policy, trust []byte, err error) {
	if policy, err = readDocument(f.Policy); err != nil {
		return nil, nil, err
	}
	if trust, err = readDocument(f.Trust); err != nil {
		return nil, nil, err
	}
	return policy, trust, nil
}

// write writes both documents and says what changed and what to do next.
func (f *editFiles) write(r *bundleedit.Result, stdout io.Writer) error {
	if err := writeAtomic(f.OutPolicy, r.Policy, 0o644); err != nil {
		return err
	}
	if err := writeAtomic(f.OutTrust, r.Trust, 0o644); err != nil {
		return err
	}
	for _, c := range r.Changes {
		fmt.Fprintln(stdout, c)
	}
	for _, d := range []struct {
		kind    bundleedit.Kind
		changed bool
		seq     int64
		out     string
	}{{bundleedit.Policy, r.PolicyChanged, r.PolicySequence, f.OutPolicy}, {bundleedit.TrustMaterial, r.TrustChanged, r.TrustSequence, f.OutTrust}} {
		if d.changed {
			fmt.Fprintf(stdout, "%s -> %s: UNSIGNED; sign it with a higher sequence before publishing: bundlepub sign --sequence %d (or higher) --issued-at now\n",
				d.kind, d.out, d.seq+1)
		} else {
			fmt.Fprintf(stdout, "%s -> %s: unchanged, copied as is\n", d.kind, d.out)
		}
	}
	return nil
}

type mergeConfig struct {
	editFiles
	Issuer, TrustDomain, SourceType string
	KID                             string
	PublicKey, PublicKeyB64         string
	SubjectExact, SubjectPrefix     string
	Routes                          cliflag.List
	RequiredKeyBinding              string
	KeyBinding, MaxKeyBinding       string
	ReplaceExisting                 bool
}

func parseMerge(args []string, stderr io.Writer) (*mergeConfig, error) {
	c := new(mergeConfig)
	fs := newFlagSet("merge-source",
		"--policy F --trust F --issuer ISS --trust-domain TD [--kid KID] --public-key NAME.pub|--public-key-b64 X "+
			"--subject-exact S|--subject-prefix P --route ROUTE_ID [--route ...] [--required-key-binding software] "+
			"[--key-binding CLASS] [--max-key-binding CLASS] "+
			"[--replace-existing] --out-policy F --out-trust F",
		"Adds a client: its key to the trust material (and the issuer, if new) and a source rule\n"+
			"admitting it to each named route. Everything else is kept, member order included.\n"+
			"A kid the issuer already has, or a different rule for the same issuer, trust domain and\n"+
			"subject in a route, is refused unless --replace-existing. Changed outputs are UNSIGNED:\n"+
			"sign them with a higher --sequence.\n", stderr)
	c.editFiles.register(fs)
	fs.StringVar(&c.Issuer, "issuer", "", "the client's passport issuer, iss (required)")
	fs.StringVar(&c.TrustDomain, "trust-domain", "", "the client's trust_domain (required)")
	fs.StringVar(&c.SourceType, "source-type", "", "source type of a new issuer: software_jwks, oidc_jwks or spiffe_spire (default: the issuer's, else software_jwks)")
	fs.StringVar(&c.KID, "kid", "", "the key's kid in the trust material (default: the key file's kid, else the thumbprint)")
	fs.StringVar(&c.PublicKey, "public-key", "", "the client's public key file, NAME.pub")
	fs.StringVar(&c.PublicKeyB64, "public-key-b64", "", "the client's public key, unpadded base64url of 32 bytes")
	fs.StringVar(&c.SubjectExact, "subject-exact", "", "admit passports whose sub is exactly this")
	fs.StringVar(&c.SubjectPrefix, "subject-prefix", "", "admit passports whose sub starts with this")
	fs.Var(&c.Routes, "route", "route_id to admit the client to (repeatable; required)")
	fs.StringVar(&c.RequiredKeyBinding, "required-key-binding", "software", "the source rule's minimum signer class")
	fs.StringVar(&c.KeyBinding, "key-binding", "", "the key entry's key_binding: the class vouched for when the key signs its own passports (default: none, read as software)")
	fs.StringVar(&c.MaxKeyBinding, "max-key-binding", "", "the key entry's max_key_binding: the highest class the key may attest for other keys (default: none, no cap)")
	fs.BoolVar(&c.ReplaceExisting, "replace-existing", false, "replace the issuer's key with the same kid and a route's rule for the same subject")
	if err := parseFlags(fs, args, false); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// Validate reports every problem.
func (c *mergeConfig) Validate() error {
	var p problems
	c.editFiles.validate(&p)
	p.required("issuer", c.Issuer)
	p.required("trust-domain", c.TrustDomain)
	if (c.PublicKey == "") == (c.PublicKeyB64 == "") {
		p.add("public-key", c.PublicKey, "give exactly one of --public-key and --public-key-b64")
	}
	if c.PublicKeyB64 != "" {
		if b, err := base64.RawURLEncoding.Strict().DecodeString(c.PublicKeyB64); err != nil ||
			base64.RawURLEncoding.EncodeToString(b) != c.PublicKeyB64 || len(b) != ed25519.PublicKeySize {
			p.add("public-key-b64", c.PublicKeyB64, "want canonical unpadded base64url of 32 bytes")
		}
	}
	if (c.SubjectExact == "") == (c.SubjectPrefix == "") {
		p.add("subject-exact", c.SubjectExact, "give exactly one of --subject-exact and --subject-prefix")
	}
	if len(c.Routes) == 0 {
		p.add("route", "", "name at least one route")
	}
	if _, ok := signerclass.Parse(c.RequiredKeyBinding); !ok {
		p.add("required-key-binding", c.RequiredKeyBinding, "want software, remote_kms, hardware_local or attested_workload")
	}
	for _, f := range []struct{ name, v string }{{"key-binding", c.KeyBinding}, {"max-key-binding", c.MaxKeyBinding}} {
		if _, ok := signerclass.Parse(f.v); f.v != "" && !ok {
			p.add(f.name, f.v, "want software, remote_kms, hardware_local or attested_workload")
		}
	}
	switch c.SourceType {
	case "", "software_jwks", "oidc_jwks", "spiffe_spire":
	default:
		p.add("source-type", c.SourceType, "want software_jwks, oidc_jwks or spiffe_spire")
	}
	return p.err()
}

// client resolves the key flags into the client to admit.
func (c *mergeConfig) client() (bundleedit.Client, error) {
	cl := bundleedit.Client{
		Issuer: c.Issuer, TrustDomain: c.TrustDomain, SourceType: c.SourceType, KID: c.KID,
		Subject:            bundleedit.Subject{Exact: c.SubjectExact, Prefix: c.SubjectPrefix},
		RequiredKeyBinding: c.RequiredKeyBinding,
		KeyBinding:         c.KeyBinding, MaxKeyBinding: c.MaxKeyBinding,
	}
	if c.PublicKey != "" {
		k, err := keyfile.ReadPublic(c.PublicKey)
		if err != nil {
			return cl, err
		}
		cl.PublicKey = k.Key
		if cl.KID == "" {
			cl.KID = k.KID
		}
		return cl, nil
	}
	cl.PublicKey, _ = base64.RawURLEncoding.DecodeString(c.PublicKeyB64) // checked by Validate
	if cl.KID == "" {
		cl.KID = keyfile.Thumbprint(cl.PublicKey)
	}
	return cl, nil
}

func runMergeSource(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseMerge(args, stderr)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	policy, trust, err := c.read()
	if err != nil {
		return err
	}
	r, err := bundleedit.MergeSource{Client: cl, Routes: c.Routes, ReplaceExisting: c.ReplaceExisting}.Apply(policy, trust)
	if err != nil {
		return err
	}
	return c.write(r, stdout)
}

type removeConfig struct {
	editFiles
	Issuer, KID                 string
	SubjectExact, SubjectPrefix string
	Routes                      cliflag.List
	ConfirmRemove               bool
}

func parseRemove(args []string, stderr io.Writer) (*removeConfig, error) {
	c := new(removeConfig)
	fs := newFlagSet("remove-source",
		"--policy F --trust F --issuer ISS --kid KID [--subject-exact S|--subject-prefix P] [--route ROUTE_ID ...] "+
			"--confirm-remove --out-policy F --out-trust F",
		`Removes a client: the issuer's key KID (and the issuer, if it has no key left) and the
source rules that admitted it. Rules removed: those of the issuer, with exactly the given
subject selector if one is given, in the named routes (every route if none is named).
With no route and no subject named, while the issuer keeps other keys, no rule is
removed (a key rotation). Refused: a named route without such a rule, a route left with
no allowed sources, and an issuer left without keys while rules for it remain.
Changed outputs are UNSIGNED: sign them with a higher --sequence.
`, stderr)
	c.editFiles.register(fs)
	fs.StringVar(&c.Issuer, "issuer", "", "the issuer whose key is removed (required)")
	fs.StringVar(&c.KID, "kid", "", "the kid to remove (required)")
	fs.StringVar(&c.SubjectExact, "subject-exact", "", "remove only rules with this subject_exact")
	fs.StringVar(&c.SubjectPrefix, "subject-prefix", "", "remove only rules with this subject_prefix")
	fs.Var(&c.Routes, "route", "remove rules from this route only (repeatable)")
	fs.BoolVar(&c.ConfirmRemove, "confirm-remove", false, "required: the removal is meant")
	if err := parseFlags(fs, args, false); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// Validate reports every problem.
func (c *removeConfig) Validate() error {
	var p problems
	c.editFiles.validate(&p)
	p.required("issuer", c.Issuer)
	p.required("kid", c.KID)
	if c.SubjectExact != "" && c.SubjectPrefix != "" {
		p.add("subject-prefix", c.SubjectPrefix, "give at most one of --subject-exact and --subject-prefix")
	}
	if !c.ConfirmRemove {
		p.add("confirm-remove", false, "remove-source deletes a key and source rules; give --confirm-remove")
	}
	return p.err()
}

func runRemoveSource(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseRemove(args, stderr)
	if err != nil {
		return err
	}
	policy, trust, err := c.read()
	if err != nil {
		return err
	}
	r, err := bundleedit.RemoveSource{
		Issuer: c.Issuer, KID: c.KID, Routes: c.Routes,
		Subject: bundleedit.Subject{Exact: c.SubjectExact, Prefix: c.SubjectPrefix},
	}.Apply(policy, trust)
	if err != nil {
		return err
	}
	return c.write(r, stdout)
}
