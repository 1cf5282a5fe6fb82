package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testMaxAge is the max passport lifetime (900s) plus twice the skew (30s).
const testMaxAge = 960 * time.Second

// key returns the ledger key of a jti from one test issuer.
func key(jti string) core.LedgerKey {
	return core.NewLedgerKey("https://issuer.example", jti)
}

// singleNode returns a JetStream handle on a fresh embedded server.
func singleNode(t testing.TB) jetstream.JetStream {
	t.Helper()
	s := natstest.Server(t)
	return natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
}

// newLedger builds a Ledger from cfg, filling in MaxAge and NodeID.
func newLedger(t testing.TB, cfg ledger.Config) *ledger.Ledger {
	t.Helper()
	if cfg.MaxAge == 0 {
		cfg.MaxAge = testMaxAge
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "node-1"
	}
	l, err := ledger.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("ledger.New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// warmUp waits until l accepts a first write, each try a fresh key: the
// first write into a bucket a busy cluster has just placed can find no
// leader yet.
func warmUp(t testing.TB, l *ledger.Ledger, entry core.LedgerEntry) {
	t.Helper()
	var warm int
	testwait.Until(t, 60*time.Second, "a first ledger write", func() error {
		warm++
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return l.Consume(ctx, key(fmt.Sprintf("warm-up-%d", warm)), time.Minute, entry)
	})
}

// sentinel names the one sentinel err matches, and fails the test if it
// matches both or neither (core.Ledger's contract).
func sentinel(t testing.TB, err error) error {
	t.Helper()
	replay, unavailable := errors.Is(err, core.ErrReplay), errors.Is(err, core.ErrLedgerUnavailable)
	switch {
	case err == nil:
		return nil
	case replay && unavailable:
		t.Fatalf("error matches both sentinels: %v", err)
	case replay:
		return core.ErrReplay
	case unavailable:
		return core.ErrLedgerUnavailable
	default:
		t.Fatalf("error matches neither sentinel: %v", err)
	}
	return nil
}

// bounded adapts f for testwait.Until: each attempt gets a context of its
// own with a one-second bound, so one attempt cannot hang the poll.
func bounded(t testing.TB, f func(ctx context.Context) error) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		return f(ctx)
	}
}
