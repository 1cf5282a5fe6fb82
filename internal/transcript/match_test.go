package transcript

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// sent is a request as a caller library put it on the wire: every header it
// sent, in order, and the names the caller covered.
type sent struct {
	method  string
	query   string
	headers []Header
	covered []string
}

const testNonce = "0123456789abcdef0123456789abcdef"

var testBinding = Binding{
	Audience: "orders-api", RouteID: "orders.create", JTI: "jti-test-1", Nonce: testNonce,
	IssuedAt: 1740000000, KeyBinding: "software",
}

func (s sent) verb() string {
	if s.method == "" {
		return "POST"
	}
	return s.method
}

// digest is the digest the caller signed.
func (s sent) digest(t testing.TB) [32]byte {
	t.Helper()
	ce, _ := firstHeader(s.headers, "content-encoding")
	d, err := Digest(&Fields{
		Method: s.verb(), Scheme: "https", Authority: "orders.example", Path: "/v1/orders",
		RawQuery: s.query, Audience: testBinding.Audience, RouteID: testBinding.RouteID,
		ContentEncoding: ce, Headers: s.headers, AllowList: s.covered,
		BodySHA256: BodySHA256([]byte("{}")), PassportJTI: testBinding.JTI, Nonce: testBinding.Nonce,
		IssuedAt: testBinding.IssuedAt, KeyBinding: testBinding.KeyBinding,
	})
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	return d
}

// request is what the verifier received, headers as net/http would give
// them (canonical keys, values in order).
func (s sent) request() *Request {
	h := map[string][]string{}
	for _, x := range s.headers {
		k := canonicalKey(x.Name)
		h[k] = append(h[k], x.Value)
	}
	return &Request{
		Method: s.verb(), Scheme: "https", Authority: "orders.example", Path: "/v1/orders",
		RawQuery: s.query, Header: h, BodySHA256: BodySHA256([]byte("{}")),
	}
}

// canonicalKey mimics textproto.CanonicalMIMEHeaderKey for token names.
func canonicalKey(s string) string {
	b := []byte(strings.ToLower(s))
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		upper = c == '-'
	}
	return string(b)
}

func hdrs(kv ...string) []Header {
	var hs []Header
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, Header{Name: kv[i], Value: kv[i+1]})
	}
	return hs
}

// wire are the headers every signed request carries besides its own.
func wire(kv ...string) []Header {
	return append(hdrs(
		"Authorization", "Bearer x.y.z",
		"X-TrustPlane-Nonce", testNonce,
		"X-TrustPlane-Body-SHA256", BodySHA256([]byte("{}")),
		"X-TrustPlane-Transcript-SHA256", strings.Repeat("0", 64),
		"X-TrustPlane-Proof", "proof",
		"Host", "orders.example",
		"Content-Length", "2",
	), hdrs(kv...)...)
}

var (
	urllibAdded = []string{"Content-Type", "application/x-www-form-urlencoded", "User-Agent", "Python-urllib/3.12", "Accept-Encoding", "identity", "Connection", "close"}
	fetchAdded  = []string{"accept", "*/*", "accept-language", "*", "sec-fetch-mode", "cors", "user-agent", "node", "accept-encoding", "gzip, deflate"}
)

func TestMatchRequest(t *testing.T) {
	nine := []string{"x-a", "1", "x-b", "2", "x-c", "3", "x-d", "4", "x-e", "5", "x-f", "6", "x-g", "7", "x-h", "8", "x-i", "9"}
	nineNames := []string{"x-a", "x-b", "x-c", "x-d", "x-e", "x-f", "x-g", "x-h", "x-i", "x-trustplane-nonce"}
	tests := []struct {
		name      string
		sent      sent
		policy    Policy
		corrupt   bool // claim a different digest
		want      []string
		wantTried int
		err       error
	}{
		{
			name:      "python urllib adds uncovered content-type",
			sent:      sent{headers: wire(urllibAdded...), covered: []string{"x-trustplane-nonce"}},
			want:      []string{"x-trustplane-nonce"},
			wantTried: 1,
		},
		{
			name:      "python with idempotency key covered",
			sent:      sent{headers: wire(append([]string{"Idempotency-Key", "idem-42"}, urllibAdded...)...), covered: []string{"Idempotency-Key", "x-trustplane-nonce"}},
			want:      []string{"idempotency-key", "x-trustplane-nonce"},
			wantTried: 1,
		},
		{
			name: "python with content-encoding gzip",
			sent: sent{
				headers: wire("Content-Encoding", "gzip", "Content-Type", "application/json", "User-Agent", "Python-urllib/3.12", "Accept-Encoding", "identity"),
				covered: []string{"content-encoding", "content-type", "x-trustplane-nonce"},
			},
			want: []string{"content-encoding", "content-type", "x-trustplane-nonce"},
			// {ce}; {ae,ce,ct,ua}; {ae,ce,ct}, {ae,ce,ua}, {ae,ct,ua}, {ce,ct,ua}; {ae,ce}, {ae,ct}, {ae,ua}, {ce,ct}
			wantTried: 10,
		},
		{
			name:      "low-level signature leaves x-ignore-me uncovered",
			sent:      sent{headers: wire("Content-Type", "application/json", "X-Ignore-Me", "not-covered"), covered: []string{"content-type", "x-trustplane-nonce"}},
			want:      []string{"content-type", "x-trustplane-nonce"},
			wantTried: 3,
		},
		{
			name:      "node fetch get",
			sent:      sent{method: "GET", query: "b=2&a=1", headers: wire(fetchAdded...), covered: []string{"x-trustplane-nonce"}},
			want:      []string{"x-trustplane-nonce"},
			wantTried: 1,
		},
		{
			name:      "node fetch with a covered caller header",
			sent:      sent{method: "GET", headers: wire(append([]string{"x-request-id", "r-1"}, fetchAdded...)...), covered: []string{"x-request-id", "x-trustplane-nonce"}},
			want:      []string{"x-request-id", "x-trustplane-nonce"},
			wantTried: 1,
		},
		{
			name:      "caller covers client-added names too",
			sent:      sent{headers: wire("Content-Type", "application/json", "Accept", "application/json"), covered: []string{"accept", "content-type", "x-trustplane-nonce"}},
			want:      []string{"accept", "content-type", "x-trustplane-nonce"},
			wantTried: 2,
		},
		{
			name:      "only the nonce covered among optional names",
			sent:      sent{headers: wire("X-A", "1", "X-B", "2", "X-C", "3"), covered: []string{"x-trustplane-nonce"}},
			want:      []string{"x-trustplane-nonce"},
			wantTried: 8, // {a,b,c}, {a,b}, {a,c}, {b,c}, {a}, {b}, {c}, {}
		},
		{
			name:      "subset order within one size",
			sent:      sent{headers: wire("X-A", "1", "X-B", "2", "X-C", "3"), covered: []string{"x-b", "x-c", "x-trustplane-nonce"}},
			want:      []string{"x-b", "x-c", "x-trustplane-nonce"},
			wantTried: 4,
		},
		{
			name:      "header values trimmed and first value wins",
			sent:      sent{headers: wire("X-A", " \tfirst ", "X-A", "second"), covered: []string{"x-a", "x-trustplane-nonce"}},
			want:      []string{"x-a", "x-trustplane-nonce"},
			wantTried: 1,
		},
		{
			name:      "required header covered",
			sent:      sent{headers: wire("Idempotency-Key", "k", "X-Other", "o"), covered: []string{"idempotency-key", "x-trustplane-nonce"}},
			policy:    Policy{Required: []string{"IDEMPOTENCY-KEY"}},
			want:      []string{"idempotency-key", "x-trustplane-nonce"},
			wantTried: 2, // {x-other} then {}
		},
		{
			name:   "required header sent but not covered",
			sent:   sent{headers: wire("Idempotency-Key", "k"), covered: []string{"x-trustplane-nonce"}},
			policy: Policy{Required: []string{"idempotency-key"}},
			err:    ErrNoMatch,
		},
		{
			name:   "required header missing",
			sent:   sent{headers: wire("X-Other", "o"), covered: []string{"x-trustplane-nonce"}},
			policy: Policy{Required: []string{"Idempotency-Key"}},
			err:    ErrRequiredHeaderMissing,
		},
		{
			name:   "required beats ignore",
			sent:   sent{headers: wire("X-Original-Id", "1"), covered: []string{"x-original-id", "x-trustplane-nonce"}},
			policy: Policy{Required: []string{"x-original-id"}, Ignore: []string{"X-Original-*"}},
			want:   []string{"x-original-id", "x-trustplane-nonce"}, wantTried: 1,
		},
		{
			name: "nonce missing",
			sent: sent{headers: hdrs("Content-Type", "application/json"), covered: nil},
			err:  ErrNonceMissing,
		},
		{
			name:   "ignored name is never covered",
			sent:   sent{headers: wire("X-Original-URI", "/v1/orders"), covered: []string{"x-original-uri", "x-trustplane-nonce"}},
			policy: Policy{Ignore: []string{" x-original-* "}},
			err:    ErrNoMatch,
		},
		{
			name:   "ignored exact name",
			sent:   sent{headers: wire("X-Debug", "1"), covered: []string{"x-trustplane-nonce"}},
			policy: Policy{Ignore: []string{"X-DEBUG"}},
			want:   []string{"x-trustplane-nonce"}, wantTried: 1,
		},
		{
			name: "forwarded headers never covered",
			sent: sent{headers: wire("X-Forwarded-For", "10.0.0.1", "Via", "1.1 lb"), covered: []string{"x-forwarded-for", "x-trustplane-nonce"}},
			err:  ErrNoMatch,
		},
		{
			name:      "more than eight optional names, all covered",
			sent:      sent{headers: wire(nine...), covered: nineNames},
			want:      nineNames,
			wantTried: 1,
		},
		{
			name: "more than eight optional names, a subset covered",
			sent: sent{headers: wire(nine...), covered: nineNames[1:]},
			err:  ErrNoMatch,
		},
		{
			name:   "max candidates bound",
			sent:   sent{headers: wire("Content-Type", "application/json", "X-Ignore-Me", "not-covered"), covered: []string{"content-type", "x-trustplane-nonce"}},
			policy: Policy{MaxCandidates: 2},
			err:    ErrNoMatch,
		},
		{
			name:   "max candidates just enough",
			sent:   sent{headers: wire("Content-Type", "application/json", "X-Ignore-Me", "not-covered"), covered: []string{"content-type", "x-trustplane-nonce"}},
			policy: Policy{MaxCandidates: 3},
			want:   []string{"content-type", "x-trustplane-nonce"}, wantTried: 3,
		},
		{
			name:    "wrong digest",
			sent:    sent{headers: wire("Content-Type", "application/json"), covered: []string{"content-type", "x-trustplane-nonce"}},
			corrupt: true,
			err:     ErrNoMatch,
		},
		{
			name: "malformed query",
			sent: sent{method: "GET", query: "a=%zz", headers: wire(), covered: []string{"x-trustplane-nonce"}},
			err:  ErrMalformedQuery,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var claimed [32]byte
			if tt.err != ErrMalformedQuery {
				claimed = tt.sent.digest(t)
			}
			if tt.corrupt {
				claimed[0] ^= 1
			}
			b := testBinding
			m, err := MatchRequest(tt.sent.request(), &b, &tt.policy, &claimed)
			if !errors.Is(err, tt.err) {
				t.Fatalf("MatchRequest = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if !slices.Equal(m.AllowList, tt.want) || m.Digest != claimed {
				t.Errorf("MatchRequest allow list = %q, digest %x; want %q, %x", m.AllowList, m.Digest, tt.want, claimed)
			}
			if tt.wantTried != 0 && m.Tried != tt.wantTried {
				t.Errorf("MatchRequest tried %d candidates, want %d", m.Tried, tt.wantTried)
			}
		})
	}
}

// TestMatchRequestSubsetsExhaustive checks, for up to eight optional names,
// that every covered subset is found and only as the candidate its rank in
// SPEC §3.4's order says.
func TestMatchRequestSubsetsExhaustive(t *testing.T) {
	names := []string{"accept", "x-a", "x-b", "user-agent", "x-c", "x-d", "x-e", "x-f"}
	var hs []Header
	for _, n := range names {
		hs = append(hs, Header{Name: n, Value: "v-" + n})
	}
	sorted := slices.Sorted(slices.Values(names))
	// order lists every subset (as sorted name lists) in the SPEC order.
	var order [][]string
	noA := []string{}
	for _, n := range sorted {
		if !clientAdded([]byte(n)) {
			noA = append(noA, n)
		}
	}
	order = append(order, noA, sorted)
	var all [][]string
	for mask := range 1 << len(sorted) {
		var s []string
		for i, n := range sorted {
			if mask&(1<<i) != 0 {
				s = append(s, n)
			}
		}
		all = append(all, s)
	}
	slices.SortFunc(all, func(a, b []string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return slices.Compare(a, b)
	})
	for _, s := range all {
		if !slices.Equal(s, noA) && !slices.Equal(s, sorted) {
			order = append(order, s)
		}
	}
	if len(order) != 256 {
		t.Fatalf("%d subsets, want 256", len(order))
	}
	for i, s := range order {
		t.Run(fmt.Sprint(i+1, ":", strings.Join(s, ",")), func(t *testing.T) {
			sn := sent{headers: append(wire(), hs...), covered: append(slices.Clone(s), "x-trustplane-nonce")}
			claimed := sn.digest(t)
			b := testBinding
			m, err := MatchRequest(sn.request(), &b, nil, &claimed)
			if err != nil || m.Tried != i+1 {
				t.Fatalf("MatchRequest = tried %d, %v; want tried %d", m.Tried, err, i+1)
			}
			m, err = MatchRequest(sn.request(), &b, &Policy{MaxCandidates: i}, &claimed)
			if i > 0 && !errors.Is(err, ErrNoMatch) {
				t.Fatalf("MatchRequest with MaxCandidates %d = %v, want %v", i, err, ErrNoMatch)
			}
		})
	}
}

func TestMatchRequestFoldedKeys(t *testing.T) {
	// Two map keys fold to one name: the key first in byte order wins.
	header := map[string][]string{
		"x-trustplane-nonce": {testNonce},
		"X-Tenant":           {"upper"},
		"x-tenant":           {"lower"},
	}
	for _, tc := range []struct {
		value string
		err   error
	}{{"upper", nil}, {"lower", ErrNoMatch}} {
		t.Run(tc.value, func(t *testing.T) {
			sn := sent{headers: hdrs("X-TrustPlane-Nonce", testNonce, "X-Tenant", tc.value), covered: []string{"x-tenant", "x-trustplane-nonce"}}
			claimed := sn.digest(t)
			req := sn.request()
			req.Header = header
			b := testBinding
			if _, err := MatchRequest(req, &b, nil, &claimed); !errors.Is(err, tc.err) {
				t.Errorf("MatchRequest = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestMatchRequestContentEncoding(t *testing.T) {
	// content_encoding is trimmed and lower-cased from the first value, and
	// the line changes the digest even when the header is not covered.
	sn := sent{headers: wire("Content-Encoding", " GZIP "), covered: []string{"x-trustplane-nonce"}}
	claimed := sn.digest(t)
	b := testBinding
	req := sn.request()
	if _, err := MatchRequest(req, &b, nil, &claimed); err != nil {
		t.Fatalf("MatchRequest = %v", err)
	}
	req.Header["Content-Encoding"] = []string{"br"}
	if _, err := MatchRequest(req, &b, nil, &claimed); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("MatchRequest with another encoding = %v, want %v", err, ErrNoMatch)
	}
}

func TestMatchRequestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	sn := derivedShaped()
	claimed := sn.digest(t)
	req := sn.request()
	b := testBinding
	MatchRequest(req, &b, nil, &claimed)
	// The allow list (one string and one slice) is all a match allocates.
	if n := testing.AllocsPerRun(100, func() { MatchRequest(req, &b, nil, &claimed) }); n > 3 {
		t.Errorf("MatchRequest: %v allocs, want at most 3", n)
	}
}

func derivedShaped() sent {
	return sent{
		headers: wire("Content-Type", "application/json", "X-Ignore-Me", "not-covered", "User-Agent", "python", "Accept-Encoding", "identity"),
		covered: []string{"content-type", "x-trustplane-nonce"},
	}
}

func TestCanonicalCoveredHeaderAbsent(t *testing.T) {
	_, err := Canonical(&Fields{Headers: hdrs("A", "1"), AllowList: []string{"a", "b"}})
	if err == nil {
		t.Fatal("Canonical with an absent covered header: no error")
	}
}
