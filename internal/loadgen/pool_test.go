package loadgen

import (
	"crypto/ed25519"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/signer"
)

// testWorld prepares a world in a temporary directory: keys and signed
// bundles.
func testWorld(t testing.TB) *World {
	t.Helper()
	dir := t.TempDir()
	if _, err := Prepare(dir); err != nil {
		t.Fatal(err)
	}
	w, err := LoadWorld(dir)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func newTestPlan(t testing.TB, cfg PlanConfig) *Plan {
	t.Helper()
	cfg.World = testWorld(t)
	if cfg.Targets == 0 {
		cfg.Targets = 1
	}
	p, err := NewPlan(cfg)
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	return p
}

func TestMixShares(t *testing.T) {
	m := Mix{GetShare: 0.3, BodySizes: []int{100, 2000}, ReplayShare: 0.2, TamperShare: 0.1, BadPassportShare: 0.1, Seed: 7}
	const n = 4000
	p := newTestPlan(t, PlanConfig{Mix: m, Sends: n, Workers: 4})
	if p.Sends() != n {
		t.Fatalf("Sends() = %d, want %d", p.Sends(), n)
	}
	got := p.KindCounts()
	// Replays cannot start before replayLag slots, so their share is a
	// little below 0.2 of the whole.
	for _, tc := range []struct {
		kind  Kind
		share float64
	}{
		{Replay, 0.2 * (n - replayLag) / n}, {Tampered, 0.1}, {BadSignature, 0.05}, {Malformed, 0.05},
	} {
		share := float64(got[tc.kind.String()]) / n
		if math.Abs(share-tc.share) > 0.025 {
			t.Errorf("%s share = %.3f, want about %.3f", tc.kind, share, tc.share)
		}
	}
	if got[Fresh.String()] != p.groups {
		t.Errorf("fresh sends = %d, signed requests to allow = %d: want equal without fan-out", got[Fresh.String()], p.groups)
	}
	var gets, posts int
	sizes := map[int]bool{}
	for _, r := range p.reqs {
		switch r.method {
		case http.MethodGet:
			gets++
			if len(r.body) != 0 {
				t.Errorf("GET with a %d-byte body", len(r.body))
			}
		case http.MethodPost:
			posts++
			sizes[len(r.body)] = true
		}
	}
	if share := float64(gets) / float64(gets+posts); math.Abs(share-0.3) > 0.03 {
		t.Errorf("GET share = %.3f, want about 0.3", share)
	}
	if len(sizes) != 2 || !sizes[100] || !sizes[2000] {
		t.Errorf("POST body sizes = %v, want 100 and 2000", sizes)
	}
}

// TestMixReplays: a replay re-sends an earlier fresh request, at least
// replayLag slots after it.
func TestMixReplays(t *testing.T) {
	p := newTestPlan(t, PlanConfig{Mix: Mix{ReplayShare: 0.3, Seed: 1}, Sends: 2000})
	first := map[int32]int{}
	for i, sd := range p.sends {
		switch sd.kind {
		case Fresh:
			first[sd.req] = i
		case Replay:
			at, ok := first[sd.req]
			if !ok {
				t.Fatalf("send %d replays request %d, which was never sent fresh", i, sd.req)
			}
			if i-at < replayLag {
				t.Errorf("send %d replays send %d: %d slots later, want at least %d", i, at, i-at, replayLag)
			}
		}
	}
}

func TestMixSeed(t *testing.T) {
	m := Mix{GetShare: 0.5, ReplayShare: 0.2, TamperShare: 0.1, BadPassportShare: 0.1, Seed: 42}
	a := newTestPlan(t, PlanConfig{Mix: m, Sends: 600})
	b := newTestPlan(t, PlanConfig{Mix: m, Sends: 600})
	for i := range a.sends {
		ra, rb := a.reqs[a.sends[i].req], b.reqs[b.sends[i].req]
		if a.sends[i] != b.sends[i] || ra.method != rb.method || len(ra.body) != len(rb.body) {
			t.Fatalf("send %d differs between two plans with seed 42", i)
		}
	}
}

// TestFanOut: every request goes to every target in turn; the first send
// is fresh, the others replays of the same signed request.
func TestFanOut(t *testing.T) {
	p := newTestPlan(t, PlanConfig{Mix: Mix{ReplayShare: 0.1, Seed: 3}, Sends: 900, Targets: 3, FanOut: true})
	for s := 0; s+3 <= len(p.sends); s += 3 {
		for f := range 3 {
			sd := p.sends[s+f]
			if sd.req != p.sends[s].req || int(sd.target) != f {
				t.Fatalf("send %d = request %d to target %d, want request %d to target %d", s+f, sd.req, sd.target, p.sends[s].req, f)
			}
			if f > 0 && sd.kind != Replay {
				t.Errorf("send %d: kind %s, want replay (same request, next node)", s+f, sd.kind)
			}
		}
	}
}

func TestRoundRobin(t *testing.T) {
	p := newTestPlan(t, PlanConfig{Sends: 10, Targets: 3})
	for i, sd := range p.sends {
		if int(sd.target) != i%3 {
			t.Errorf("send %d to target %d, want %d", i, sd.target, i%3)
		}
	}
}

func TestDistinct(t *testing.T) {
	p := newTestPlan(t, PlanConfig{Sends: 100, Distinct: 10})
	if p.Distinct() != 10 {
		t.Fatalf("Distinct() = %d, want 10", p.Distinct())
	}
	for i, sd := range p.sends {
		if int(sd.req) != i%10 {
			t.Errorf("send %d uses request %d, want %d", i, sd.req, i%10)
		}
	}
}

// TestKinds checks what each kind carries: fresh requests verify, a
// tampered one changed its query, a bad signature fails, a malformed
// passport has two segments.
func TestKinds(t *testing.T) {
	p := newTestPlan(t, PlanConfig{Mix: Mix{TamperShare: 0.3, BadPassportShare: 0.3, Seed: 5}, Sends: 300})
	seen := map[Kind]bool{}
	for _, r := range p.reqs {
		seen[r.kind] = true
		auth := strings.TrimPrefix(r.header.Get(signer.HeaderAuthorization), "Bearer ")
		goodSig := ed25519.Verify(p.pub, r.jwsInput, r.jwsSig) && ed25519.Verify(p.pub, r.digest[:], r.proof)
		if !goodSig {
			t.Errorf("%s request: the signatures it was made with do not verify", r.kind)
		}
		signedToken := string(r.jwsInput) + "."
		switch r.kind {
		case Fresh:
			if !strings.HasPrefix(auth, signedToken) || !strings.HasSuffix(r.target, "?"+query) {
				t.Errorf("fresh request altered: target %q", r.target)
			}
		case Tampered:
			if !strings.HasSuffix(r.target, "?"+tamperedQuery) {
				t.Errorf("tampered target = %q, want query %q", r.target, tamperedQuery)
			}
		case BadSignature:
			if !strings.HasPrefix(auth, signedToken) || strings.Count(auth, ".") != 2 || auth == signedToken+b64(r.jwsSig) {
				t.Errorf("bad-signature passport not a JWS with another signature: %.40s...", auth)
			}
		case Malformed:
			if strings.Count(auth, ".") != 1 {
				t.Errorf("malformed passport has %d dots, want 1", strings.Count(auth, "."))
			}
		}
		if r.header.Get(signer.HeaderProof) == "" || r.header.Get(signer.HeaderNonce) == "" {
			t.Errorf("%s request lacks proof headers", r.kind)
		}
	}
	for _, k := range []Kind{Fresh, Tampered, BadSignature, Malformed} {
		if !seen[k] {
			t.Errorf("no %s request in the plan", k)
		}
	}
}

func TestMixValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mix  Mix
		want string
	}{
		{"ok", Mix{GetShare: 1, ReplayShare: 0.5, TamperShare: 0.2, BadPassportShare: 0.2, BodySizes: []int{1}}, ""},
		{"share above 1", Mix{GetShare: 1.5}, "get share 1.5: must be between 0 and 1"},
		{"negative", Mix{ReplayShare: -0.1}, "replay share -0.1: must be between 0 and 1"},
		{"sum", Mix{ReplayShare: 0.5, TamperShare: 0.3, BadPassportShare: 0.2}, "add up to 1: must be below 1"},
		{"body", Mix{BodySizes: []int{0}}, "body size 0: must be between 1 and 16 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.mix.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
