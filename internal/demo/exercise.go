package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

// CallerKey reads the demo caller key as a signer key.
func CallerKey(f *Files) (*signer.Key, error) {
	k, err := keyfile.ReadPrivate(f.CallerKey)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return signer.NewKey(k.Seed())
}

// Passport returns the demo world's passport options for kid.
func Passport(kid string) signer.PassportOptions {
	return signer.PassportOptions{
		Issuer: Issuer, Subject: Subject, Audience: Audience, TrustDomain: TrustDomain,
		KID: kid, IssuedAt: time.Now(), TTL: 5 * time.Minute,
	}
}

// NewRequest mints a fresh passport with key and returns the signed HTTP
// request for method and rawURL: the caller side of SPEC §3, as the Python
// SDK's ProtectedClient does it (every caller header covered, plus the
// nonce).
func NewRequest(ctx context.Context, key *signer.Key, po signer.PassportOptions, routeID, method, rawURL string, body []byte, headers []transcript.Header) (*http.Request, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	tok, err := key.MintPassport(po)
	if err != nil {
		return nil, err
	}
	signed, err := key.Sign(tok, &signer.Request{
		Method: method, Scheme: u.Scheme, Authority: u.Host, Path: u.EscapedPath(), RawQuery: u.RawQuery,
		Body: body, Headers: headers, RouteID: routeID,
	})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for _, h := range headers {
		req.Header.Add(h.Name, h.Value)
	}
	for _, h := range signed.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	return req, nil
}

// Exercise sends one signed POST through the verifier at base, then the
// very same request again, and prints both answers: allowed, then denied
// jti_replay.
func Exercise(ctx context.Context, base string, f *Files, out io.Writer) error {
	key, err := CallerKey(f)
	if err != nil {
		return err
	}
	body := []byte(`{"order_id":"ord_123","amount":"42.00"}`)
	req, err := NewRequest(ctx, key, Passport(CallerKID), "orders.create", http.MethodPost, base+"/v1/orders", body,
		[]transcript.Header{{Name: "Content-Type", Value: "application/json"}})
	if err != nil {
		return err
	}
	// The replay: the same bytes, headers and passport.
	replay := req.Clone(ctx)
	replay.Body, replay.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))

	client := &http.Client{Timeout: 10 * time.Second}
	for i, r := range []*http.Request{req, replay} {
		label := "signed request"
		if i == 1 {
			label = "the same request again (replay)"
		}
		resp, err := client.Do(r)
		if err != nil {
			return fmt.Errorf("demo: %s: %w", label, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		fmt.Fprintf(out, "\n==> POST %s/v1/orders: %s\n    %s\n", base, label, resp.Status)
		fmt.Fprintf(out, "    %s\n", strings.TrimSpace(string(b)))
	}
	return nil
}
