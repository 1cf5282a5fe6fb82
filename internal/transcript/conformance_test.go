package transcript

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

type vectorHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type selectedHeader struct {
	Name        string `json:"name"`
	ValueSHA256 string `json:"value_sha256"`
}

type headersBlock struct {
	AllowList []string         `json:"allow_list"`
	Selected  []selectedHeader `json:"selected"`
}

// transcriptVector is the shape of transcript-v1*.json.
type transcriptVector struct {
	VectorID   string `json:"vector_id"`
	RawRequest struct {
		Query    string         `json:"query"`
		BodyUTF8 string         `json:"body_utf8"`
		Headers  []vectorHeader `json:"headers"`
	} `json:"raw_request"`
	Transcript struct {
		Method, Scheme, Authority, Path, Audience string
		RouteID                                   string `json:"route_id"`
		ContentEncoding                           string `json:"content_encoding"`
		QueryNormalization                        struct {
			Algorithm, Normalized, SHA256 string
		} `json:"query_normalization"`
		QuerySHA256 string       `json:"query_sha256"`
		Headers     headersBlock `json:"headers"`
		BodySHA256  string       `json:"body_sha256"`
		PassportJTI string       `json:"passport_jti"`
		Nonce       string       `json:"nonce"`
		IssuedAt    int64        `json:"issued_at"`
		TimeBucket  int64        `json:"time_bucket"`
		KeyBinding  string       `json:"key_binding"`
	} `json:"transcript"`
	Canonical struct {
		Lines  []string `json:"lines"`
		SHA256 string   `json:"sha256"`
	} `json:"canonical"`
}

// TestConformance runs every manifest vector of a contract this package
// implements, each as a subtest named by its id.
func TestConformance(t *testing.T) {
	conformance.Run(t, "transcript-v1", testTranscriptVector)
	conformance.Run(t, "body-sha256", testBodyVector)
	conformance.Run(t, "broker-ipc-v1", testBrokerVector)
}

func testTranscriptVector(t *testing.T, vec transcriptVector) {
	tr := vec.Transcript
	want := strings.Join(vec.Canonical.Lines, "\n")

	headers := make([]Header, len(vec.RawRequest.Headers))
	for i, h := range vec.RawRequest.Headers {
		headers[i] = Header{Name: h.Name, Value: h.Value}
	}
	body := BodySHA256([]byte(vec.RawRequest.BodyUTF8))
	if body != tr.BodySHA256 {
		t.Errorf("BodySHA256 = %s, want %s", body, tr.BodySHA256)
	}
	q, err := NormalizeQuery(vec.RawRequest.Query)
	if err != nil || q != tr.QueryNormalization.Normalized {
		t.Errorf("NormalizeQuery(%q) = %q, %v; want %q", vec.RawRequest.Query, q, err, tr.QueryNormalization.Normalized)
	}
	if got := hexSHA256(q); got != tr.QueryNormalization.SHA256 || got != tr.QuerySHA256 {
		t.Errorf("query sha256 = %s, want %s and %s", got, tr.QueryNormalization.SHA256, tr.QuerySHA256)
	}
	if got := timeBucket(tr.IssuedAt); got != tr.TimeBucket {
		t.Errorf("timeBucket(%d) = %d, want %d", tr.IssuedAt, got, tr.TimeBucket)
	}
	for _, s := range tr.Headers.Selected {
		v, _ := firstHeader(headers, s.Name)
		if got := hexSHA256(v); got != s.ValueSHA256 {
			t.Errorf("selected %s = %s, want %s", s.Name, got, s.ValueSHA256)
		}
	}

	f := &Fields{
		Method: tr.Method, Scheme: tr.Scheme, Authority: tr.Authority, Path: tr.Path,
		RawQuery: vec.RawRequest.Query, Audience: tr.Audience, RouteID: tr.RouteID,
		ContentEncoding: tr.ContentEncoding, Headers: headers, AllowList: tr.Headers.AllowList,
		BodySHA256: body, PassportJTI: tr.PassportJTI, Nonce: tr.Nonce,
		IssuedAt: tr.IssuedAt, KeyBinding: tr.KeyBinding,
	}
	got, err := Canonical(f)
	if err != nil {
		t.Fatalf("Canonical: %v", err)
	}
	compareLines(t, string(got), want)
	d, err := Digest(f)
	if err != nil || hex.EncodeToString(d[:]) != vec.Canonical.SHA256 {
		t.Errorf("Digest = %x, %v; want %s", d, err, vec.Canonical.SHA256)
	}

	// The verifier's way: the raw headers, X-Ignore-Me uncovered, found by
	// the candidate search.
	req := &Request{
		Method: tr.Method, Scheme: tr.Scheme, Authority: tr.Authority, Path: tr.Path,
		RawQuery: vec.RawRequest.Query, Header: map[string][]string{}, BodySHA256: body,
	}
	for _, h := range headers {
		req.Header[h.Name] = append(req.Header[h.Name], h.Value)
	}
	claimed := mustDigest(t, vec.Canonical.SHA256)
	m, err := MatchRequest(req, &Binding{
		Audience: tr.Audience, RouteID: tr.RouteID, JTI: tr.PassportJTI, Nonce: tr.Nonce,
		IssuedAt: tr.IssuedAt, KeyBinding: tr.KeyBinding,
	}, nil, &claimed)
	if err != nil {
		t.Fatalf("MatchRequest: %v", err)
	}
	if !slices.Equal(m.AllowList, tr.Headers.AllowList) {
		t.Errorf("MatchRequest allow list = %q, want %q", m.AllowList, tr.Headers.AllowList)
	}
}

// bodyVector is the shape of a body-sha256 vector.
type bodyVector struct {
	Vectors []struct {
		ID        string `json:"id"`
		BytesUTF8 string `json:"bytes_utf8"`
		SHA256    string `json:"sha256"`
	} `json:"vectors"`
}

func testBodyVector(t *testing.T, vec bodyVector) {
	if len(vec.Vectors) == 0 {
		t.Fatal("no body vectors")
	}
	for _, c := range vec.Vectors {
		t.Run(c.ID, func(t *testing.T) {
			if got := BodySHA256([]byte(c.BytesUTF8)); got != c.SHA256 {
				t.Errorf("BodySHA256(%q) = %s, want %s", c.BytesUTF8, got, c.SHA256)
			}
		})
	}
}

// brokerVector is the part of broker-ipc-v1.*.json that transcript-v1 binds.
type brokerVector struct {
	Request struct {
		HTTP struct {
			Method, Scheme, Authority, Path string
			ContentEncoding                 string `json:"content_encoding"`
			Query                           struct {
				Raw, Normalization, Normalized, SHA256 string
			}
			Headers    headersBlock `json:"headers"`
			Audience   string       `json:"audience"`
			RouteID    string       `json:"route_id"`
			BodySHA256 string       `json:"body_sha256"`
			Nonce      string       `json:"nonce"`
		} `json:"http"`
		KeyBinding struct {
			Requested string `json:"requested_key_binding"`
		} `json:"key_binding"`
	} `json:"request"`
	Response struct {
		Accepted  bool  `json:"accepted"`
		IssuedAt  int64 `json:"issued_at"`
		Artifacts *struct {
			Passport struct{ JTI string } `json:"passport"`
			Stamp    struct {
				TranscriptSHA256 string `json:"transcript_sha256"`
			} `json:"stamp"`
		} `json:"artifacts"`
	} `json:"response"`
}

func testBrokerVector(t *testing.T, vec brokerVector) {
	h := vec.Request.HTTP
	if h.Query.Normalization != QueryAlgorithm {
		t.Errorf("normalization = %q, want %q", h.Query.Normalization, QueryAlgorithm)
	}
	q, err := NormalizeQuery(h.Query.Raw)
	if err != nil || q != h.Query.Normalized {
		t.Errorf("NormalizeQuery(%q) = %q, %v; want %q", h.Query.Raw, q, err, h.Query.Normalized)
	}
	if got := hexSHA256(q); got != h.Query.SHA256 {
		t.Errorf("query sha256 = %s, want %s", got, h.Query.SHA256)
	}
	for _, s := range h.Headers.Selected {
		if s.Name == "x-trustplane-nonce" && hexSHA256(h.Nonce) != s.ValueSHA256 {
			t.Errorf("nonce hash = %s, want %s", hexSHA256(h.Nonce), s.ValueSHA256)
		}
	}
	if !vec.Response.Accepted {
		if vec.Response.Artifacts != nil {
			t.Errorf("denied exchange carries artifacts")
		}
		return
	}
	if vec.Response.Artifacts == nil {
		t.Fatal("accepted exchange without artifacts")
	}
	// The selected header hashes are given, not their values (the
	// content-type value is not in the vector), so the lines are rebuilt
	// from the hashes as the broker would have.
	b := appendPrefix(nil, &prefixFields{
		method: h.Method, scheme: h.Scheme, authority: h.Authority, path: h.Path,
		audience: h.Audience, routeID: h.RouteID, contentEncoding: h.ContentEncoding,
		query: []byte(q),
	})
	b = append(b, "headers.allow_list="+strings.Join(h.Headers.AllowList, ",")+"\nheaders.selected="...)
	for i, s := range h.Headers.Selected {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, s.Name+":"+s.ValueSHA256...)
	}
	b = appendSuffix(b, h.BodySHA256, vec.Response.Artifacts.Passport.JTI, h.Nonce,
		vec.Response.IssuedAt, vec.Request.KeyBinding.Requested)
	if got, want := hexSHA256(string(b)), vec.Response.Artifacts.Stamp.TranscriptSHA256; got != want {
		t.Errorf("stamp transcript_sha256 = %s, want %s; lines:\n%s", got, want, b)
	}
}

// TestDerivedVector rebuilds DERIVED-software-signed-request.json through
// the verifier's candidate search: X-Ignore-Me is sent but not covered, and
// the search must find content-type,x-trustplane-nonce.
func TestDerivedVector(t *testing.T) {
	vec := conformance.LoadDerived(t)
	hr := vec.HTTPRequest
	u, err := url.Parse(hr.URL)
	if err != nil {
		t.Fatal(err)
	}
	claims := passportClaims(t, vec.PassportToken)
	header := map[string][]string{}
	for k, v := range hr.Headers {
		header[k] = []string{v}
	}
	req := &Request{
		Method: hr.Method, Scheme: u.Scheme, Authority: u.Host, Path: u.EscapedPath(),
		RawQuery: u.RawQuery, Header: header, BodySHA256: BodySHA256([]byte(hr.BodyUTF8)),
	}
	if got := hr.Headers["X-TrustPlane-Body-SHA256"]; got != req.BodySHA256 {
		t.Errorf("body sha256 = %s, header says %s", req.BodySHA256, got)
	}
	b := &Binding{
		Audience: claims.Aud, RouteID: vec.Expected.RouteID, JTI: claims.JTI,
		Nonce: trimSpace(hr.Headers["X-TrustPlane-Nonce"]), IssuedAt: claims.Iat, KeyBinding: claims.Cnf.KeyBinding,
	}
	claimed := mustDigest(t, hr.Headers["X-TrustPlane-Transcript-SHA256"])
	m, err := MatchRequest(req, b, nil, &claimed)
	if err != nil {
		t.Fatalf("MatchRequest = %v, want a match", err)
	}
	if !slices.Equal(m.AllowList, vec.Expected.AllowList) {
		t.Errorf("allow list = %q, want %q", m.AllowList, vec.Expected.AllowList)
	}
	if got := hex.EncodeToString(m.Digest[:]); got != vec.Expected.TranscriptSHA256 {
		t.Errorf("digest = %s, want %s", got, vec.Expected.TranscriptSHA256)
	}
	var hs []Header
	for k, v := range hr.Headers {
		hs = append(hs, Header{Name: k, Value: v})
	}
	lines, err := Canonical(&Fields{
		Method: req.Method, Scheme: req.Scheme, Authority: req.Authority, Path: req.Path,
		RawQuery: req.RawQuery, Audience: b.Audience, RouteID: b.RouteID, Headers: hs,
		AllowList: m.AllowList, BodySHA256: req.BodySHA256, PassportJTI: b.JTI, Nonce: b.Nonce,
		IssuedAt: b.IssuedAt, KeyBinding: b.KeyBinding,
	})
	if err != nil {
		t.Fatal(err)
	}
	compareLines(t, string(lines), strings.Join(vec.Expected.Lines, "\n"))
}

type testClaims struct {
	Aud string `json:"aud"`
	JTI string `json:"jti"`
	Iat int64  `json:"iat"`
	Cnf struct {
		KeyBinding string `json:"key_binding"`
	} `json:"cnf"`
}

func passportClaims(t *testing.T, token string) testClaims {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("passport has %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c testClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// compareLines fails t when got and want differ, printing both sides and
// the first differing line.
func compareLines(t *testing.T, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Errorf("canonical line %d:\n got: %q\nwant: %q", i+1, gl, wl)
			break
		}
	}
	t.Errorf("canonical bytes differ\n--- got\n%s\n--- want\n%s", got, want)
}

func hexSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func mustDigest(t testing.TB, s string) [32]byte {
	t.Helper()
	var d [32]byte
	if n, err := hex.Decode(d[:], []byte(s)); err != nil || n != 32 {
		t.Fatalf("digest %q: %v", s, err)
	}
	return d
}
