package natsx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// probeTimeout bounds each dial of Unreachable.
const probeTimeout = 2 * time.Second

// Unreachable says why the NATS servers of urls (a comma list) cannot be
// reached, one line per server, as a TCP dial finds it: "nats://h:4222:
// dial tcp h:4222: connect: connection refused". nats.go itself reports only
// "no servers available", or "outbound buffer limit exceeded" on the first
// publish of a connection still retrying, which name neither server nor
// cause. It returns nil when every server accepts a TCP connection (the
// cause is then above TCP: TLS, authorization; see the connection's
// LastError). Credentials in the URLs are never repeated.
func Unreachable(ctx context.Context, urls string) error {
	var errs []error
	for raw := range strings.SplitSeq(urls, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			if !strings.Contains(raw, "://") {
				u, err = url.Parse("nats://" + raw)
			}
			if err != nil || u.Host == "" {
				errs = append(errs, errors.New("a NATS URL that does not parse"))
				continue
			}
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "4222")
		}
		shown := u.Scheme + "://" + host
		dctx, cancel := context.WithTimeout(ctx, probeTimeout)
		var d net.Dialer
		c, err := d.DialContext(dctx, "tcp", host)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", shown, err))
			continue
		}
		c.Close()
	}
	return errors.Join(errs...)
}

// RedactURLs returns the comma list urls with any user and password
// replaced, for logs and errors.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
