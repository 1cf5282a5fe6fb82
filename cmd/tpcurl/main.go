// Command tpcurl is the caller side on the command line: it mints a
// passport with a caller key file, signs one HTTP request the way the
// TrustPlane SDKs do (SPEC §3), sends it, and prints the answer. With
// --repeat it sends the very same signed request again, to see a replay
// denied.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/demo"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "tpcurl: %v\n", err)
		os.Exit(2)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tpcurl", flag.ContinueOnError)
	var (
		keyPath  = fs.String("key", "", "caller key file (NAME.key, trustplane-key-v1)")
		kid      = fs.String("kid", "", "passport header kid (default: the key file's kid)")
		issuer   = fs.String("issuer", demo.Issuer, "passport iss")
		subject  = fs.String("subject", demo.Subject, "passport sub")
		audience = fs.String("audience", demo.Audience, "passport aud")
		domain   = fs.String("trust-domain", demo.TrustDomain, "passport trust_domain")
		ttl      = fs.Duration("ttl", 5*time.Minute, "passport lifetime")
		routeID  = fs.String("route-id", "", "the route the request is signed for (required)")
		rawURL   = fs.String("url", "", "request URL (required)")
		method   = fs.String("X", "GET", "method")
		data     = fs.String("d", "", "request body")
		repeat   = fs.Int("repeat", 1, "send the same signed request this many times")
		headers  cliflag.List
	)
	fs.Var(&headers, "H", "covered header 'Name: value' (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keyPath == "" || *rawURL == "" || *routeID == "" {
		return errors.New("--key, --route-id and --url are required")
	}
	kf, err := keyfile.ReadPrivate(*keyPath)
	if err != nil {
		return err
	}
	key, err := signer.NewKey(kf.Seed())
	if err != nil {
		return err
	}
	if *kid == "" {
		*kid = kf.KID()
	}
	var hs []transcript.Header
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("-H %q: want 'Name: value'", h)
		}
		hs = append(hs, transcript.Header{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	po := signer.PassportOptions{Issuer: *issuer, Subject: *subject, Audience: *audience,
		TrustDomain: *domain, KID: *kid, IssuedAt: time.Now(), TTL: *ttl}
	body := []byte(*data)
	req, err := demo.NewRequest(ctx, key, po, *routeID, strings.ToUpper(*method), *rawURL, body, hs)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range max(*repeat, 1) {
		r := req.Clone(ctx)
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		resp, err := client.Do(r)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		fmt.Fprintf(out, "#%d %s %s -> %s\n%s\n", i+1, r.Method, *rawURL, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}
