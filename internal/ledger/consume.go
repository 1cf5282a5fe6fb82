package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/natsx"
)

// Consume records key as used for ttl, with e and the node's name and clock
// as the entry's value. It returns nil only if this call created the entry.
// Otherwise the error matches exactly one of core.ErrReplay (the key is
// committed: JetStream reported a wrong last subject sequence, code 10071,
// or, on replicated buckets, 10164 and a read from the stream leader then
// found the key) or core.ErrLedgerUnavailable (anything else: timeout, no
// responders, lost connection, a 10164 whose key the leader does not hold
// within the timeout, a malformed key, a ttl the bucket cannot keep), and
// wraps its cause.
//
// Consume waits at most the ledger's timeout, or until ctx's deadline if
// that is sooner. After a few timeouts in a row the connection is moved to
// another server (natsx.TimeoutWatch). A timeout does not prove the write was lost: the key may
// be consumed all the same, so a retry can see ErrReplay. That is the
// fail-closed side (SPEC §7: never allow on doubt).
func (l *Ledger) Consume(ctx context.Context, key core.LedgerKey, ttl time.Duration, e core.LedgerEntry) error {
	start := time.Now()
	err := l.consume(ctx, key, ttl, e)
	l.failover.Observe(err)
	o := outcomeCreated
	switch {
	case errors.Is(err, core.ErrReplay):
		o = outcomeReplay
	case err != nil:
		o = outcomeUnavailable
	}
	l.metrics.recordConsume(ctx, time.Since(start), o)
	return err
}

// consume is one create-only write, one round trip (SPEC §7): a publish to
// the key's subject carrying Nats-Expected-Last-Subject-Sequence: 0 and
// Nats-TTL. JetStream stores it only if the subject holds no message.
//
// It is not kv.Create, although that sends the same message: when the write
// is refused, kv.Create reads the key back to learn whether it holds a
// delete marker and then writes again, so every replay costs two or three
// round trips, the replay path being the one an attacker drives. Here a
// marker counts as a replay, which is safe because a key expires only after
// its passport stops being accepted (TTL), and markers live one second.
//
// SPEC §7: no Nats-Msg-Id. JetStream's duplicate window would acknowledge a
// repeated message id as success, turning a replay into an allow.
func (l *Ledger) consume(ctx context.Context, key core.LedgerKey, ttl time.Duration, e core.LedgerEntry) error {
	if !validKey(key) {
		// Never echo a malformed key: it may hold caller data.
		return fmt.Errorf("ledger: consume: %w: key is not a lowercase hex SHA-256", core.ErrLedgerUnavailable)
	}
	secs, err := l.ttlSeconds(ttl)
	if err != nil {
		return fmt.Errorf("ledger: consume %s: %w: %w", key, core.ErrLedgerUnavailable, err)
	}
	value := appendEntry(make([]byte, 0, 96), l.node, l.now(), e.RouteID)
	msg := &nats.Msg{
		Subject: l.subjectPrefix + string(key),
		Header: nats.Header{
			jetstream.ExpectedLastSubjSeqHeader: {"0"},
			jetstream.MsgTTLHeader:              {strconv.FormatInt(secs, 10) + "s"},
		},
		Data: value,
	}

	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	floor := l.acks.floor()
	pctx, done := l.inFlight(ctx)
	ack, err := l.js.PublishMsg(pctx, msg)
	err = electedCause(pctx, err)
	done()
	if err == nil {
		// Issue 12: an ack is trusted only if the ledger's stream sent it.
		if err := l.verifyAck(ctx, ack, floor); err != nil {
			return fmt.Errorf("ledger: consume %s: %w: %w", key, core.ErrLedgerUnavailable, err)
		}
		return nil
	}
	if code, ok := natsx.APIErrorCode(err); ok {
		switch code {
		case uint16(jetstream.JSErrCodeStreamWrongLastSequence):
			// Compared against the store: the key is committed.
			return fmt.Errorf("ledger: consume %s: %w: %w", key, core.ErrReplay, err)
		case uint16(jetstream.JSErrCodeStreamWrongLastSequenceConstant):
			// A write to the key is in flight: replay only once the
			// leader holds it (see confirmReplay).
			return l.confirmReplay(ctx, string(key), err)
		}
	}
	return fmt.Errorf("ledger: consume %s: %w: %w", key, core.ErrLedgerUnavailable, err)
}

// ttlSeconds turns ttl into the whole seconds of a Nats-TTL header, rounding
// up: JetStream truncates a fraction, and a key must never leave early.
func (l *Ledger) ttlSeconds(ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("ttl %v: must be positive", ttl)
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	if l.maxAge > 0 && time.Duration(secs)*time.Second > l.maxAge {
		// JetStream would drop the key at the bucket's max age, before
		// its passport expires: refuse rather than open a replay window.
		return 0, fmt.Errorf("ttl %v exceeds the bucket's max age %v", ttl, l.maxAge)
	}
	return secs, nil
}

// appendEntry appends the value stored under a key, for forensics (SPEC
// §7): {"node":..,"at":..,"route_id":..}. Written by hand because it is on
// every decision's path, where encoding/json's reflection showed in
// profiles; TestEntryJSON checks it against encoding/json.
func appendEntry(b []byte, node string, at time.Time, routeID string) []byte {
	b = append(b, `{"node":`...)
	b = appendJSONString(b, node)
	b = append(b, `,"at":"`...)
	b = at.UTC().AppendFormat(b, timeFormat)
	b = append(b, `","route_id":`...)
	b = appendJSONString(b, routeID)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, as
// encoding/json does (without its HTML escaping, which a ledger value does
// not need).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// timeFormat is RFC 3339 in UTC with milliseconds, as audit events are (SPEC §9).
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// validKey reports whether key is 64 lowercase hex digits. Anything else
// could address another subject ('.', '*', '>') and is a broken caller.
func validKey(key core.LedgerKey) bool {
	if len(key) != 64 {
		return false
	}
	for _, c := range []byte(key) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
