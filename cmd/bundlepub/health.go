package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// health answers Kubernetes probes for bundlepub publish (deploy/k8s).
//
//	/healthz  200 while the beacon loop runs: it tried a beacon within the
//	          window, whether NATS took it or not. A restart cannot fix
//	          NATS, so a NATS outage must not fail liveness.
//	/readyz   200 while beacons are flowing: one was put within the window.
//
// Without a beacon key (watch only) both answer 200 once publishing began.
type health struct {
	times  func() (tried, put time.Time) // bundlekv.Publisher.BeaconTimes
	window time.Duration                 // how old the last attempt or put may be
	start  time.Time                     // a fresh loop gets one window before its first beacon
	now    func() time.Time
}

func (h *health) check(last time.Time) error {
	if h.times == nil {
		return nil
	}
	ref := last
	if ref.IsZero() {
		ref = h.start
	}
	if age := h.now().Sub(ref); age > h.window {
		if last.IsZero() {
			return fmt.Errorf("no beacon in %s since start", age.Round(time.Second))
		}
		return fmt.Errorf("last beacon %s ago, window %s", age.Round(time.Second), h.window)
	}
	return nil
}

func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var tried, put time.Time
	if h.times != nil {
		tried, put = h.times()
	}
	var err error
	switch r.URL.Path {
	case "/healthz":
		err = h.check(tried)
	case "/readyz":
		err = h.check(put)
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, err)
		return
	}
	fmt.Fprintln(w, "ok")
}

// serveHealth serves h on ln until ctx is done, then shuts the server
// down; it returns the server's error, nil after a shutdown.
func serveHealth(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("health listener: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("health listener shutdown", "err", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("health listener: %w", err)
	}
	return nil
}
