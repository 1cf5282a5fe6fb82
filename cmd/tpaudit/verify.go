package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// maxTrustBytes bounds a trust material read for its audit_nodes.
const maxTrustBytes = 4 << 20

func verifyFlags(fs *flag.FlagSet) func(context.Context, *client, io.Writer) (int, error) {
	truncated := fs.Bool("allow-truncated-head", false, "accept chains that start after node_seq 1 even when the stream's state does not show retention (old messages removed on purpose)")
	var bundleKeys cliflag.List
	fs.Var(&bundleKeys, "bundle-public-key", "bundle-signing public key file that signs the trust material (repeatable; required)")
	trustPath := fs.String("trust-material", "", "signed trust material file listing audit_nodes (default: the one published in --bundle-bucket)")
	bucket := fs.String("bundle-bucket", bundlekv.DefaultBucket, "KV bucket the trust material is read from when --trust-material is not given")
	maxAge := fs.Duration("checkpoint-max-age", 0, "fail when an active node's newest checkpoint is older than this (0: not checked; a cron that runs verify sets it, e.g. 10m)")
	unsignedBefore := fs.Uint64("unsigned-before", 0, "events stored before this stream sequence need no signature (the history from before the nodes had --audit-key)")
	slack := fs.Duration("retention-slack", audit.DefaultRetentionSlack, "how much younger than max_age the oldest message left after an age trim may be (at least the nodes' checkpoint interval)")
	return func(ctx context.Context, c *client, out io.Writer) (int, error) {
		if len(bundleKeys) == 0 {
			return exitUsage, errors.New("--bundle-public-key: the trust material that lists the fleet's audit keys must be verified")
		}
		members, source, err := fleet(ctx, c, bundleKeys, *trustPath, *bucket)
		if err != nil {
			return 1, err
		}
		fmt.Fprintf(out, "fleet: %d audit keys from %s\n", len(members), source)
		r, err := audit.VerifyStream(ctx, c.js, audit.VerifyConfig{
			Stream:             c.stream,
			Members:            members,
			RetentionSlack:     *slack,
			CheckpointMaxAge:   *maxAge,
			AllowTruncatedHead: *truncated,
			UnsignedBefore:     *unsignedBefore,
		})
		if err != nil {
			return 1, err
		}
		if r.Retention.Why != "" {
			fmt.Fprintf(out, "retention: %s\n", r.Retention.Why)
		}
		for _, nc := range r.Nodes {
			fmt.Fprintf(out, "node %q: %d events, node_seq %d..%d, %d checkpoints (newest vouches for node_seq %d)", nc.NodeID, nc.Events, nc.First, nc.Last, nc.Checkpoints, nc.CheckpointSeq)
			if nc.Reordered > 0 {
				// A stream leader change in the middle of a window of
				// publishes; the chain is checked in node_seq order.
				fmt.Fprintf(out, " (%d stored out of node_seq order)", nc.Reordered)
			}
			if !nc.Member {
				fmt.Fprint(out, " NOT A FLEET MEMBER")
			}
			fmt.Fprintln(out)
		}
		for _, p := range r.Problems {
			fmt.Fprintf(out, "PROBLEM %s\n", p)
		}
		if len(r.Problems) > 0 {
			fmt.Fprintf(out, "%d messages, %d problems: the stream is not a whole record\n", r.Messages, len(r.Problems))
			return exitProblems, nil
		}
		fmt.Fprintf(out, "%d messages, every chain whole, every event signed by a fleet member, every checkpoint's events present\n", r.Messages)
		return 0, nil
	}
}

// fleet reads the audit_nodes of the trust material (a file, else the
// published one) after verifying its signature with keyPaths.
func fleet(ctx context.Context, c *client, keyPaths []string, path, bucket string) ([]audit.Member, string, error) {
	var keys []bundle.VerifyKey
	for _, p := range keyPaths {
		k, err := keyfile.ReadPublic(p)
		if err != nil {
			return nil, "", fmt.Errorf("--bundle-public-key %s: %w", p, err)
		}
		keys = append(keys, bundle.NewVerifyKey(k))
	}
	var data []byte
	source := path
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, "", fmt.Errorf("--trust-material: %w", err)
		}
		defer f.Close()
		if data, err = io.ReadAll(io.LimitReader(f, maxTrustBytes+1)); err != nil {
			return nil, "", fmt.Errorf("--trust-material: %w", err)
		}
		if len(data) > maxTrustBytes {
			return nil, "", fmt.Errorf("--trust-material %s: larger than %d bytes", path, maxTrustBytes)
		}
	} else {
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		kv, err := c.js.KeyValue(gctx, bucket)
		if err != nil {
			return nil, "", fmt.Errorf("bundle bucket %s (or give --trust-material): %w", bucket, err)
		}
		e, err := kv.Get(gctx, bundlekv.KeyTrustMaterial)
		if err != nil {
			return nil, "", fmt.Errorf("bundle bucket %s key %s: %w", bucket, bundlekv.KeyTrustMaterial, err)
		}
		data = e.Value()
		source = fmt.Sprintf("%s/%s revision %d", bucket, bundlekv.KeyTrustMaterial, e.Revision())
	}
	tm, err := bundle.ParseTrustMaterial(data, bundle.Options{Keys: keys})
	if err != nil {
		return nil, "", err
	}
	source += fmt.Sprintf(" (sequence %d)", tm.Sequence)
	members := make([]audit.Member, 0, len(tm.AuditNodes))
	for _, n := range tm.AuditNodes {
		members = append(members, audit.Member{NodeID: n.NodeID, PublicKey: n.PublicKey, Active: n.Active})
	}
	return members, source, nil
}
