package natsauth_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

const testMaxAge = 960 * time.Second

// deniedWait bounds a call the server refuses: a publish to a subject the
// user may not use is dropped, so a request waits for its timeout.
const deniedWait = time.Second

// secured is a generated security set and a real server running it.
type secured struct {
	dir string
	srv *server.Server
}

func newSecured(t *testing.T) *secured {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(natsauth.Options{Dir: dir, UserTTL: time.Hour}); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	srv := natstest.ServerWithConfig(t, filepath.Join(dir, natsauth.AuthConfFile), filepath.Join(dir, natsauth.TLSConfFile))
	return &secured{dir: dir, srv: srv}
}

// auth returns the validated client settings of role ("" for none).
func (s *secured) auth(t *testing.T, role natsauth.Role) *natsx.ClientAuth {
	t.Helper()
	a := &natsx.ClientAuth{CAFile: filepath.Join(s.dir, natsauth.CAFile)}
	if role != "" {
		a.CredsFile = filepath.Join(s.dir, natsauth.CredsFile(role))
	}
	if errs := a.Validate(time.Now()); len(errs) > 0 {
		t.Fatalf("ClientAuth(%s).Validate: %v", role, errs)
	}
	return a
}

func (s *secured) connect(t *testing.T, role natsauth.Role) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := natsx.ConnectAuth(t.Context(), s.srv.ClientURL(), "test-"+string(role), s.auth(t, role), nil)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	if !nc.IsConnected() {
		t.Fatalf("connect as %s: not connected (%v)", role, nc.LastError())
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// provision creates every stream as admin and returns the admin's handle.
func (s *secured) provision(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := s.connect(t, natsauth.Admin)
	if err := natsauth.Provision(t.Context(), js, natsauth.ProvisionConfig{LedgerMaxAge: testMaxAge}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return js
}

func short(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), deniedWait)
	t.Cleanup(cancel)
	return ctx
}

// TestUnauthenticatedRefused: nothing connects without a credential, and
// nothing connects in plain text to the TLS listener.
func TestUnauthenticatedRefused(t *testing.T) {
	s := newSecured(t)
	tests := []struct {
		name     string
		auth     *natsx.ClientAuth
		wantKind string
	}{
		{"no credential", s.auth(t, ""), natsx.KindAuth},
		{"no TLS", &natsx.ClientAuth{}, natsx.KindTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := natsx.ConnectAuth(t.Context(), s.srv.ClientURL(), "intruder", tt.auth, nil)
			if err == nil {
				nc.Close()
				t.Fatal("ConnectAuth = nil error, want refused")
			}
			ce, ok := errors.AsType[*natsx.ConnectError](err)
			if !ok || ce.Kind != tt.wantKind || !ce.Permanent() {
				t.Fatalf("ConnectAuth = %v, want a permanent %s ConnectError", err, tt.wantKind)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestVerifierRole: a verifier consumes keys, and cannot purge, delete or
// replace one, delete or change any stream, write a bundle, or delete an
// audit event.
func TestVerifierRole(t *testing.T) {
	s := newSecured(t)
	admin := s.provision(t)
	nc, js := s.connect(t, natsauth.Verifier)

	led, err := ledger.New(t.Context(), ledger.Config{JetStream: js, MaxAge: testMaxAge, NoCreate: true, NodeID: "v1"})
	if err != nil {
		t.Fatalf("ledger.New as verifier: %v", err)
	}
	defer led.Close()
	k := core.NewLedgerKey("https://issuer.example", "jti-1")
	if err := led.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); err != nil {
		t.Fatalf("Consume as verifier: %v", err)
	}
	if err := led.Ping(t.Context()); err != nil {
		t.Fatalf("Ping as verifier: %v", err)
	}
	// Audit events go out.
	if _, err := js.Publish(t.Context(), audit.SubjectPrefix+"allow.allowed", []byte(`{}`)); err != nil {
		t.Fatalf("publish an audit event as verifier: %v", err)
	}
	// The bundle bucket is readable.
	kvB, err := js.KeyValue(t.Context(), bundlekv.DefaultBucket)
	if err != nil {
		t.Fatalf("open the bundle bucket as verifier: %v", err)
	}
	if _, err := kvB.Get(t.Context(), bundlekv.KeyPolicyBundle); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("read the bundle bucket as verifier = %v, want key not found", err)
	}

	subject := "$KV." + ledger.DefaultBucket + "." + string(k)
	ledgerStream := "KV_" + ledger.DefaultBucket
	denied := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"purge the ledger", func(ctx context.Context) error {
			st, err := js.Stream(ctx, ledgerStream)
			if err != nil {
				return err
			}
			return st.Purge(ctx, jetstream.WithPurgeSubject(subject))
		}},
		{"delete a ledger message", func(ctx context.Context) error {
			st, err := js.Stream(ctx, ledgerStream)
			if err != nil {
				return err
			}
			return st.DeleteMsg(ctx, 1)
		}},
		{"roll up a key (kv purge)", func(ctx context.Context) error {
			_, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: nats.Header{"KV-Operation": {"PURGE"}, "Nats-Rollup": {"sub"}}})
			return err
		}},
		{"replace a key with a short TTL", func(ctx context.Context) error {
			_, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: nats.Header{"Nats-TTL": {"1s"}}})
			return err
		}},
		{"delete the ledger stream", func(ctx context.Context) error { return js.DeleteStream(ctx, ledgerStream) }},
		{"delete the audit stream", func(ctx context.Context) error { return js.DeleteStream(ctx, audit.DefaultStream) }},
		{"delete the bundle bucket", func(ctx context.Context) error { return js.DeleteKeyValue(ctx, bundlekv.DefaultBucket) }},
		{"create a stream", func(ctx context.Context) error {
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}})
			return err
		}},
		{"update the ledger stream", func(ctx context.Context) error {
			cfg := ledger.StreamConfig(ledger.DefaultBucket, 1, 2*testMaxAge, nil)
			_, err := js.UpdateStream(ctx, cfg)
			return err
		}},
		{"write a bundle", func(ctx context.Context) error {
			_, err := kvB.Put(ctx, bundlekv.KeyPolicyBundle, []byte(`{"forged":true}`))
			return err
		}},
		{"delete an audit event", func(ctx context.Context) error {
			st, err := js.Stream(ctx, audit.DefaultStream)
			if err != nil {
				return err
			}
			return st.DeleteMsg(ctx, 1)
		}},
		{"purge the audit stream", func(ctx context.Context) error {
			st, err := js.Stream(ctx, audit.DefaultStream)
			if err != nil {
				return err
			}
			return st.Purge(ctx)
		}},
	}
	for _, tt := range denied {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(short(t))
			if err == nil {
				t.Fatalf("%s as verifier = nil error, want refused", tt.name)
			}
			refusedBy(t, nc, err)
		})
	}

	// Whatever was tried, the jti is still consumed, every stream is there,
	// no bundle was written, and the audit event is still stored.
	if err := led.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); !errors.Is(err, core.ErrReplay) {
		t.Errorf("Consume of the consumed jti after the attacks = %v, want ErrReplay", err)
	}
	for _, name := range []string{ledgerStream, audit.DefaultStream, "KV_" + bundlekv.DefaultBucket} {
		if _, err := admin.Stream(t.Context(), name); err != nil {
			t.Errorf("stream %s after the attacks: %v", name, err)
		}
	}
	if _, err := admin.Stream(t.Context(), "EVIL"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("stream EVIL created by a verifier: lookup = %v, want not found", err)
	}
	adminKV, err := admin.KeyValue(t.Context(), bundlekv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminKV.Get(t.Context(), bundlekv.KeyPolicyBundle); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("policy bundle after a verifier's write: %v, want key not found", err)
	}
	st, err := admin.Stream(t.Context(), audit.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(t.Context()); err != nil || info.State.Msgs != 1 {
		t.Errorf("audit stream after the attacks: %v events (err %v), want 1", info.State.Msgs, err)
	}
}

// refusedBy checks that a refused call was refused by the server: a
// JetStream API error (a stream lock), or a timeout after the server
// reported a permissions violation (a subject the role may not publish to;
// the server drops it, so the request times out).
func refusedBy(t *testing.T, nc *nats.Conn, err error) {
	t.Helper()
	if _, ok := natsx.APIErrorCode(err); ok {
		t.Logf("refused by the stream: %v", err)
		return
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("refused with %v, want an API error or a timeout after a permissions violation", err)
	}
	last := nc.LastError()
	if !errors.Is(last, nats.ErrPermissionViolation) {
		t.Fatalf("timed out (%v) but the last server error is %v, want a permissions violation", err, last)
	}
	t.Logf("refused by permissions: %v", last)
}

// TestLocksHoldForAdmin: the ledger and audit streams refuse message
// deletes and purges even to admin (deny_delete, deny_purge), and the locks
// cannot be lifted.
func TestLocksHoldForAdmin(t *testing.T) {
	s := newSecured(t)
	admin := s.provision(t)
	for _, name := range []string{"KV_" + ledger.DefaultBucket, audit.DefaultStream} {
		t.Run(name, func(t *testing.T) {
			st, err := admin.Stream(t.Context(), name)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Purge(t.Context()); err == nil {
				t.Error("admin purge = nil error, want refused (deny_purge)")
			}
			if err := st.DeleteMsg(t.Context(), 1); err == nil {
				t.Error("admin message delete = nil error, want refused (deny_delete)")
			}
			cfg := st.CachedInfo().Config
			cfg.DenyPurge, cfg.DenyDelete = false, false
			if _, err := admin.UpdateStream(t.Context(), cfg); err == nil {
				t.Error("admin update lifting deny_purge and deny_delete = nil error, want refused")
			}
		})
	}
}

// TestAuditReaderRole: an audit reader reads the audit stream and can
// publish nothing: no event, no key, no bundle.
func TestAuditReaderRole(t *testing.T) {
	s := newSecured(t)
	admin := s.provision(t)
	if _, err := admin.Publish(t.Context(), audit.SubjectPrefix+"deny.jti_replay", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	nc, js := s.connect(t, natsauth.AuditReader)

	st, err := js.Stream(t.Context(), audit.DefaultStream)
	if err != nil {
		t.Fatalf("audit stream as audit-reader: %v", err)
	}
	if m, err := st.GetMsg(t.Context(), 1); err != nil || string(m.Data) != `{"n":1}` {
		t.Fatalf("get event 1 as audit-reader = %v, %v", m, err)
	}
	cons, err := st.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer as audit-reader: %v", err)
	}
	if msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || string(msg.Data()) != `{"n":1}` {
		t.Fatalf("read the audit stream as audit-reader = %v", err)
	}
	durable, err := st.CreateOrUpdateConsumer(t.Context(), jetstream.ConsumerConfig{Durable: "export", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("durable consumer as audit-reader: %v", err)
	}
	msg, err := durable.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("fetch from the durable consumer: %v", err)
	}
	if err := msg.DoubleAck(t.Context()); err != nil {
		t.Fatalf("ack as audit-reader: %v", err)
	}

	for _, subject := range []string{
		audit.SubjectPrefix + "allow.allowed",
		"$KV." + ledger.DefaultBucket + "." + string(core.NewLedgerKey("i", "j")),
		"$KV." + bundlekv.DefaultBucket + "." + bundlekv.KeyPolicyBundle,
	} {
		t.Run(subject, func(t *testing.T) {
			_, err := js.Publish(short(t), subject, []byte(`{}`))
			if err == nil {
				t.Fatalf("publish to %s as audit-reader = nil error, want refused", subject)
			}
			refusedBy(t, nc, err)
		})
	}
	if _, err := js.CreateStream(short(t), jetstream.StreamConfig{Name: "X", Subjects: []string{"x"}}); err == nil {
		t.Error("create a stream as audit-reader = nil error, want refused")
	}
	if info, err := st.Info(t.Context()); err != nil || info.State.Msgs != 1 {
		t.Errorf("audit stream after the audit reader's publishes: %d events, want 1 (err %v)", info.State.Msgs, err)
	}
}

// TestBundlepubRole: bundlepub writes the bundle bucket and cannot touch
// the ledger or the audit stream.
func TestBundlepubRole(t *testing.T) {
	s := newSecured(t)
	admin := s.provision(t)
	nc, js := s.connect(t, natsauth.Bundlepub)

	kv, err := js.KeyValue(t.Context(), bundlekv.DefaultBucket)
	if err != nil {
		t.Fatalf("bundle bucket as bundlepub: %v", err)
	}
	if _, err := kv.Put(t.Context(), bundlekv.KeyFreshness, []byte(`{}`)); err != nil {
		t.Fatalf("write a beacon as bundlepub: %v", err)
	}
	k := core.NewLedgerKey("https://issuer.example", "jti-b")
	ledgerStream := "KV_" + ledger.DefaultBucket
	denied := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"create a ledger key", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "$KV."+ledger.DefaultBucket+"."+string(k), []byte(`{}`))
			return err
		}},
		{"read the ledger stream", func(ctx context.Context) error { _, err := js.Stream(ctx, ledgerStream); return err }},
		{"purge the ledger", func(ctx context.Context) error {
			return js.DeleteStream(ctx, ledgerStream)
		}},
		{"publish an audit event", func(ctx context.Context) error {
			_, err := js.Publish(ctx, audit.SubjectPrefix+"allow.allowed", []byte(`{}`))
			return err
		}},
		{"delete the bundle bucket", func(ctx context.Context) error { return js.DeleteKeyValue(ctx, bundlekv.DefaultBucket) }},
	}
	for _, tt := range denied {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(short(t))
			if err == nil {
				t.Fatalf("%s as bundlepub = nil error, want refused", tt.name)
			}
			refusedBy(t, nc, err)
		})
	}
	st, err := admin.Stream(t.Context(), ledgerStream)
	if err != nil {
		t.Fatalf("ledger stream after bundlepub's attempts: %v", err)
	}
	if info, err := st.Info(t.Context()); err != nil || info.State.Msgs != 0 {
		t.Errorf("ledger after bundlepub's attempts: %d keys (err %v), want 0", info.State.Msgs, err)
	}
}

// TestStatusRequestReply: bundlepub asks the fleet for its status and a
// verifier answers, to the requester's inbox only (SPEC §10.3 status).
func TestStatusRequestReply(t *testing.T) {
	s := newSecured(t)
	vnc, _ := s.connect(t, natsauth.Verifier)
	sub, err := vnc.Subscribe(bundlekv.StatusSubject, func(m *nats.Msg) { m.Respond([]byte(`{"node_id":"v1"}`)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := vnc.Flush(); err != nil {
		t.Fatal(err)
	}
	bnc, _ := s.connect(t, natsauth.Bundlepub)
	reply, err := bnc.RequestWithContext(short(t), bundlekv.StatusSubject, nil)
	if err != nil || string(reply.Data) != `{"node_id":"v1"}` {
		t.Fatalf("status request as bundlepub = %v, %v; want the verifier's reply", reply, err)
	}
	// A verifier may not publish to anyone's inbox unasked.
	if err := vnc.Publish("_INBOX.forged", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := vnc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !errors.Is(vnc.LastError(), nats.ErrPermissionViolation) {
		if time.Now().After(deadline) {
			t.Fatalf("a verifier's publish to an inbox: last error %v, want a permissions violation", vnc.LastError())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVerifierLeaderRead: the verifier may read a ledger key on the stream
// leader, as the ledger does to confirm a replay whose write is in flight.
func TestVerifierLeaderRead(t *testing.T) {
	s := newSecured(t)
	s.provision(t)
	nc, js := s.connect(t, natsauth.Verifier)
	led, err := ledger.New(t.Context(), ledger.Config{JetStream: js, MaxAge: testMaxAge, NoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	k := core.NewLedgerKey("https://issuer.example", "jti-read")
	if err := led.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	req := []byte(`{"last_by_subj":"$KV.` + ledger.DefaultBucket + `.` + string(k) + `"}`)
	reply, err := nc.RequestWithContext(short(t), "$JS.API.STREAM.MSG.GET.KV_"+ledger.DefaultBucket, req)
	if err != nil {
		t.Fatalf("leader read as verifier: %v (last server error %v)", err, nc.LastError())
	}
	if !strings.Contains(string(reply.Data), `"seq":1`) {
		t.Errorf("leader read as verifier = %s, want the key's message", reply.Data)
	}
}

// TestShardedLedgerRole: with --ledger-shards 3, admin provisions the
// three shard buckets and the verifier role consumes through them.
func TestShardedLedgerRole(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	names := natsauth.Names{LedgerShards: 3}
	if err := natsauth.Generate(natsauth.Options{Dir: dir, Names: names}); err != nil {
		t.Fatal(err)
	}
	s := &secured{dir: dir, srv: natstest.ServerWithConfig(t, filepath.Join(dir, natsauth.AuthConfFile), filepath.Join(dir, natsauth.TLSConfFile))}
	_, admin := s.connect(t, natsauth.Admin)
	if err := natsauth.Provision(t.Context(), admin, natsauth.ProvisionConfig{LedgerMaxAge: testMaxAge, LedgerShards: 3}); err != nil {
		t.Fatalf("Provision with 3 shards: %v", err)
	}
	for i := range 3 {
		if _, err := admin.Stream(t.Context(), "KV_"+ledger.ShardBucket("", i, 3)); err != nil {
			t.Errorf("shard %d after Provision: %v", i, err)
		}
	}
	_, js := s.connect(t, natsauth.Verifier)
	led, err := ledger.NewSharded(t.Context(), ledger.ShardedConfig{Config: ledger.Config{JetStream: js, MaxAge: testMaxAge, NoCreate: true}, Shards: 3})
	if err != nil {
		t.Fatalf("NewSharded as verifier: %v", err)
	}
	defer led.Close()
	for i := range 12 {
		k := core.NewLedgerKey("https://issuer.example", fmt.Sprint("jti-", i))
		if err := led.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); err != nil {
			t.Fatalf("Consume %d as verifier on 3 shards: %v", i, err)
		}
		if err := led.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); !errors.Is(err, core.ErrReplay) {
			t.Fatalf("replay %d as verifier on 3 shards = %v, want ErrReplay", i, err)
		}
	}
}

// TestVerifierWatchesLeaderElections: the verifier may subscribe to its
// ledger stream's leader-elected advisory (the ledger ends the writes in
// flight to an old leader when one arrives), and to no other stream's.
func TestVerifierWatchesLeaderElections(t *testing.T) {
	s := newSecured(t)
	s.provision(t)
	anc, _ := s.connect(t, natsauth.Admin)
	vnc, js := s.connect(t, natsauth.Verifier)
	led, err := ledger.New(t.Context(), ledger.Config{JetStream: js, MaxAge: testMaxAge, NoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	if err := vnc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The advisory as the server sends it; only it (and admin) may.
	subject := "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.KV_" + ledger.DefaultBucket
	testwait.Until(t, 10*time.Second, "the verifier's ledger seeing an election", func() error {
		if err := anc.Publish(subject, []byte(`{}`)); err != nil {
			return err
		}
		if n := led.Elections(); n == 0 {
			return fmt.Errorf("%d elections seen (last error %v)", n, vnc.LastError())
		}
		return nil
	})
	if err := vnc.LastError(); err != nil {
		t.Errorf("verifier connection error after watching elections: %v", err)
	}
	if _, err := vnc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.KV_other"); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "a permissions violation for another stream's advisory", func() error {
		if err := vnc.Flush(); err != nil {
			return err
		}
		if !errors.Is(vnc.LastError(), nats.ErrPermissionViolation) {
			return fmt.Errorf("last error %v", vnc.LastError())
		}
		return nil
	})
}
