package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// readAssertionKeys builds the backend assertion minter (docs/BACKEND-JWT.md)
// and, with --assertion-key-dir, the keys that re-read it; neither without
// a key flag, and then routes that ask for an assertion are denied
// backend_assertion_unavailable.
func readAssertionKeys(cfg *Config, listed func() []*bundle.AssertionKey, log *slog.Logger) (*assertion.Minter, *assertionKeys, error) {
	if !cfg.hasAssertionKeys() {
		return nil, nil, nil
	}
	var keys []*keyfile.PrivateKey
	var refused []error
	if cfg.AssertionKeyDir != "" {
		var err error
		if keys, refused, err = readAssertionKeyDir(cfg.AssertionKeyDir); err != nil {
			return nil, nil, fmt.Errorf("--assertion-key-dir %s: %w", cfg.AssertionKeyDir, err)
		}
	}
	for _, p := range cfg.AssertionKey {
		k, err := keyfile.ReadPrivate(p) // refuses a key others may read
		if err != nil {
			return nil, nil, fmt.Errorf("--assertion-key: %w", err) // the error names the file
		}
		keys = append(keys, k)
	}
	var fleet []*keyfile.PublicKey
	for _, p := range cfg.AssertionPublicKeys {
		pk, err := keyfile.ReadPublic(p)
		if err != nil {
			return nil, nil, fmt.Errorf("--assertion-public-key %s: %w", p, err)
		}
		fleet = append(fleet, pk)
	}
	m, err := assertion.New(assertion.Config{Issuer: cfg.AssertionIssuer, Key: keys[0], MoreKeys: keys[1:], FleetKeys: fleet, Listed: listed})
	if err != nil {
		return nil, nil, err
	}
	if cfg.AssertionKeyDir == "" {
		return m, nil, nil
	}
	ak := &assertionKeys{
		dir: cfg.AssertionKeyDir, minter: m, listed: listed, held: keys,
		log: log.With("component", "assertion_keys", "dir", cfg.AssertionKeyDir), kick: make(chan string, 1),
	}
	ak.reported(keys, refused)
	return m, ak, nil
}

// readAssertionKeyDir reads --assertion-key-dir at start: its keys and the
// files it refused. An unreadable directory, or one without a usable key,
// is an error that names the refused files: the node does not start.
func readAssertionKeyDir(dir string) ([]*keyfile.PrivateKey, []error, error) {
	keys, refused, err := keyfile.ReadPrivateDir(dir)
	if err != nil {
		return nil, nil, err
	}
	if len(keys) == 0 {
		why := "no NAME.key file in it"
		if len(refused) > 0 {
			msgs := make([]string, len(refused))
			for i, e := range refused {
				msgs[i] = e.Error()
			}
			why = "no usable NAME.key file in it: " + strings.Join(msgs, "; ")
		}
		return nil, refused, errors.New(why)
	}
	return keys, refused, nil
}

// assertionKeys keeps the minter's keys equal to --assertion-key-dir's
// NAME.key files (docs/BACKEND-JWT.md, "Rotation of a node's key"): Run
// re-reads the directory whenever Request asks, which the node does when a
// trust material is applied and on SIGHUP. One goroutine (Run) owns the
// held keys; the minter swaps its set atomically, so a request in flight
// signs with one consistent key.
type assertionKeys struct {
	dir    string
	minter *assertion.Minter
	listed func() []*bundle.AssertionKey
	log    *slog.Logger
	kick   chan string // buffered 1: why a re-read is wanted

	held []*keyfile.PrivateKey // owned by Run (before Run, by newNode)

	// For the tpcluster.assertion.key_files gauge: the last read's counts.
	heldFiles, refusedFiles atomic.Int64
}

// Request asks Run for a re-read; it never blocks: a re-read already asked
// for covers this one too.
func (a *assertionKeys) Request(cause string) {
	select {
	case a.kick <- cause:
	default:
	}
}

// Run re-reads the directory on each Request until ctx is done.
func (a *assertionKeys) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case cause := <-a.kick:
			a.reload(cause)
		}
	}
}

// reload re-reads the directory and gives the minter its keys. A key that
// left the directory is dropped, unless the trust material in force still
// lists it active for this node: then the node keeps signing with the copy
// it holds until a trust material no longer lists it active, since taking
// it away would deny every request of a route with an assertion until the
// operator publishes the switch. A read that finds no usable key keeps the
// keys held (an emptied directory is more likely a copy in progress than a
// wish to sign nothing); keys are taken out of service by the trust
// material, which a node signs only under.
func (a *assertionKeys) reload(cause string) {
	keys, refused, err := keyfile.ReadPrivateDir(a.dir)
	if err != nil {
		a.log.Error("assertion key directory unreadable; keeping the keys held", "cause", cause, "held", kidList(a.held), "err", err)
		return
	}
	listed := a.listed()
	var kept []*keyfile.PrivateKey
	for _, h := range a.held {
		if !holds(keys, h) && listedActive(h, listed) {
			kept = append(kept, h)
		}
	}
	a.reported(keys, refused)
	if len(keys) == 0 {
		a.log.Error("no usable assertion key in the directory; keeping the keys held", "cause", cause, "held", kidList(a.held))
		return
	}
	for _, k := range kept {
		a.log.Warn("assertion key file removed while the trust material lists it active; signing with the held copy until the trust material changes", "kid", k.KID())
	}
	keys = append(keys, kept...)
	if sameKeys(keys, a.held) {
		a.log.Debug("assertion keys re-read; unchanged", "cause", cause, "held", kidList(keys))
		return
	}
	if err := a.minter.SetKeys(keys); err != nil {
		// A kept key whose kid a new file reuses with another key.
		a.log.Error("assertion keys refused; keeping the keys held", "cause", cause, "held", kidList(a.held), "err", err)
		return
	}
	a.log.Info("assertion keys re-read", "cause", cause, "held", kidList(keys), "before", kidList(a.held))
	a.held = keys
}

// reported logs each refused file and keeps the counts for the gauge.
func (a *assertionKeys) reported(keys []*keyfile.PrivateKey, refused []error) {
	a.heldFiles.Store(int64(len(keys)))
	a.refusedFiles.Store(int64(len(refused)))
	for _, err := range refused {
		a.log.Warn("assertion key file ignored", "err", err) // names the file
	}
}

// registerMetric adds the tpcluster.assertion.key_files gauge.
func (a *assertionKeys) registerMetric(mp metric.MeterProvider) error {
	held := metric.WithAttributes(attribute.String("state", "held"))
	refused := metric.WithAttributes(attribute.String("state", "refused"))
	_, err := mp.Meter("github.com/tpcluster/tpcluster/cmd/verifierd").Int64ObservableGauge("tpcluster.assertion.key_files",
		metric.WithUnit("{file}"),
		metric.WithDescription("NAME.key files of --assertion-key-dir at its last read, by state: held (signing keys) or refused (too open, malformed, a kid held twice; named in the log)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(a.heldFiles.Load(), held)
			o.Observe(a.refusedFiles.Load(), refused)
			return nil
		}))
	return err
}

func holds(keys []*keyfile.PrivateKey, k *keyfile.PrivateKey) bool {
	for _, h := range keys {
		if h.KID() == k.KID() && h.Public().Key.Equal(k.Public().Key) {
			return true
		}
	}
	return false
}

// listedActive reports whether listed names k, with its public key, active.
func listedActive(k *keyfile.PrivateKey, listed []*bundle.AssertionKey) bool {
	for _, l := range listed {
		if l.KID == k.KID() && l.PublicKey.Equal(k.Public().Key) && l.Status == bundle.AssertionKeyActive {
			return true
		}
	}
	return false
}

func sameKeys(a, b []*keyfile.PrivateKey) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].KID() != b[i].KID() || !a[i].Public().Key.Equal(b[i].Public().Key) {
			return false
		}
	}
	return true
}

func kidList(keys []*keyfile.PrivateKey) string {
	kids := make([]string, len(keys))
	for i, k := range keys {
		kids[i] = k.KID()
	}
	return strings.Join(kids, ",")
}
