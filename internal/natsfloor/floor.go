package natsfloor

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/loadgen"
)

// Default names of the streams a floor run copies (the replay ledger's
// KV stream and the audit stream, SPEC §7 and §9).
const (
	LedgerStream = "KV_TRUSTPLANE_REPLAY"
	AuditStream  = "TRUSTPLANE_AUDIT"
)

// Kind is what a floor report's operations are (loadgen.Report.Expect).
const Kind = "nats-floor"

// floorAuditMaxBytes caps the copy of the audit stream: JetStream reserves
// a stream's max bytes on each replica's server, and a second 512 MiB
// reservation next to the real stream's would not fit the shipped
// servers' max_file_store (1G), nor would two copies while the previous
// run's is still being deleted. A 10 s run stores less than this (about
// 50 MB at 4,500 pairs/s), so the limit discards nothing and costs nothing.
const floorAuditMaxBytes = 128 << 20

// Config is one floor run.
type Config struct {
	// Conns are the connections the pairs go out on, one per verifier
	// node the run stands in for; worker i uses Conns[i % len(Conns)].
	// Required.
	Conns []*nats.Conn
	// Admin may read the ledger's and the audit stream's messages and
	// create and delete streams (the admin role). Required.
	Admin jetstream.JetStream
	// LedgerStream and AuditStream are the streams copied. If empty,
	// the package's LedgerStream and AuditStream.
	LedgerStream, AuditStream string
	// Rate, Workers, Duration and Timeout as in loadgen.Config; Pairs bounds the
	// run by count (if zero, 1,000,000).
	Rate     float64
	Workers  int
	Pairs    int
	Duration time.Duration
	Timeout  time.Duration
	// AuditWindow bounds each connection's audit publishes awaiting an
	// acknowledgement, as the audit publisher's window does. If zero, 256
	// (the publisher's default).
	AuditWindow int
	// AuditLinger, if positive, holds each connection's audit publishes
	// and sends what gathered every AuditLinger, in one burst: the lever
	// "fewer, larger writes" (a Raft round then carries several events).
	// If zero, each pair publishes its event at once.
	AuditLinger time.Duration
	// Warmup pairs are sent before anything is measured. If zero, 200.
	Warmup int
	// Keep leaves the floor's streams in place after the run.
	Keep bool
	// CPU and NATSMonitor as in loadgen.Config.
	CPU         []loadgen.CPUGroup
	NATSMonitor []string
}

// Streams returns the configurations of the floor's two streams:
// ledger and audit, the streams that ran, with only what must differ
// changed: the name and subjects (TRUSTPLANE becomes FLOORBENCH, the same
// length, so subjects keep their size), and the audit copy's max bytes
// (floorAuditMaxBytes at most, see there).
func Streams(ledger, audit jetstream.StreamConfig) (jetstream.StreamConfig, jetstream.StreamConfig, error) {
	l, err := floorCopy(ledger)
	if err != nil {
		return l, l, err
	}
	a, err := floorCopy(audit)
	if err != nil {
		return l, a, err
	}
	if a.MaxBytes < 0 || a.MaxBytes > floorAuditMaxBytes {
		a.MaxBytes = floorAuditMaxBytes
	}
	return l, a, nil
}

// floorName renames a stream name or subject of the real streams.
var floorName = strings.NewReplacer("TRUSTPLANE", "FLOORBENCH", "trustplane", "floorbench")

func floorCopy(c jetstream.StreamConfig) (jetstream.StreamConfig, error) {
	name := floorName.Replace(c.Name)
	if name == c.Name {
		return c, fmt.Errorf("stream %s: no TRUSTPLANE in its name to rename", c.Name)
	}
	c.Name = name
	c.Subjects = append([]string(nil), c.Subjects...)
	for i, s := range c.Subjects {
		c.Subjects[i] = floorName.Replace(s)
	}
	c.Description = "tpload nats-floor copy: " + c.Description
	// Copies carry no sources, mirrors or placement tags of the original.
	c.Mirror, c.Sources = nil, nil
	return c, nil
}

// floorTemplate is a message to repeat: the subject prefix (all but the
// last token for ledger keys), the headers and the data.
type floorTemplate struct {
	subject string
	header  nats.Header
	data    []byte
}

// floorTemplates reads one real jti entry of the ledger and one real allow
// event of the audit stream, so the floor's messages have the sizes and
// headers the run just sent.
func floorTemplates(ctx context.Context, ledger, audit jetstream.Stream) (l, a floorTemplate, err error) {
	lc, ac := ledger.CachedInfo().Config, audit.CachedInfo().Config
	if len(lc.Subjects) != 1 || !strings.HasSuffix(lc.Subjects[0], ".>") {
		return l, a, fmt.Errorf("stream %s: subjects %q, want one ending in .>", lc.Name, lc.Subjects)
	}
	if len(ac.Subjects) != 1 || !strings.HasSuffix(ac.Subjects[0], ".>") {
		return l, a, fmt.Errorf("stream %s: subjects %q, want one ending in .>", ac.Name, ac.Subjects)
	}
	// A jti key is one token (probe keys have three): "*" finds the
	// last consumed jti.
	lp := strings.TrimSuffix(lc.Subjects[0], ">")
	lm, err := ledger.GetLastMsgForSubject(ctx, lp+"*")
	if err != nil {
		return l, a, fmt.Errorf("a consumed jti in %s (run some decisions first): %w", lc.Name, err)
	}
	ap := strings.TrimSuffix(ac.Subjects[0], ">")
	am, err := audit.GetLastMsgForSubject(ctx, ap+"allow.>")
	if err != nil {
		return l, a, fmt.Errorf("an allow event in %s (run some decisions first): %w", ac.Name, err)
	}
	if am.Header.Get(jetstream.MsgIDHeader) == "" {
		return l, a, fmt.Errorf("the allow event in %s has no %s header", ac.Name, jetstream.MsgIDHeader)
	}
	l = floorTemplate{subject: floorName.Replace(lp), header: sentHeader(lm.Header), data: lm.Data}
	a = floorTemplate{subject: floorName.Replace(am.Subject), header: sentHeader(am.Header), data: am.Data}
	return l, a, nil
}

// directGetHeaders are what a direct get adds to a stored message's
// headers; the publisher never sent them.
var directGetHeaders = []string{
	jetstream.StreamHeader, jetstream.SequenceHeader, jetstream.TimeStampHeaer, jetstream.SubjectHeader,
	"Nats-Last-Sequence", "Nats-Num-Pending",
}

// sentHeader returns h without the headers a direct get added.
func sentHeader(h nats.Header) nats.Header {
	out := make(nats.Header, len(h))
	for k, v := range h {
		out[k] = v
	}
	for _, k := range directGetHeaders {
		out.Del(k)
	}
	return out
}

// ledgerMsg is the ledger template for a new key: a create-only put
// (Nats-Expected-Last-Subject-Sequence: 0) with the template's Nats-TTL.
func (t *floorTemplate) ledgerMsg(r *rand.ChaCha8) *nats.Msg {
	var k [32]byte
	_, _ = r.Read(k[:])
	h := nats.Header{jetstream.ExpectedLastSubjSeqHeader: {"0"}}
	if ttl := t.header.Get(jetstream.MsgTTLHeader); ttl != "" {
		h.Set(jetstream.MsgTTLHeader, ttl)
	}
	return &nats.Msg{Subject: t.subject + hex.EncodeToString(k[:]), Header: h, Data: t.data}
}

// auditMsg is the audit template with a new message id (a UUIDv7, as
// event ids are) and every other header as the template had it.
func (t *floorTemplate) auditMsg() *nats.Msg {
	h := make(nats.Header, len(t.header))
	for k, v := range t.header {
		h[k] = v
	}
	h.Set(jetstream.MsgIDHeader, uuid.Must(uuid.NewV7()).String())
	return &nats.Msg{Subject: t.subject, Header: h, Data: t.data}
}

// Run creates the floor's streams (Streams, after deleting any left
// from an earlier run), sends Warmup pairs, then the measured pairs, waits
// for every audit acknowledgement, and reports pairs per second, the
// latency of each pair's create (from its due time in open loop), the CPU
// of cfg.CPU per 1,000 pairs and the servers' counters. A create not
// acknowledged by the floor's ledger stream counts as a transport error; a
// failed audit publish as an unexpected answer. Unless cfg.Keep, the
// streams are deleted at the end.
func Run(ctx context.Context, cfg Config) (*loadgen.Report, error) {
	if len(cfg.Conns) == 0 || cfg.Admin == nil {
		return nil, errors.New("natsfloor: no connections or no admin JetStream")
	}
	cfg.LedgerStream = cmp.Or(cfg.LedgerStream, LedgerStream)
	cfg.AuditStream = cmp.Or(cfg.AuditStream, AuditStream)
	cfg.Workers = cmp.Or(cfg.Workers, 64)
	cfg.Pairs = cmp.Or(cfg.Pairs, 1_000_000)
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	cfg.AuditWindow = cmp.Or(cfg.AuditWindow, 256)
	cfg.Warmup = cmp.Or(cfg.Warmup, 200)

	realLedger, err := cfg.Admin.Stream(ctx, cfg.LedgerStream)
	if err != nil {
		return nil, fmt.Errorf("natsfloor: stream %s: %w", cfg.LedgerStream, err)
	}
	realAudit, err := cfg.Admin.Stream(ctx, cfg.AuditStream)
	if err != nil {
		return nil, fmt.Errorf("natsfloor: stream %s: %w", cfg.AuditStream, err)
	}
	lcfg, acfg, err := Streams(realLedger.CachedInfo().Config, realAudit.CachedInfo().Config)
	if err != nil {
		return nil, fmt.Errorf("natsfloor: %w", err)
	}
	ltpl, atpl, err := floorTemplates(ctx, realLedger, realAudit)
	if err != nil {
		return nil, fmt.Errorf("natsfloor: %w", err)
	}
	for _, sc := range []jetstream.StreamConfig{lcfg, acfg} {
		if err := cfg.Admin.DeleteStream(ctx, sc.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("natsfloor: delete an earlier %s: %w", sc.Name, err)
		}
		if err := createStream(ctx, cfg.Admin, sc); err != nil {
			return nil, fmt.Errorf("natsfloor: create %s: %w", sc.Name, err)
		}
		if !cfg.Keep {
			defer func() {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				_ = cfg.Admin.DeleteStream(dctx, sc.Name)
			}()
		}
	}

	// The copies' leaders on the servers that lead the originals, so
	// that the same servers do the leaders' work.
	if err := followLeader(ctx, cfg.Admin, realLedger, lcfg.Name); err != nil {
		return nil, fmt.Errorf("natsfloor: %w", err)
	}
	if err := followLeader(ctx, cfg.Admin, realAudit, acfg.Name); err != nil {
		return nil, fmt.Errorf("natsfloor: %w", err)
	}

	var auditFailed atomic.Int64
	var lastAuditErr atomic.Pointer[error]
	jss := make([]jetstream.JetStream, len(cfg.Conns))
	for i, nc := range cfg.Conns {
		jss[i], err = jetstream.New(nc,
			jetstream.WithPublishAsyncMaxPending(cfg.AuditWindow),
			jetstream.WithPublishAsyncTimeout(5*time.Second),
			jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
				auditFailed.Add(1)
				lastAuditErr.Store(&err)
			}))
		if err != nil {
			return nil, fmt.Errorf("natsfloor: jetstream: %w", err)
		}
	}

	rands := make([]*rand.ChaCha8, cfg.Workers)
	var seed [32]byte
	for i := range rands {
		seed[0], seed[1] = byte(i), byte(i>>8)
		seed[2] = byte(time.Now().UnixNano())
		rands[i] = rand.NewChaCha8(seed)
	}
	// With a linger, one goroutine per connection sends the gathered
	// events in bursts.
	lingerQ := make([]chan *nats.Msg, len(jss))
	if cfg.AuditLinger > 0 {
		lctx, stopLinger := context.WithCancel(context.WithoutCancel(ctx))
		var lwg sync.WaitGroup
		defer func() { stopLinger(); lwg.Wait() }()
		for i := range jss {
			lingerQ[i] = make(chan *nats.Msg, 4096)
			lwg.Go(func() { lingerLoop(lctx, jss[i], lingerQ[i], cfg.AuditLinger, &auditFailed, &lastAuditErr) })
		}
	}
	pair := func(ctx context.Context, wi int) error {
		js := jss[wi%len(jss)]
		pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		ack, err := js.PublishMsg(pctx, ltpl.ledgerMsg(rands[wi]))
		cancel()
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		if ack.Stream != lcfg.Name {
			return fmt.Errorf("create acknowledged by stream %q, want %q", ack.Stream, lcfg.Name)
		}
		if q := lingerQ[wi%len(jss)]; q != nil {
			q <- atpl.auditMsg()
			return nil
		}
		if _, err := js.PublishMsgAsync(atpl.auditMsg()); err != nil {
			auditFailed.Add(1)
			lastAuditErr.Store(&err)
		}
		return nil
	}
	waitAudit := func() error {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, q := range lingerQ {
			for q != nil && len(q) > 0 {
				if !sleep(wctx, cfg.AuditLinger) {
					return errors.New("natsfloor: lingering audit events not sent after 30 s")
				}
			}
		}
		for _, js := range jss {
			select {
			case <-js.PublishAsyncComplete():
			case <-wctx.Done():
				return fmt.Errorf("natsfloor: audit acknowledgements still pending after 30 s: %d", js.PublishAsyncPending())
			}
		}
		return nil
	}

	for i := range cfg.Warmup {
		if err := pair(ctx, i%cfg.Workers); err != nil {
			return nil, fmt.Errorf("natsfloor: warm-up pair %d: %w", i, err)
		}
	}
	if err := waitAudit(); err != nil {
		return nil, err
	}
	if n := auditFailed.Load(); n > 0 {
		return nil, fmt.Errorf("natsfloor: %d warm-up audit publishes failed, the last: %w", n, *lastAuditErr.Load())
	}
	auditFailed.Store(0)

	return loadgen.RunOps(ctx, loadgen.OpsConfig{
		Kind: Kind, Targets: []string{lcfg.Name, acfg.Name}, Op: pair, Outcome: "created", Ops: cfg.Pairs,
		Rate: cfg.Rate, Workers: cfg.Workers, Duration: cfg.Duration, CPU: cfg.CPU, NATSMonitor: cfg.NATSMonitor,
		Settle: func(context.Context) (int64, error) {
			err := waitAudit()
			n := auditFailed.Load()
			if n > 0 && err == nil {
				err = fmt.Errorf("%d audit publishes failed, the last: %w", n, *lastAuditErr.Load())
			}
			return n, err
		},
	})
}

// stepDownSubject asks a stream's leader to step down, here with a
// preferred successor (nats-server 2.11 and later; a create refuses
// Placement.Preferred).
const stepDownSubject = "$JS.API.STREAM.LEADER.STEPDOWN."

// followLeader moves the leader of stream name to the server that leads
// orig, asking again until it is there (at most 20 s).
func followLeader(ctx context.Context, js jetstream.JetStream, orig jetstream.Stream, name string) error {
	info, err := orig.Info(ctx)
	if err != nil {
		return fmt.Errorf("leader of %s: %w", orig.CachedInfo().Config.Name, err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) == 0 {
		return nil // R1, or no leader to follow
	}
	want := info.Cluster.Leader
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		st, err := js.Stream(ctx, name)
		if err == nil && st.CachedInfo().Cluster != nil {
			last = st.CachedInfo().Cluster.Leader
			if last == want {
				return nil
			}
			if last != "" {
				req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": want}})
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, _ = js.Conn().RequestWithContext(rctx, stepDownSubject+name, req)
				cancel()
			}
		}
		if !sleep(ctx, 250*time.Millisecond) {
			return context.Cause(ctx)
		}
	}
	return fmt.Errorf("stream %s: leader %q, not %s (the leader of %s) after 20 s", name, last, want, orig.CachedInfo().Config.Name)
}

// lingerLoop sends the events queued on q every linger, all at once,
// until ctx ends.
func lingerLoop(ctx context.Context, js jetstream.JetStream, q <-chan *nats.Msg, linger time.Duration, failed *atomic.Int64, last *atomic.Pointer[error]) {
	t := time.NewTicker(linger)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for n := len(q); n > 0; n-- {
			if _, err := js.PublishMsgAsync(<-q); err != nil {
				failed.Add(1)
				last.Store(&err)
			}
		}
	}
}

// sleep waits d and reports whether ctx was still live then.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errNoPeers is JetStream's "no suitable peers for placement" (10005):
// among its causes, storage still reserved by a stream whose deletion the
// servers have not finished accounting for.
const errNoPeers = 10005

// createStream creates sc, asking again for up to 30 s while the servers
// answer errNoPeers: right after the previous run deleted its copies,
// their reservations may not be released yet.
func createStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := js.CreateStream(ctx, sc)
		apiErr, ok := errors.AsType[*jetstream.APIError](err)
		if err == nil || !ok || apiErr.ErrorCode != errNoPeers || time.Now().After(deadline) {
			return err
		}
		if !sleep(ctx, 500*time.Millisecond) {
			return err
		}
	}
}
