package bundlekv

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tpcluster/tpcluster/internal/atomicfile"
	"github.com/tpcluster/tpcluster/internal/bundle"
)

// Cache files under WatcherConfig.CacheDir: the exact bytes of the last
// verified pair (SPEC §8.2), written whenever the pair changes.
const (
	cacheTrust  = "trust-material.json"
	cachePolicy = "policy-bundle.json"
)

// loadCache reads and re-verifies the cached pair with today's keys, so a
// node decides from it before NATS answers. A missing cache is normal (first
// start); one that fails verification (a key no longer accepted) is logged
// and ignored.
func (w *Watcher) loadCache() {
	tdata, tmod, err1 := readCacheFile(filepath.Join(w.cfg.CacheDir, cacheTrust))
	pdata, pmod, err2 := readCacheFile(filepath.Join(w.cfg.CacheDir, cachePolicy))
	if errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist) {
		w.log.Info("no cached bundle pair; waiting for the bucket", "dir", w.cfg.CacheDir)
		return
	}
	if err := errors.Join(err1, err2); err != nil {
		w.log.Warn("cached bundle pair unreadable; waiting for the bucket", "dir", w.cfg.CacheDir, "err", err)
		return
	}
	topts, popts := w.cfg.Options, w.cfg.Options
	topts.ModTime, popts.ModTime = tmod, pmod
	trust, err := bundle.ParseTrustMaterial(tdata, topts)
	if err != nil {
		w.log.Warn("cached trust material no longer verifies; waiting for the bucket", "err", err)
		return
	}
	pol, err := bundle.ParsePolicy(pdata, popts)
	if err != nil {
		w.log.Warn("cached policy bundle no longer verifies; waiting for the bucket", "err", err)
		return
	}
	w.trust, w.trustRaw, w.policy, w.policyRaw = trust, tdata, pol, pdata
	w.setPolicyAt(pol)
	w.cached = true
	s := w.publish()
	w.log.Info("cached bundle pair verified; deciding from it until the bucket answers",
		"policy_sequence", s.Policy.Sequence, "trust_sequence", s.Trust.Sequence)
}

func readCacheFile(path string) ([]byte, time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	return b, fi.ModTime(), nil
}

// writeCache writes the current pair. A failure is logged: the node keeps
// working, it only loses the head start of its next restart.
func (w *Watcher) writeCache() {
	if w.cfg.CacheDir == "" {
		return
	}
	err := os.MkdirAll(w.cfg.CacheDir, 0o700)
	if err == nil {
		err = atomicfile.Write(filepath.Join(w.cfg.CacheDir, cacheTrust), w.trustRaw, 0o600)
	}
	if err == nil {
		err = atomicfile.Write(filepath.Join(w.cfg.CacheDir, cachePolicy), w.policyRaw, 0o600)
	}
	if err != nil {
		w.log.Warn("bundle cache not written", "dir", w.cfg.CacheDir, "err", err)
	}
}
