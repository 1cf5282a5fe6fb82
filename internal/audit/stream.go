package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultStream is the audit stream's name (SPEC §9).
const DefaultStream = "TRUSTPLANE_AUDIT"

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
	// 10 GiB; -1 means unlimited.
	MaxBytes int64
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
		c.MaxBytes = 10 << 30
	}
	return c
}

func (c StreamConfig) jetstream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.Name,
		Description: "tpcluster audit events (SPEC §9)",
		Subjects:    []string{SubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		Replicas:    c.Replicas,
		Duplicates:  DuplicateWindow,
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
	_, err := js.CreateStream(ctx, want)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("audit: create stream %s: %w", cfg.Name, err)
	}
	st, err := js.Stream(ctx, cfg.Name)
	if err != nil {
		return fmt.Errorf("audit: stream %s: %w", cfg.Name, err)
	}
	have := st.CachedInfo().Config
	var errs []error
	if !slices.Contains(have.Subjects, SubjectPrefix+">") {
		errs = append(errs, fmt.Errorf("subjects %q do not include %s>", have.Subjects, SubjectPrefix))
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
	if have.Replicas != want.Replicas || have.MaxAge != want.MaxAge || have.MaxBytes != want.MaxBytes {
		logger.Warn("audit stream exists with other limits; using it as it is",
			"stream", cfg.Name, "replicas", have.Replicas, "max_age", have.MaxAge, "max_bytes", have.MaxBytes)
	}
	return nil
}
