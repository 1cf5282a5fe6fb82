package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/cliflag"
)

// gatherFlags is `tpaudit gather --regions eu,us`: create or update the
// global stream (--stream, default TRUSTPLANE_AUDIT) so that it sources
// every named region's stream (docs/MULTI-REGION.md). Run it once, and
// again when a region joins.
func gatherFlags(fs *flag.FlagSet) func(ctx context.Context, c *client, out io.Writer) (int, error) {
	var regions cliflag.List
	fs.Var(&regions, "regions", "regions whose audit streams to gather (comma list, repeatable)")
	base := fs.String("base", audit.DefaultStream, "regional streams' base name (verifierd --audit-stream)")
	replicas := fs.Int("replicas", 1, "global stream replicas")
	cluster := fs.String("cluster", "", "NATS cluster to place the global stream in (empty: the server chooses)")
	maxAge := fs.Duration("max-age", 30*24*time.Hour, "global stream retention by age")
	maxBytes := fs.Int64("max-bytes", 10<<30, "global stream retention by size (-1: unlimited)")
	return func(ctx context.Context, c *client, out io.Writer) (int, error) {
		if len(regions) == 0 {
			return exitUsage, errors.New("--regions: name at least one region")
		}
		for _, r := range regions {
			if !bundle.ValidRegion(r) {
				return exitUsage, fmt.Errorf("--regions: %q is not a region name", r)
			}
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err := audit.EnsureGlobalStream(ctx, c.js, audit.GlobalConfig{
			Name: c.stream, Regions: regions, Base: *base,
			Replicas: *replicas, Cluster: *cluster, MaxAge: *maxAge, MaxBytes: *maxBytes,
		})
		if err != nil {
			return 1, err
		}
		for _, r := range regions {
			fmt.Fprintf(out, "%s sources %s\n", c.stream, audit.RegionStream(*base, r))
		}
		return 0, nil
	}
}
