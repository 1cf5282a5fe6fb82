package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundleedit"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

type signConfig struct {
	Key      string
	In       string
	Out      string
	Issuer   string
	Sequence optionalInt
	IssuedAt string

	issuedAt *time.Time // from IssuedAt, by Validate
}

func parseSign(args []string, stderr io.Writer, now time.Time) (*signConfig, error) {
	c := new(signConfig)
	fs := newFlagSet("sign", "--key NAME.key --in F --out F [--issuer ISS] [--sequence N] [--issued-at now|RFC3339]",
		"Signs a policy bundle or trust material (the kind comes from its version and kind):\n"+
			"sets signed_by and signature (SPEC §5.4), checks that the result loads with the key's\n"+
			"public half, and writes it atomically. sequence and issued_at change only when\n"+
			"--sequence or --issued-at is given; a sequence below the document's is refused.\n"+
			"A .key file group or others may read is refused.\n", stderr)
	fs.StringVar(&c.Key, "key", "", "bundle-signing private key file, NAME.key (required)")
	fs.StringVar(&c.In, "in", "", "document to sign (required)")
	fs.StringVar(&c.Out, "out", "", "where to write the signed document (required; may equal --in)")
	fs.StringVar(&c.Issuer, "issuer", bundleedit.DefaultSignedByIssuer, "signed_by.issuer")
	fs.Var(&c.Sequence, "sequence", "set sequence to N (default: keep the document's)")
	fs.StringVar(&c.IssuedAt, "issued-at", "", `set issued_at: "now" or an RFC 3339 time (default: keep the document's)`)
	if err := parseFlags(fs, args, false); err != nil {
		return nil, err
	}
	return c, c.validate(now)
}

func (c *signConfig) validate(now time.Time) error {
	var p problems
	p.required("key", c.Key)
	p.required("in", c.In)
	p.required("out", c.Out)
	p.required("issuer", c.Issuer)
	if c.Sequence.set {
		checkSequence(&p, "sequence", c.Sequence.v)
	}
	if c.IssuedAt != "" {
		t, err := parseIssuedAt(c.IssuedAt, now)
		if err != nil {
			p.add("issued-at", c.IssuedAt, err.Error())
		} else {
			c.issuedAt = &t
		}
	}
	return p.err()
}

func runSign(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseSign(args, stderr, time.Now())
	if err != nil {
		return err
	}
	key, err := keyfile.ReadPrivate(c.Key) // refuses a group- or world-readable file
	if err != nil {
		return err
	}
	doc, err := readDocument(c.In)
	if err != nil {
		return err
	}
	o := bundleedit.SignOptions{Issuer: c.Issuer, Header: bundleedit.Header{IssuedAt: c.issuedAt}}
	if c.Sequence.set {
		o.Header.Sequence = &c.Sequence.v
	}
	signed, s, err := bundleedit.Sign(doc, key, o)
	if err != nil {
		return err
	}
	if err := writeAtomic(c.Out, signed, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %s: kid %s, sequence %d, issued_at %s, sha256 %s -> %s\n",
		s.Kind, s.KID, s.Sequence, bundleedit.FormatTime(s.IssuedAt), s.SHA256, c.Out)
	return nil
}
