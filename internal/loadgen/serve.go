package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/tpcluster/tpcluster/internal/demo"
)

// ServeUpstream runs the demo upstream (demo.StartUpstream) on addr until
// ctx is done: the API every run is measured against, in a process of its
// own so its CPU is not counted with the generator's.
func ServeUpstream(ctx context.Context, addr string) error {
	if _, err := CheckTarget("http://" + addr); err != nil {
		return fmt.Errorf("loadgen: upstream listen: %w", err)
	}
	u, err := demo.StartUpstream(ctx, addr)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return u.Close()
}

// ServePlainProxy runs a plain httputil.ReverseProxy on addr in front of
// upstream until ctx is done: the HTTP cost a proxy-mode verifier cannot
// avoid, with the same upstream transport settings and server timeouts as
// verifierd, and nothing else.
func ServePlainProxy(ctx context.Context, addr, upstream string) error {
	if _, err := CheckTarget("http://" + addr); err != nil {
		return fmt.Errorf("loadgen: proxy listen: %w", err)
	}
	base, err := CheckTarget(upstream)
	if err != nil {
		return fmt.Errorf("loadgen: proxy upstream: %w", err)
	}
	u, _ := url.Parse(base) // CheckTarget parsed it
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // the request reaches the upstream as sent, as with verifierd
		},
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   256,
		},
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("loadgen: proxy: %w", err)
	}
	srv := &http.Server{
		Handler:           rp,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("loadgen: proxy: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
