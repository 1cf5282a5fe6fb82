// Command verifierd is a tpcluster verifier node: it verifies proof-bound
// HTTP requests (SPEC §6), consumes each passport's jti once in the shared
// replay ledger on NATS JetStream (SPEC §7), and forwards allowed requests
// upstream (proxy mode) or answers a gateway (check mode, /_tp/check).
//
// With no --nats-url it starts an embedded NATS server with JetStream, so one
// binary is a complete verifier. --demo prepares demo keys, bundles and an
// upstream and shows a signed request allowed and its replay denied.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tpcluster/tpcluster/internal/natsx"
)

func main() {
	cfg, err := configure(os.Args[1:], os.LookupEnv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, errVersion) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "verifierd: invalid configuration (verifierd -h lists the flags):\n%v\n", err)
		os.Exit(2)
	}
	log := cfg.newLogger(os.Stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP re-reads the assertion key directory (docs/BACKEND-JWT.md).
	// Caught from the start: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := run(ctx, cfg, log, os.Stdout, hup); err != nil {
		log.Error("verifierd stopped", "err", err)
		if ce, ok := errors.AsType[*natsx.ConnectError](err); ok && ce.Permanent() {
			// Refused TLS or credentials: configuration, like a bad flag.
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run builds a node and runs it until ctx is done; each value on reload
// (SIGHUP) re-reads the assertion key directory.
func run(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer, reload <-chan os.Signal) error {
	n, err := newNode(ctx, cfg, log, out)
	if err != nil {
		return err
	}
	n.reload = reload
	return n.Run(ctx)
}
