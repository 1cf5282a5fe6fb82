// Command tpcurl is the caller side on the command line: it mints a
// passport with a caller key file, signs one HTTP request the way the
// TrustPlane SDKs do (SPEC §3), sends it, and prints the answer. With
// --repeat it sends the very same signed request again, to see a replay
// denied. -d @FILE sends a file's bytes as the body, -d @- standard input.
//
// Exit status, so scripts can tell a denial from a success:
//
//	0  every answer was 2xx
//	1  the request could not be signed
//	2  invalid usage or configuration (every problem listed): flags, the key file, the -d @file
//	3  no answer: the request could not be sent (connection refused, timeout)
//	4  an answer was 4xx: a denial (401, 403, 404, 409, 413, ...)
//	5  an answer was 5xx: the verifier could not decide (503 stale bundle, ledger unavailable)
//
// With --repeat, the highest of these over all answers.
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

// Exit statuses (see the package comment).
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitNoAnswer  = 3
	exitDenied    = 4
	exitUndecided = 5
)

// maxBodyFileBytes bounds -d @FILE: a verifier refuses bodies far smaller.
const maxBodyFileBytes = 64 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are tpcurl's checked flags.
type options struct {
	key     *keyfile.PrivateKey
	kid     string
	po      signer.PassportOptions
	routeID string
	url     string
	method  string
	body    []byte
	repeat  int
	headers []transcript.Header
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if cliflag.IsVersion(args) {
		fmt.Fprintln(stdout, cliflag.Version("tpcurl"))
		return exitOK
	}
	o, err := parse(args, stdin, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "tpcurl: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	key, err := signer.NewKey(o.key.Seed())
	if err != nil {
		fmt.Fprintf(stderr, "tpcurl: %v\n", err)
		return exitFailure
	}
	req, err := demo.NewRequest(ctx, key, o.po, o.routeID, o.method, o.url, o.body, o.headers)
	if err != nil {
		fmt.Fprintf(stderr, "tpcurl: sign the request: %v\n", err)
		return exitFailure
	}
	client := &http.Client{Timeout: 30 * time.Second}
	code := exitOK
	for i := range o.repeat {
		r := req.Clone(ctx)
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(o.body)), int64(len(o.body))
		resp, err := client.Do(r)
		if err != nil {
			fmt.Fprintf(stderr, "tpcurl: #%d %s %s: no answer: %v\n", i+1, r.Method, o.url, err)
			code = max(code, exitNoAnswer)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		fmt.Fprintf(stdout, "#%d %s %s -> %s\n%s\n", i+1, r.Method, o.url, resp.Status, strings.TrimSpace(string(b)))
		switch {
		case resp.StatusCode >= 500:
			code = max(code, exitUndecided)
		case resp.StatusCode >= 400:
			code = max(code, exitDenied)
		}
	}
	return code
}

// parse reads the flags and every file they name, reporting all problems.
func parse(args []string, stdin io.Reader, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("tpcurl", flag.ContinueOnError)
	fs.SetOutput(stderr)
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
		data     = fs.String("d", "", "request body; @FILE reads a file, @- standard input")
		repeat   = fs.Int("repeat", 1, "send the same signed request this many times")
		headers  cliflag.List
	)
	fs.Var(&headers, "H", "covered header 'Name: value' (repeatable)")
	err := cliflag.Parse(fs, args, nil)
	if errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	errs := []error{err}
	bad := func(name string, v any, msg string) { errs = append(errs, cliflag.Problem(name, v, msg)) }
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	o := &options{routeID: *routeID, url: *rawURL, method: strings.ToUpper(*method), repeat: *repeat}
	for _, req := range []struct{ name, v string }{{"key", *keyPath}, {"route-id", *routeID}, {"url", *rawURL}} {
		if req.v == "" {
			bad(req.name, `""`, "required")
		}
	}
	if *repeat < 1 {
		bad("repeat", *repeat, "must be at least 1")
	}
	if *ttl <= 0 {
		bad("ttl", *ttl, "must be positive")
	}
	if *keyPath != "" {
		if o.key, err = keyfile.ReadPrivate(*keyPath); err != nil {
			bad("key", *keyPath, err.Error())
		}
	}
	if o.body, err = readBody(*data, stdin); err != nil {
		bad("d", *data, err.Error())
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			bad("H", h, "want 'Name: value'")
			continue
		}
		o.headers = append(o.headers, transcript.Header{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	o.kid = *kid
	if o.kid == "" {
		o.kid = o.key.KID()
	}
	o.po = signer.PassportOptions{Issuer: *issuer, Subject: *subject, Audience: *audience,
		TrustDomain: *domain, KID: o.kid, IssuedAt: time.Now(), TTL: *ttl}
	return o, nil
}

// readBody is -d: the text itself, @FILE's bytes, or @- standard input, as
// curl reads it (but byte for byte: the body hash covers every byte).
func readBody(d string, stdin io.Reader) ([]byte, error) {
	name, ok := strings.CutPrefix(d, "@")
	if !ok {
		return []byte(d), nil
	}
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("cannot read the body file: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxBodyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the body: %w", err)
	}
	if len(b) > maxBodyFileBytes {
		return nil, fmt.Errorf("body larger than %d bytes", maxBodyFileBytes)
	}
	return b, nil
}
