package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"

	"github.com/tpcluster/tpcluster/internal/demo"
	"github.com/tpcluster/tpcluster/internal/natsauth"
)

// dialable turns a listener's address into one a client on this machine
// can dial: a wildcard host (":8081" listens on [::]) becomes 127.0.0.1.
func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// runDemo sends the demo's requests and prints what to try next. natsURL
// is the embedded server and natsAuth the credentials it requires.
func runDemo(ctx context.Context, addr, natsURL, natsAuth string, files *demo.Files, out io.Writer) error {
	base := "http://" + addr
	if err := demo.Exercise(ctx, base, files, out); err != nil {
		return err
	}
	reader := filepath.Join(natsAuth, natsauth.CredsFile(natsauth.AuditReader))
	fmt.Fprintf(out, `
verifierd is running (proxy mode, embedded NATS, demo bundle in %s). Try your own request:

    go run ./cmd/tpcurl --key %s --kid %s --route-id orders.get --url %s/v1/orders/ord_42
    go run ./cmd/tpcurl --key %s --kid %s --route-id orders.create -X POST -d '{"order_id":"ord_42"}' -H 'Content-Type: application/json' --repeat 2 --url %s/v1/orders
    curl -si %s/v1/orders/ord_42                  # no passport: 401 passport_missing
    curl -s %s/_tp/readyz ; curl -s %s/_tp/metrics | grep tpcluster_decisions

Why was a request denied? Every decision is in the audit stream; give the request_id of a deny body
(or the X-Request-Id of any answer). The embedded NATS server takes only clients with one of the
credentials in %s (one per role); the audit-reader's reads the stream:

    go run ./cmd/tpaudit tail --nats-url %s --nats-creds %s --since 10m --follow=false --text
    go run ./cmd/tpaudit explain --nats-url %s --nats-creds %s REQUEST_ID

Ctrl-C stops it.
`, files.Dir, files.CallerKey, demo.CallerKID, base, files.CallerKey, demo.CallerKID, base, base, base, base,
		natsAuth, natsURL, reader, natsURL, reader)
	return nil
}
