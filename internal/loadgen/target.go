package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// CheckTarget returns the base URL of a load target, http://host:port, or
// an error if raw is anything but a plain-HTTP URL of a loopback address.
// Load is never sent off this machine: the generator exists to measure
// local processes, and a mistyped address must not turn it into a flood
// against someone else's server.
func CheckTarget(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("target %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http":
		return "", fmt.Errorf("target %q: scheme %q, want http", raw, u.Scheme)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
		return "", fmt.Errorf("target %q: want http://host:port with nothing after it", raw)
	case u.Port() == "":
		return "", fmt.Errorf("target %q: no port", raw)
	}
	host := u.Hostname()
	if host != "localhost" {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", fmt.Errorf("target %q: host %q is not an IP address or localhost", raw, host)
		}
		if !ip.Unmap().IsLoopback() {
			return "", fmt.Errorf("target %q: %s is not a loopback address; tpload only loads this machine", raw, ip)
		}
	}
	return "http://" + u.Host, nil
}

// loopbackControl refuses, at dial time, a connection to anything but a
// loopback address: "localhost" could resolve elsewhere, and a redirect
// could name another host.
func loopbackControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("dial %s: not a loopback address; tpload only loads this machine", address)
	}
	return nil
}

// newTransport returns a client transport for conns connections that
// dials loopback addresses only.
func newTransport(conns int, timeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: loopbackControl}
	return &http.Transport{
		Proxy: nil, // never an environment proxy: targets are local
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: timeout,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
}
