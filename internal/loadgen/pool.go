package loadgen

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

// Authority is the host every request is signed for and sent with (the
// Host header), whichever loopback address it goes to: one signed request
// is then valid on every node, as behind a load balancer.
const Authority = "api.tpload.test"

// scheme is the transcript scheme: the generator speaks plain HTTP.
const scheme = "http"

// Kind is what a send is, and so which answer it expects.
type Kind uint8

const (
	// Fresh is the first send of a signed request: allowed, exactly once
	// per signed request however many nodes it is sent to.
	Fresh Kind = iota
	// Replay is the same signed request sent again: jti_replay.
	Replay
	// Tampered is a signed request whose query was changed after signing:
	// request_binding_mismatch.
	Tampered
	// BadSignature carries a passport whose signature was altered:
	// passport_signature_invalid.
	BadSignature
	// Malformed carries a passport that is not a compact JWS:
	// passport_malformed.
	Malformed
	numKinds
)

var kindNames = [numKinds]string{"fresh", "replay", "tampered", "bad_signature", "malformed"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Mix is the shape of the load.
type Mix struct {
	// GetShare is the share of signed requests that are GETs; the rest
	// are POSTs.
	GetShare float64
	// BodySizes are the POST body sizes in bytes, picked uniformly. If
	// empty, 1024.
	BodySizes []int
	// ReplayShare, TamperShare and BadPassportShare are the shares of all
	// sends that are replays, tampered requests and bad passports (half
	// with a broken signature, half malformed). Their sum must be below 1.
	ReplayShare, TamperShare, BadPassportShare float64
	// Seed makes the mix reproducible: the same seed gives the same
	// sequence of kinds, methods and sizes (jti and nonces stay random).
	Seed uint64
}

// Validate reports every problem with m.
func (m *Mix) Validate() error {
	var errs []error
	share := func(name string, v float64) {
		if v < 0 || v > 1 {
			errs = append(errs, fmt.Errorf("%s %g: must be between 0 and 1", name, v))
		}
	}
	share("get share", m.GetShare)
	share("replay share", m.ReplayShare)
	share("tamper share", m.TamperShare)
	share("bad passport share", m.BadPassportShare)
	if s := m.ReplayShare + m.TamperShare + m.BadPassportShare; s >= 1 {
		errs = append(errs, fmt.Errorf("replay, tamper and bad passport shares add up to %g: must be below 1", s))
	}
	for _, n := range m.BodySizes {
		if n < 1 || n > 16<<20 {
			errs = append(errs, fmt.Errorf("body size %d: must be between 1 and 16 MiB", n))
		}
	}
	return errors.Join(errs...)
}

// replayLag is how many slots after its original a replay is scheduled at
// the earliest, so that the original has usually been answered. Order
// does not matter for counting: every signed request must be allowed
// exactly once whatever arrives first.
const replayLag = 256

// request is one signed request of the pool. Its header map is shared by
// every send of it and never written after the pool is built.
type request struct {
	kind   Kind
	method string
	target string // raw path and query
	header http.Header
	body   []byte
	group  int32 // index of the signed request for Fresh, -1 otherwise

	// For the crypto ceiling: the two signatures a verifier checks.
	jwsInput, jwsSig []byte
	digest           [32]byte
	proof            []byte
}

// send is one slot of the plan: which request goes to which target.
type send struct {
	req    int32
	target int32
	kind   Kind // Fresh or Replay for a fresh request; the request's kind otherwise
}

// Plan is a signed pool and the order its requests are sent in, built
// before any clock starts.
type Plan struct {
	reqs   []request
	sends  []send
	groups int // signed requests that must be allowed once each
	pub    ed25519.PublicKey
	// byKind counts sends per kind.
	byKind [numKinds]int
	bodies map[int][]byte // one immutable body per size
	fanOut bool
}

// PlanConfig says what to build.
type PlanConfig struct {
	World *World
	Mix   Mix
	// Sends is the number of sends. Required.
	Sends int
	// Targets is the number of targets; FanOut sends each planned request
	// to every target in turn (the same request to every node), else they
	// take turns (round robin).
	Targets int
	FanOut  bool
	// Distinct bounds the number of distinct signed requests; past it the
	// pool is reused in turn, so a fresh request is sent again. Only for
	// targets without a ledger (direct upstream, plain proxy). If zero, no
	// bound.
	Distinct int
	// PassportTTL is the passports' lifetime. If zero, 10 minutes.
	PassportTTL time.Duration
	// Workers sign the pool in parallel. If zero, 1.
	Workers int
}

// NewPlan signs a pool and lays out the sends.
func NewPlan(cfg PlanConfig) (*Plan, error) {
	if cfg.World == nil || cfg.World.key == nil {
		return nil, errors.New("loadgen: plan: no world with a caller key")
	}
	if cfg.Sends < 1 || cfg.Targets < 1 {
		return nil, fmt.Errorf("loadgen: plan: %d sends to %d targets", cfg.Sends, cfg.Targets)
	}
	if err := cfg.Mix.Validate(); err != nil {
		return nil, fmt.Errorf("loadgen: plan: %w", err)
	}
	m := cfg.Mix
	sizes := m.BodySizes
	if len(sizes) == 0 {
		sizes = []int{1024}
	}
	fan := 1
	if cfg.FanOut {
		fan = cfg.Targets
	}
	slots := (cfg.Sends + fan - 1) / fan
	rng := rand.New(rand.NewPCG(m.Seed, 0x7470_6c6f_6164)) // "tpload"

	p := &Plan{pub: cfg.World.key.PublicKey(), fanOut: cfg.FanOut}
	var freshSlots []int32 // request index of each fresh request, in slot order
	var freshSlot []int    // and the slot it was planned at
	eligible := 0          // fresh requests planned at least replayLag slots ago
	bad := 0
	for s := range slots {
		for eligible < len(freshSlot) && freshSlot[eligible] <= s-replayLag {
			eligible++
		}
		if cfg.Distinct > 0 && len(p.reqs) >= cfg.Distinct {
			// Reuse the pool in turn (no ledger behind the targets).
			ri := int32(s % len(p.reqs))
			p.addSlot(ri, p.reqs[ri].kind, s, fan, cfg.Targets)
			continue
		}
		r := rng.Float64()
		switch {
		case r < m.ReplayShare && eligible > 0:
			lo := max(0, eligible-1024)
			ri := freshSlots[lo+rng.IntN(eligible-lo)]
			p.addSlot(ri, Replay, s, fan, cfg.Targets)
			continue
		case r < m.ReplayShare:
			// Nothing old enough to replay yet: a fresh request.
		case r < m.ReplayShare+m.TamperShare:
			p.addRequest(Tampered, rng, m.GetShare, sizes)
			p.addSlot(int32(len(p.reqs)-1), Tampered, s, fan, cfg.Targets)
			continue
		case r < m.ReplayShare+m.TamperShare+m.BadPassportShare:
			k := BadSignature
			if bad%2 == 1 {
				k = Malformed
			}
			bad++
			p.addRequest(k, rng, m.GetShare, sizes)
			p.addSlot(int32(len(p.reqs)-1), k, s, fan, cfg.Targets)
			continue
		}
		p.addRequest(Fresh, rng, m.GetShare, sizes)
		ri := int32(len(p.reqs) - 1)
		freshSlots, freshSlot = append(freshSlots, ri), append(freshSlot, s)
		p.addSlot(ri, Fresh, s, fan, cfg.Targets)
	}
	p.sends = p.sends[:cfg.Sends]
	for i := range p.byKind {
		p.byKind[i] = 0
	}
	for _, sd := range p.sends {
		p.byKind[sd.kind]++
	}
	if err := p.sign(cfg.World, cfg.PassportTTL, max(1, cfg.Workers)); err != nil {
		return nil, err
	}
	return p, nil
}

// addRequest appends an unsigned request of kind k; sign fills it in.
func (p *Plan) addRequest(k Kind, rng *rand.Rand, getShare float64, sizes []int) {
	r := request{kind: k, group: -1}
	if k == Fresh {
		r.group = int32(p.groups)
		p.groups++
	}
	if rng.Float64() < getShare {
		r.method = http.MethodGet
	} else {
		r.method = http.MethodPost
		r.body = p.body(sizes[rng.IntN(len(sizes))])
	}
	p.reqs = append(p.reqs, r)
}

// addSlot plans request ri at slot s: once, or to every target in turn.
func (p *Plan) addSlot(ri int32, k Kind, s, fan, targets int) {
	for f := range fan {
		kind := k
		if k == Fresh && f > 0 {
			kind = Replay // the same request to the next node
		}
		t := (s*fan + f) % targets
		p.sends = append(p.sends, send{req: ri, target: int32(t), kind: kind})
	}
}

// body returns a body of n bytes, one per size: the transcript binds a
// body through its hash, so requests may share the bytes.
func (p *Plan) body(n int) []byte {
	if b, ok := p.bodies[n]; ok {
		return b
	}
	b := bytes.Repeat([]byte("x"), n)
	copy(b, `{"order":"`)
	if n > 12 {
		copy(b[n-2:], `"}`)
	}
	if p.bodies == nil {
		p.bodies = make(map[int][]byte)
	}
	p.bodies[n] = b
	return b
}

// sign signs every request of p with workers goroutines.
func (p *Plan) sign(w *World, ttl time.Duration, workers int) error {
	if ttl == 0 {
		ttl = 10 * time.Minute
	}
	now := time.Now()
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for wi := range workers {
		wg.Go(func() {
			for i := wi; i < len(p.reqs); i += workers {
				if err := w.signRequest(&p.reqs[i], i, now, ttl); err != nil {
					errs[wi] = fmt.Errorf("loadgen: sign request %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// query is signed on every request; Tampered changes it after signing.
const (
	query         = "view=full"
	tamperedQuery = "view=summary"
)

func (w *World) signRequest(r *request, n int, now time.Time, ttl time.Duration) error {
	route := w.Post
	path := w.Post.Path
	var hs []transcript.Header
	if r.method == http.MethodGet {
		route = w.Get
		path = w.Get.Path + "ord_" + strconv.Itoa(n)
	} else {
		hs = []transcript.Header{{Name: "Content-Type", Value: "application/json"}}
	}
	tok, err := w.key.MintPassport(signer.PassportOptions{
		Issuer: w.Issuer, Subject: w.Subject, Audience: w.Audience, TrustDomain: w.TrustDomain,
		KID: w.KID, IssuedAt: now, TTL: ttl,
	})
	if err != nil {
		return err
	}
	s, err := w.key.Sign(tok, &signer.Request{
		Method: r.method, Scheme: scheme, Authority: Authority, Path: path, RawQuery: query,
		Body: r.body, Headers: hs, RouteID: route.ID,
	})
	if err != nil {
		return err
	}
	dot := strings.LastIndexByte(tok, '.')
	r.jwsInput = []byte(tok[:dot])
	if r.jwsSig, err = base64.RawURLEncoding.DecodeString(tok[dot+1:]); err != nil {
		return err
	}
	r.digest = s.Digest
	r.target = path + "?" + query
	r.header = make(http.Header, len(hs)+len(s.Headers))
	for _, h := range hs {
		r.header.Set(h.Name, h.Value)
	}
	for _, h := range s.Headers {
		r.header.Set(h.Name, h.Value)
		if h.Name == signer.HeaderProof {
			if r.proof, err = base64.RawURLEncoding.DecodeString(h.Value); err != nil {
				return err
			}
		}
	}
	switch r.kind {
	case Tampered:
		r.target = path + "?" + tamperedQuery
	case BadSignature:
		// A character well inside the signature: it decodes to other
		// bytes, so the passport parses and its signature fails.
		b := []byte(tok)
		i := dot + 1 + (len(tok)-dot-1)/2
		b[i] = map[bool]byte{true: 'B', false: 'A'}[b[i] == 'A']
		r.header.Set(signer.HeaderAuthorization, "Bearer "+string(b))
	case Malformed:
		r.header.Set(signer.HeaderAuthorization, "Bearer "+tok[:dot]) // two segments: not a JWS
	}
	return nil
}

// Sends returns the number of planned sends.
func (p *Plan) Sends() int { return len(p.sends) }

// Distinct returns the number of signed requests in the pool.
func (p *Plan) Distinct() int { return len(p.reqs) }

// KindCounts returns the number of planned sends of each kind, by name.
func (p *Plan) KindCounts() map[string]int {
	m := make(map[string]int, numKinds)
	for k, n := range p.byKind {
		if n > 0 {
			m[Kind(k).String()] = n
		}
	}
	return m
}
