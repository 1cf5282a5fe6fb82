package edverify

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// startBatcher runs a Batcher for cfg until the test ends and waits for Run
// to return.
func startBatcher(t testing.TB, cfg Config) *Batcher {
	t.Helper()
	b, err := NewBatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := b.Run(ctx); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return b
}

// cofactoredOnly reports whether v is in the one class where the batch may
// answer differently from crypto/ed25519 (see "Batch semantics"): it passes
// batchSafe, crypto/ed25519 rejects it, and the cofactored equation with
// voi's strictest options accepts it.
func cofactoredOnly(v vector) bool {
	k, err := NewPublicKey(v.pub)
	if err != nil || !batchSafe(k, v.sig) || stdlibVerify(v.pub, v.msg, v.sig) {
		return false
	}
	return voi.VerifyExpandedWithOptions(k.expanded, v.msg, v.sig, batchOptions())
}

type signed struct {
	key      *PublicKey
	msg, sig []byte
}

func validSigs(t testing.TB, n int) []signed {
	t.Helper()
	out := make([]signed, n)
	for i := range out {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k, err := NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Appendf(nil, "message %d", i)
		out[i] = signed{k, msg, ed25519.Sign(priv, msg)}
	}
	return out
}

// TestBatcherEdgeCases sends every edge vector through a Batcher, mixed
// with valid signatures so batches form and pass, and compares each answer
// with crypto/ed25519. The only difference allowed is the cofactored-only
// class, and the test checks the vectors contain some of it.
func TestBatcherEdgeCases(t *testing.T) {
	b := startBatcher(t, Config{Window: 2 * time.Millisecond, MaxBatch: 16})
	vs := edgeVectors(t)
	good := validSigs(t, 64)
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		cofactored []string
	)
	for i, v := range vs {
		wg.Go(func() {
			k, err := NewPublicKey(v.pub)
			got := err == nil && b.Verify(t.Context(), k, v.msg, v.sig)
			want := stdlibVerify(v.pub, v.msg, v.sig)
			if got != want {
				if !cofactoredOnly(v) {
					t.Errorf("Batcher.Verify(%s) = %v, want %v (crypto/ed25519)", v.name, got, want)
				}
				mu.Lock()
				cofactored = append(cofactored, v.name)
				mu.Unlock()
			}
		})
		g := good[i%len(good)]
		wg.Go(func() {
			if !b.Verify(t.Context(), g.key, g.msg, g.sig) {
				t.Errorf("Batcher.Verify(valid beside %s) = false, want true", v.name)
			}
		})
	}
	wg.Wait()
	t.Logf("accepted by a passing batch, refused by crypto/ed25519: %s", strings.Join(cofactored, " "))

	var class []string
	for _, v := range vs {
		if cofactoredOnly(v) {
			class = append(class, v.name)
		}
	}
	if len(class) == 0 {
		t.Error("no edge vector is in the cofactored-only class; the vectors no longer cover it")
	}
	for _, name := range class {
		if !strings.HasPrefix(name, "mixed_order_") && !strings.HasPrefix(name, "speccheck/") {
			t.Errorf("%s is cofactored-only: batchSafe lets an unexpected kind of input into batches", name)
		}
	}
}

// TestBatchCofactoredOnly pins down the documented difference: a signature
// whose R carries a torsion component, made by the key holder, passes a
// batch but not a single verification.
func TestBatchCofactoredOnly(t *testing.T) {
	s := newSigner(t, 7)
	msg := []byte("torsion in R")
	pub, sig := s.sign(t, msg, nil, curveTorsion(4)) // order 2
	k, err := NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if k.Verify(msg, sig) || stdlibVerify(pub, msg, sig) {
		t.Fatal("crypto/ed25519 or Verify accepts R with a torsion component")
	}
	if !batchSafe(k, sig) {
		t.Fatal("batchSafe refuses a well-encoded mixed-order R; the class is gone, update the package doc")
	}
	batch := []*pending{{key: k, msg: msg, sig: sig}}
	for _, g := range validSigs(t, 3) {
		batch = append(batch, &pending{key: g.key, msg: g.msg, sig: g.sig})
	}
	if !verifyBatch(voi.NewBatchVerifier(), batchOptions(), batch) {
		t.Error("the cofactored batch refuses R with a torsion component; update the package doc")
	}
}

// TestBatcherBadSignatureDeniesNoOther: one bad signature among many valid
// ones, submitted concurrently, fails only itself.
func TestBatcherBadSignatureDeniesNoOther(t *testing.T) {
	for _, window := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			b := startBatcher(t, Config{Window: window})
			sigs := validSigs(t, 64)
			bad := sigs[17]
			bad.sig = append([]byte{}, bad.sig...)
			bad.sig[5] ^= 0x10
			sigs[17] = bad
			var wg sync.WaitGroup
			for round := range 4 {
				for i, s := range sigs {
					wg.Go(func() {
						want := i != 17
						if got := b.Verify(t.Context(), s.key, s.msg, s.sig); got != want {
							t.Errorf("round %d: Verify(sig %d) = %v, want %v", round, i, got, want)
						}
					})
				}
			}
			wg.Wait()
		})
	}
}

func TestBatcherContextEnded(t *testing.T) {
	s := validSigs(t, 1)[0]
	b, err := NewBatcher(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if b.Verify(ctx, s.key, s.msg, s.sig) {
		t.Error("Verify with an ended context = true, want false")
	}
	// Run never started: the signature waits until the context ends.
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if b.Verify(ctx, s.key, s.msg, s.sig) {
		t.Error("Verify without Run, context timed out = true, want false")
	}
}

func TestBatcherAfterRun(t *testing.T) {
	s := validSigs(t, 1)[0]
	b, err := NewBatcher(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Run(ctx); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if !b.Verify(t.Context(), s.key, s.msg, s.sig) {
		t.Error("Verify after Run returned = false, want true (verified by the caller)")
	}
	if b.Verify(t.Context(), nil, s.msg, s.sig) {
		t.Error("Verify(nil key) = true, want false")
	}
}

func TestNewBatcherConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substrings of the error, "" for none
	}{
		{"zero", Config{}, ""},
		{"negative_window", Config{Window: -1}, "window -1ns: must not be negative"},
		{"batch_too_big", Config{MaxBatch: 95}, "max batch 95: must be between 0 and 94"},
		{"all_bad", Config{Window: -1, MaxBatch: -1, Workers: -1, QueueLen: -1}, "window|max batch|workers|queue length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewBatcher(tt.cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("NewBatcher(%+v) = %v, want nil", tt.cfg, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewBatcher(%+v) = nil, want an error", tt.cfg)
			}
			for part := range strings.SplitSeq(tt.want, "|") {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("NewBatcher(%+v) = %q, want it to contain %q", tt.cfg, err, part)
				}
			}
		})
	}
}
