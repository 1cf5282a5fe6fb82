package core

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors of the Ledger contract. Match them with errors.Is.
var (
	// ErrReplay means the key was already consumed: the request is a replay.
	ErrReplay = errors.New("jti already consumed")
	// ErrLedgerUnavailable means the ledger could not say whether the key was
	// consumed (timeout, no responders, lost connection, any other error).
	ErrLedgerUnavailable = errors.New("replay ledger unavailable")
)

// LedgerKey is the replay ledger key of SPEC §7: the lowercase hex SHA-256 of
// iss + 0x00 + jti. It never holds caller data in the clear.
type LedgerKey string

// LedgerEntry is what a consume records, for forensics (SPEC §7).
type LedgerEntry struct {
	RouteID string
	// Region is the region whose ledger must hold the key: empty for the
	// node's own, else a home region ([ours], docs/MULTI-REGION.md).
	Region string
}

// Ledger consumes passport jtis exactly once across every node sharing it.
type Ledger interface {
	// Consume marks key used for ttl. It returns nil only if this call created
	// the entry; any other result matches exactly one of ErrReplay or
	// ErrLedgerUnavailable. It must be safe for concurrent use.
	Consume(ctx context.Context, key LedgerKey, ttl time.Duration, entry LedgerEntry) error
}
