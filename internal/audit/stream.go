package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultStream is the audit stream's name (SPEC §9).
const DefaultStream = "TRUSTPLANE_AUDIT"

// DefaultMaxBytes bounds the stream when StreamConfig.MaxBytes is zero:
// 512 MiB. JetStream reserves a stream's max bytes on each replica's
// server and refuses the stream if that exceeds the server's
// max_file_store; this fits the smallest shipped server (1G, deploy/nats)
// with half left for the ledger and bundles.
const DefaultMaxBytes = 512 << 20

// DuplicateWindow is the stream's duplicate window (SPEC §9): a resent event
// (same Nats-Msg-Id) within it is acknowledged without being stored again.
const DuplicateWindow = 2 * time.Minute

// StreamConfig describes the audit stream. Zero values are documented per
// field.
type StreamConfig struct {
	// Name of the stream. If empty, DefaultStream.
	Name string
	// Replicas; 3 in a cluster. If zero, 1.
	Replicas int
	// MaxAge is how long events are kept. If zero, 30 days.
	MaxAge time.Duration
	// MaxBytes bounds the stream; the oldest events go first. If zero,
	// DefaultMaxBytes; -1 means unlimited.
	MaxBytes int64
	// Region, if set, makes this the region's stream: it listens on
	// RegionSubjectPrefix(Region) and, with Cluster set, is placed in that
	// NATS cluster (docs/MULTI-REGION.md).
	Region string
	// Cluster places the stream in a NATS cluster. If empty, the server
	// places it.
	Cluster string
	// NoCreate makes EnsureStream only look the stream up and check it: a
	// missing stream is an error. Verifier nodes holding the verifier
	// role's credentials set it; the admin role creates streams
	// (docs/NATS-SECURITY.md).
	NoCreate bool
}

// subjectPrefix is what the stream listens on.
func (c StreamConfig) subjectPrefix() string {
	if c.Region != "" {
		return RegionSubjectPrefix(c.Region)
	}
	return SubjectPrefix
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Name == "" {
		c.Name = DefaultStream
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = 30 * 24 * time.Hour
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	return c
}

func (c StreamConfig) jetstream() jetstream.StreamConfig {
	var placement *jetstream.Placement
	if c.Cluster != "" {
		placement = &jetstream.Placement{Cluster: c.Cluster}
	}
	return jetstream.StreamConfig{
		Name:        c.Name,
		Description: "tpcluster audit events (SPEC §9)",
		Subjects:    []string{c.subjectPrefix() + ">"},
		Placement:   placement,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		Replicas:    c.Replicas,
		Duplicates:  DuplicateWindow,
		// Issue 12: events leave only by the retention limits, never by
		// a delete or a purge, whoever asks. The server refuses to turn
		// either off again.
		DenyDelete: true,
		DenyPurge:  true,
	}
}

// EnsureStream creates the audit stream, or, if it exists (another node
// started first, SPEC §10.1), checks the configuration that decides
// correctness: the subjects, file storage and the duplicate window. Limits
// and replicas that differ from cfg are logged and kept, since an operator
// may have tuned them.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig, logger *slog.Logger) error {
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	want := cfg.jetstream()
	if !cfg.NoCreate {
		_, err := js.CreateStream(ctx, want)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("audit: create stream %s: %w", cfg.Name, err)
		}
	}
	st, err := js.Stream(ctx, cfg.Name)
	if cfg.NoCreate && errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("audit: stream %s: %w (the admin role creates it: tpnats setup, docs/NATS-SECURITY.md)", cfg.Name, err)
	}
	if err != nil {
		return fmt.Errorf("audit: stream %s: %w", cfg.Name, err)
	}
	have := st.CachedInfo().Config
	var errs []error
	if !slices.Contains(have.Subjects, cfg.subjectPrefix()+">") {
		errs = append(errs, fmt.Errorf("subjects %q do not include %s>", have.Subjects, cfg.subjectPrefix()))
	}
	if have.Storage != jetstream.FileStorage {
		errs = append(errs, fmt.Errorf("storage %s, want file", have.Storage))
	}
	if have.Duplicates < DuplicateWindow {
		errs = append(errs, fmt.Errorf("duplicate window %s, want at least %s", have.Duplicates, DuplicateWindow))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("audit: existing stream %s: %w", cfg.Name, err)
	}
	if !have.DenyDelete || !have.DenyPurge {
		logger.Warn("audit stream allows deleting or purging events; lock it with tpnats setup (docs/NATS-SECURITY.md)",
			"stream", cfg.Name, "deny_delete", have.DenyDelete, "deny_purge", have.DenyPurge)
	}
	if have.Replicas != want.Replicas || have.MaxAge != want.MaxAge || have.MaxBytes != want.MaxBytes {
		logger.Warn("audit stream exists with other limits; using it as it is",
			"stream", cfg.Name, "replicas", have.Replicas, "max_age", have.MaxAge, "max_bytes", have.MaxBytes)
	}
	return nil
}

// LockStream sets deny_delete and deny_purge on an existing stream that
// lacks them (a stream made before issue 12). Only the admin role may
// update a stream. The server never lets either be turned off again.
func LockStream(ctx context.Context, js jetstream.JetStream, name string) (changed bool, err error) {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return false, fmt.Errorf("audit: stream %s: %w", name, err)
	}
	cfg := st.CachedInfo().Config
	if cfg.DenyDelete && cfg.DenyPurge {
		return false, nil
	}
	cfg.DenyDelete, cfg.DenyPurge = true, true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return false, fmt.Errorf("audit: lock stream %s: %w", name, err)
	}
	return true, nil
}

// GlobalConfig describes the global audit stream of a multi-region fleet:
// it listens on nothing itself and sources every region's stream, mapping
// each event back to its SPEC subject, so audit consumers read one stream
// in which every event names its region (docs/MULTI-REGION.md).
type GlobalConfig struct {
	// Name of the global stream. If empty, DefaultStream.
	Name string
	// Regions whose streams are gathered, each RegionStream(Base, region).
	Regions []string
	// Base is the regional streams' base name. If empty, DefaultStream.
	Base string
	// Replicas, MaxAge, MaxBytes and Cluster as in StreamConfig.
	Replicas int
	MaxAge   time.Duration
	MaxBytes int64
	Cluster  string
}

// RegionStream names region's audit stream: base + "_" + the region in
// upper case.
func RegionStream(base, region string) string {
	if base == "" {
		base = DefaultStream
	}
	return base + "_" + strings.ToUpper(region)
}

// EnsureGlobalStream creates the global stream, or updates its sources to
// cfg.Regions. Sourcing is asynchronous: an event reaches the global stream
// after its region's stream stored it, and a region cut off by the WAN
// catches up when the link returns; nothing is lost, since the regional
// stream holds it meanwhile.
func EnsureGlobalStream(ctx context.Context, js jetstream.JetStream, cfg GlobalConfig) error {
	sc := StreamConfig{Name: cfg.Name, Replicas: cfg.Replicas, MaxAge: cfg.MaxAge, MaxBytes: cfg.MaxBytes, Cluster: cfg.Cluster}.withDefaults()
	want := sc.jetstream()
	want.Subjects = nil
	want.Description = "tpcluster audit events of every region (SPEC §9, docs/MULTI-REGION.md)"
	if len(cfg.Regions) == 0 {
		return errors.New("audit: global stream: no regions")
	}
	for _, r := range cfg.Regions {
		want.Sources = append(want.Sources, &jetstream.StreamSource{
			Name: RegionStream(cfg.Base, r),
			SubjectTransforms: []jetstream.SubjectTransformConfig{{
				Source:      RegionSubjectPrefix(r) + ">",
				Destination: SubjectPrefix + ">",
			}},
		})
	}
	if _, err := js.CreateOrUpdateStream(ctx, want); err != nil {
		return fmt.Errorf("audit: global stream %s: %w", sc.Name, err)
	}
	return nil
}
