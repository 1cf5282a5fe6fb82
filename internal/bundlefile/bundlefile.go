// Package bundlefile serves policy snapshots from a trust material file and a
// policy bundle file (SPEC §10.1 file mode): it verifies both, publishes the
// pair as one bundle.Snapshot, and reloads them when either file changes,
// swapping the pair atomically and keeping the last good pair on error.
//
// View time is the policy file's modification time (SPEC §8.3), so an
// operator's sync job keeps a realtime route fresh by touching the file.
package bundlefile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
)

// Config configures a Source.
type Config struct {
	TrustMaterial string // path, required
	PolicyBundle  string // path, required
	// Options verify both documents (accepted keys, unsigned development
	// mode). ModTime is set per file.
	Options bundle.Options
	// Interval is how often the files are checked for changes. If zero, 1s.
	Interval time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// OnReject, if set, is told about a document that failed to load.
	OnReject func(kind string, err error)
	// OnApply, if set, is told about every pair published.
	OnApply func(s *bundle.Snapshot)
}

// Source holds the current snapshot. It is safe for concurrent use.
type Source struct {
	cfg  Config
	log  *slog.Logger
	snap atomic.Pointer[bundle.Snapshot]

	// Owned by Run.
	trustStamp, policyStamp stamp
}

// maxFutureView is how far ahead of the clock a view time may be; the bundle
// channel bounds beacons and policies the same way.
const maxFutureView = 30 * time.Second

// stamp identifies one version of a file on disk. The inode catches a file
// replaced by rename (how sync jobs write) with the same size within the
// file system's timestamp granularity.
type stamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

// New loads both files once and returns a Source holding the pair. A file
// that fails to load is an error: a node starting with bad files must not
// start.
func New(cfg Config) (*Source, error) {
	if cfg.TrustMaterial == "" || cfg.PolicyBundle == "" {
		return nil, errors.New("bundlefile: both a trust material and a policy bundle file are needed")
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{cfg: cfg, log: cfg.Logger}
	if _, err := s.reload(); err != nil {
		return nil, fmt.Errorf("bundlefile: %w", err)
	}
	return s, nil
}

// Snapshot returns the current pair. It never returns nil after New.
func (s *Source) Snapshot() *bundle.Snapshot { return s.snap.Load() }

// Run checks the files every Interval until ctx is done, reloading on
// change. It returns nil when ctx is done.
func (s *Source) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if changed, err := s.reload(); err != nil {
			s.log.Warn("bundle files rejected; keeping the last good pair", "err", err)
		} else if changed {
			cur := s.snap.Load()
			s.log.Info("bundle files applied",
				"policy_sequence", cur.Policy.Sequence, "policy_sha256", cur.Policy.SHA256,
				"trust_sequence", cur.Trust.Sequence)
		}
	}
}

// reload reads the files if either changed (or a touch moved the policy's
// view time) and publishes the new pair. On error the old pair stays.
func (s *Source) reload() (changed bool, err error) {
	ts, err := statFile(s.cfg.TrustMaterial)
	if err != nil {
		return false, err
	}
	ps, err := statFile(s.cfg.PolicyBundle)
	if err != nil {
		return false, err
	}
	cur := s.snap.Load()
	if cur != nil && ts == s.trustStamp && ps == s.policyStamp {
		return false, nil
	}
	var (
		trust *bundle.TrustMaterial
		pol   *bundle.Policy
	)
	if cur != nil {
		trust, pol = cur.Trust, cur.Policy
	}
	if cur == nil || ts != s.trustStamp {
		next, err := load(s, s.cfg.TrustMaterial, ts, "trust material", bundle.ParseTrustMaterial)
		if err != nil {
			return false, err
		}
		if trust != nil && next.Signed && next.SHA256 != trust.SHA256 && next.Sequence <= trust.Sequence {
			return false, s.reject("trust material", fmt.Errorf("trust material sequence %d does not follow %d: rollback refused", next.Sequence, trust.Sequence))
		}
		trust = next
	}
	if cur == nil || ps != s.policyStamp {
		next, err := load(s, s.cfg.PolicyBundle, ps, "policy bundle", bundle.ParsePolicy)
		if err != nil {
			return false, err
		}
		if pol != nil && next.Signed && next.SHA256 != pol.SHA256 && next.Sequence <= pol.Sequence {
			return false, s.reject("policy bundle", fmt.Errorf("policy bundle sequence %d does not follow %d: rollback refused", next.Sequence, pol.Sequence))
		}
		pol = next
	}
	// A modification time in the future (a clock-skewed sync job) must not
	// keep realtime and bounded routes fresh until then: beyond the beacon
	// skew bound the view time is the moment of this load.
	view := ps.mod
	if now := time.Now(); view.Sub(now) > maxFutureView {
		view = now
	}
	next := &bundle.Snapshot{Policy: pol, Trust: trust, ViewTime: view}
	s.snap.Store(next)
	s.trustStamp, s.policyStamp = ts, ps
	if s.cfg.OnApply != nil {
		s.cfg.OnApply(next)
	}
	return true, nil
}

func load[T any](s *Source, path string, st stamp, kind string, parse func([]byte, bundle.Options) (*T, error)) (*T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	opts := s.cfg.Options
	opts.ModTime = st.mod
	v, err := parse(data, opts)
	if err != nil {
		return nil, s.reject(kind, fmt.Errorf("%s %s: %w", kind, path, err))
	}
	return v, nil
}

func (s *Source) reject(kind string, err error) error {
	if s.cfg.OnReject != nil {
		s.cfg.OnReject(kind, err)
	}
	return err
}

func statFile(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	st := stamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st, nil
}
