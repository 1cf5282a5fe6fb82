package main

import (
	"context"
	"fmt"
	"io"

	"github.com/tpcluster/tpcluster/internal/keyfile"
)

type keygenConfig struct {
	Out string
	KID string
}

func parseKeygen(args []string, stderr io.Writer) (*keygenConfig, error) {
	c := new(keygenConfig)
	fs := newFlagSet("keygen", "--out NAME [--kid KID]",
		"Writes a new Ed25519 key: NAME.key (mode 0600, the private seed) and NAME.pub\n"+
			"(mode 0644), trustplane-key-v1 (SPEC §10.3). Existing files are never overwritten.\n", stderr)
	fs.StringVar(&c.Out, "out", "", "base name of the key files (required)")
	fs.StringVar(&c.KID, "kid", "", "key id (default: the public key's RFC 7638 thumbprint)")
	if err := parseFlags(fs, args, false); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// Validate reports every problem.
func (c *keygenConfig) Validate() error {
	var p problems
	p.required("out", c.Out)
	return p.err()
}

func runKeygen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseKeygen(args, stderr)
	if err != nil {
		return err
	}
	k, err := keyfile.Generate(c.KID)
	if err != nil {
		return err
	}
	if err := k.Write(c.Out); err != nil { // refuses to overwrite either file
		return err
	}
	fmt.Fprintf(stdout, "kid %s\nprivate key %s.key (0600: keep it off publishing hosts)\npublic key %s.pub\n", k.KID(), c.Out, c.Out)
	return nil
}
