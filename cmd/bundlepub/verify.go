package main

import (
	"context"
	"fmt"
	"io"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/bundleedit"
	"github.com/tpcluster/tpcluster/internal/cliflag"
)

type verifyConfig struct {
	BundlePublicKeys cliflag.List
	Files            []string
}

func parseVerify(args []string, stderr io.Writer) (*verifyConfig, error) {
	c := new(verifyConfig)
	fs := newFlagSet("verify", "--bundle-public-key NAME.pub [--bundle-public-key ...] FILE...",
		"Checks each file as a verifier would: the signature verifies with one of the keys and\n"+
			"the document loads as its kind. Prints one line per file; exits 0 only when every\n"+
			"file passes, 1 otherwise. Unsigned documents fail.\n", stderr)
	fs.Var(&c.BundlePublicKeys, "bundle-public-key", "accepted bundle-signing public key file, NAME.pub (repeatable; required)")
	if err := parseFlags(fs, args, true); err != nil {
		return nil, err
	}
	c.Files = fs.Args()
	return c, c.Validate()
}

// Validate reports every problem.
func (c *verifyConfig) Validate() error {
	var p problems
	if len(c.BundlePublicKeys) == 0 {
		p.add("bundle-public-key", "", "at least one key is required")
	}
	if len(c.Files) == 0 {
		p = append(p, fmt.Errorf("no FILE given: name the documents to verify"))
	}
	return p.err()
}

// verifyFailed is verify's result when a file did not pass; each file's
// reason is already printed.
type verifyFailed struct{ failed, total int }

func (e *verifyFailed) Error() string {
	return fmt.Sprintf("%d of %d files did not verify", e.failed, e.total)
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseVerify(args, stderr)
	if err != nil {
		return err
	}
	keys, err := readVerifyKeys(c.BundlePublicKeys)
	if err != nil {
		return err
	}
	failed := 0
	for _, f := range c.Files {
		s, err := verifyFile(f, keys)
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "%s: FAIL: %v\n", f, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: %s, sequence %d, issued_at %s, kid %s, sha256 %s: OK\n",
			f, s.Kind, s.Sequence, bundleedit.FormatTime(s.IssuedAt), s.KID, s.SHA256)
	}
	if failed > 0 {
		return &verifyFailed{failed, len(c.Files)}
	}
	return nil
}

func verifyFile(path string, keys []bundle.VerifyKey) (*bundleedit.Summary, error) {
	doc, err := readDocument(path)
	if err != nil {
		return nil, err
	}
	return bundleedit.Check(doc, bundle.Options{Keys: keys})
}
