package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/bundlefile"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/nodeaudit"
	"github.com/tpcluster/tpcluster/internal/telemetry"
)

// bundleSource is where a node's (trust material, policy) pair comes from:
// files (bundlefile) or the NATS bundle channel (bundlekv), SPEC §10.1.
type bundleSource interface {
	// Snapshot returns the current pair, nil while none is loaded.
	Snapshot() *core.Snapshot
	// Run keeps the pair current until ctx is done.
	Run(ctx context.Context) error
}

// bundlesFromNATS reports whether bundles come from the bucket: the default
// whenever no files are named (SPEC §10.1).
func (c *Config) bundlesFromNATS() bool { return c.TrustMaterial == "" && c.PolicyBundle == "" }

// newBundleSource builds the node's bundle source.
// egressCheck, if not nil, refuses a policy naming an egress provider the
// node cannot authenticate to. onTrust is called (from the source's
// goroutine; it must not block) after a trust material was applied.
func newBundleSource(cfg *Config, js jetstream.JetStream, keys []bundle.VerifyKey, egressCheck func(*bundle.EgressProvider) error, onTrust func(), nodeID string, log *slog.Logger, tel *telemetry.Providers, aud *nodeaudit.Auditor) (bundleSource, error) {
	opts := bundle.Options{AllowUnsigned: cfg.DevAllowUnsigned, Keys: keys, EgressCheck: egressCheck}
	if !cfg.bundlesFromNATS() {
		return bundlefile.New(bundlefile.Config{
			TrustMaterial: cfg.TrustMaterial,
			PolicyBundle:  cfg.PolicyBundle,
			Options:       opts,
			Interval:      cfg.ReloadInterval,
			Logger:        log.With("component", "bundles"),
			OnApply: func(s *bundle.Snapshot) {
				aud.OnFileApply(s)
				onTrust() // a pair: the trust material may have changed
			},
			OnReject: aud.OnFileReject,
		})
	}
	beaconKeys, err := readBeaconKeys(cfg.BeaconPublicKeys)
	if err != nil {
		return nil, err
	}
	w, err := bundlekv.NewWatcher(bundlekv.WatcherConfig{
		JetStream:         js,
		Replicas:          cfg.BundleReplicas,
		NoCreate:          cfg.locked(), // issue 12: the admin role creates it
		Options:           opts,
		BeaconKeys:        beaconKeys,
		CacheDir:          filepath.Join(cfg.DataDir, "bundles"),
		NodeID:            nodeID,
		RealtimeWindow:    cfg.RealtimeWindow,
		ReconcileInterval: cfg.BundleReconcile,
		Logger:            log.With("component", "bundles"),
		MeterProvider:     tel.Meter,
		// The bundle_applied and bundle_rejected audit events (SPEC §8.2).
		OnApply: func(ap bundlekv.Applied) {
			aud.OnKVApply(ap)
			if ap.Kind == bundlekv.KindTrustMaterial {
				onTrust()
			}
		},
		OnReject: aud.OnKVReject,
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func readBeaconKeys(paths []string) ([]bundle.BeaconVerifyKey, error) {
	var keys []bundle.BeaconVerifyKey
	for _, p := range paths {
		k, err := keyfile.ReadPublic(p)
		if err != nil {
			return nil, fmt.Errorf("--beacon-public-key %s: %w", p, err)
		}
		keys = append(keys, bundle.NewBeaconVerifyKey(k))
	}
	return keys, nil
}

func readBundleKeys(paths []string) ([]bundle.VerifyKey, error) {
	var keys []bundle.VerifyKey
	for _, p := range paths {
		k, err := keyfile.ReadPublic(p)
		if err != nil {
			return nil, fmt.Errorf("--bundle-public-key %s: %w", p, err)
		}
		keys = append(keys, bundle.NewVerifyKey(k))
	}
	return keys, nil
}
