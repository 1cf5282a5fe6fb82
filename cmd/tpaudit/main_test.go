package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// fill publishes n events of node (every third an allow, the rest
// passport_missing denials), signed with key when one is given.
func fill(t *testing.T, nc *nats.Conn, node string, n int, key ...ed25519.PrivateKey) {
	t.Helper()
	events := make([]*audit.Event, n)
	for i := range events {
		e := &audit.Event{Component: "verifier", Outcome: audit.OutcomeDeny, ReasonCode: reason.PassportMissing,
			RequestID: fmt.Sprintf("%s-%d", node, i), RouteID: "orders.get", Status: 401}
		if i%3 == 0 {
			e.Outcome, e.ReasonCode, e.Accepted, e.Status = audit.OutcomeAllow, reason.Allowed, true, 200
		}
		events[i] = e
	}
	var k ed25519.PrivateKey
	if len(key) > 0 {
		k = key[0]
	}
	publishSigned(t, nc, node, k, events...)
}

// publish appends events of node, unsigned, as publishSigned does.
func publish(t *testing.T, nc *nats.Conn, node string, events ...*audit.Event) {
	t.Helper()
	publishSigned(t, nc, node, nil, events...)
}

// publishSigned appends events of node through the real spool and
// publisher, signed with key when it is not nil, and waits until JetStream
// has them all. The publisher's stop publishes the node's checkpoint.
func publishSigned(t *testing.T, nc *nats.Conn, node string, key ed25519.PrivateKey, events ...*audit.Event) {
	t.Helper()
	s, err := audit.OpenSpool(audit.SpoolConfig{Dir: t.TempDir(), NodeID: node})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := audit.EnsureStream(t.Context(), natstest.JetStream(t, nc), audit.StreamConfig{}, nil); err != nil {
		t.Fatal(err)
	}
	p, err := audit.NewPublisher(audit.PublisherConfig{Spool: s, Conn: nc, SignKey: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	for _, e := range events {
		if err := s.Append(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	fctx, fcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer fcancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatal(err)
	}
}

func tpaudit(t *testing.T, url string, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args[:1:1], append([]string{"--nats-url", url}, args[1:]...)...)
	code := run(t.Context(), args, func(string) (string, bool) { return "", false }, &out, &errOut)
	return code, out.String() + errOut.String()
}

// copyStream copies the audit stream into stream name (subjects
// <name>.audit.>), changing the messages edit returns differently (nil drops
// one), as someone with write access to storage could.
func copyStream(t *testing.T, js jetstream.JetStream, name string, edit func(seq uint64, data []byte) []byte) {
	t.Helper()
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".audit.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	src, err := js.Stream(ctx, audit.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := src.Info(ctx)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := src.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		data := edit(seq, m.Data)
		if data == nil {
			continue
		}
		// The signature goes along, as a copier would take it.
		msg := &nats.Msg{Subject: strings.ToLower(name) + "." + strings.TrimPrefix(m.Subject, "trustplane."), Data: data,
			Header: nats.Header{audit.SignatureHeader: m.Header[audit.SignatureHeader]}}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
}

// auditFleet writes a bundle-signing key and a trust material signed with
// it that lists an audit key per node id (all active), and returns the
// node keys and the flags that make verify read that trust material.
func auditFleet(t *testing.T, nodes ...string) (map[string]ed25519.PrivateKey, []string) {
	t.Helper()
	dir := t.TempDir()
	bk, err := keyfile.Generate("test-bundle")
	if err != nil {
		t.Fatal(err)
	}
	if err := bk.Write(filepath.Join(dir, "bundle")); err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PrivateKey{}
	var list []any
	for _, n := range nodes {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[n] = k
		list = append(list, map[string]any{"node_id": n, "status": "active",
			"public_key_b64url": base64.RawURLEncoding.EncodeToString(k.Public().(ed25519.PublicKey))})
	}
	doc, err := json.Marshal(map[string]any{
		"version": "trustplane-trust-material-v1", "kind": "trust_material", "sequence": 1,
		"issued_at": time.Now().UTC().Format(time.RFC3339), "issuers": []any{}, "audit_nodes": list,
	})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := bundle.Sign(doc, bundle.NewSigningKey(bk), "local://test")
	if err != nil {
		t.Fatal(err)
	}
	trust := filepath.Join(dir, "trust.json")
	if err := os.WriteFile(trust, signed, 0o644); err != nil {
		t.Fatal(err)
	}
	return keys, []string{"--trust-material", trust, "--bundle-public-key", filepath.Join(dir, "bundle.pub")}
}

// TestVerifyTamper: verify finds two nodes' chains whole and signed, then
// a deleted event and an altered event in tampered copies of the stream,
// a node that is not a fleet member, and a purged stream.
func TestVerifyTamper(t *testing.T) {
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	js := natstest.JetStream(t, nc)
	// Deletes and purges allowed, as an attacker with the admin role (or
	// the servers' storage) has them: verify must not rely on the locks.
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: audit.DefaultStream, Subjects: []string{audit.SubjectPrefix + ">"},
		Storage: jetstream.FileStorage, MaxAge: 30 * 24 * time.Hour, MaxBytes: 10 << 30, Duplicates: audit.DuplicateWindow}); err != nil {
		t.Fatal(err)
	}
	keys, trust := auditFleet(t, "node-a", "node-b")
	fill(t, nc, "node-a", 20, keys["node-a"])
	fill(t, nc, "node-b", 10, keys["node-b"])
	url := srv.ClientURL()
	verify := func(args ...string) (int, string) {
		return tpaudit(t, url, append(append([]string{"verify"}, trust...), args...)...)
	}

	if code, out := verify(); code != 0 || !strings.Contains(out, "every chain whole") {
		t.Fatalf("verify of the real stream = %d\n%s", code, out)
	} else {
		t.Logf("verify:\n%s", out)
	}
	if code, out := tpaudit(t, url, "verify"); code != exitUsage || !strings.Contains(out, "--bundle-public-key") {
		t.Errorf("verify without a bundle key = %d, want %d\n%s", code, exitUsage, out)
	}

	copyStream(t, js, "DELETED", func(seq uint64, data []byte) []byte {
		if seq == 7 {
			return nil
		}
		return data
	})
	code, out := verify("--stream", "DELETED")
	if code != exitProblems || !strings.Contains(out, `PROBLEM gap: node "node-a" node_seq 8`) {
		t.Errorf("verify with a deleted event = %d, want %d and a gap\n%s", code, exitProblems, out)
	}
	t.Logf("verify DELETED:\n%s", out)

	copyStream(t, js, "ALTERED", func(seq uint64, data []byte) []byte {
		if seq == 4 { // an allow of node-a; the attacker rewrites who it was
			return bytes.Replace(data, []byte(`"request_id":"node-a-3"`), []byte(`"request_id":"forged-3"`), 1)
		}
		return data
	})
	code, out = verify("--stream", "ALTERED")
	if code != exitProblems || !strings.Contains(out, `PROBLEM altered: node "node-a"`) || !strings.Contains(out, `PROBLEM signature: node "node-a" node_seq 4`) {
		t.Errorf("verify with an altered event = %d, want %d, altered and signature\n%s", code, exitProblems, out)
	}
	t.Logf("verify ALTERED:\n%s", out)

	// A chained, signed history of a node the fleet does not list.
	xk, _ := auditFleet(t, "node-x")
	fill(t, nc, "node-x", 5, xk["node-x"])
	code, out = verify()
	if code != exitProblems || !strings.Contains(out, `PROBLEM unknown_node: node "node-x"`) {
		t.Errorf("verify with a forged node = %d, want %d and unknown_node\n%s", code, exitProblems, out)
	}
	t.Logf("verify with node-x:\n%s", out)

	st, err := js.Stream(t.Context(), audit.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	code, out = verify()
	if code != exitProblems || !strings.Contains(out, "PROBLEM purged") || !strings.Contains(out, `PROBLEM checkpoint: node "node-a"`) {
		t.Errorf("verify of a purged stream = %d, want %d, purged and node-a without a checkpoint\n%s", code, exitProblems, out)
	}
	t.Logf("verify after a purge:\n%s", out)
}

// TestVerifyFleetFromBucket: without --trust-material, verify reads the
// published trust material from the bundle bucket; a trust material not
// signed by --bundle-public-key is refused.
func TestVerifyFleetFromBucket(t *testing.T) {
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	js := natstest.JetStream(t, nc)
	keys, trust := auditFleet(t, "node-a")
	fill(t, nc, "node-a", 3, keys["node-a"])
	data, err := os.ReadFile(trust[1])
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: bundlekv.DefaultBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), bundlekv.KeyTrustMaterial, data); err != nil {
		t.Fatal(err)
	}
	code, out := tpaudit(t, srv.ClientURL(), "verify", "--bundle-public-key", trust[3])
	if code != 0 || !strings.Contains(out, "TRUSTPLANE_BUNDLES/trust-material") {
		t.Errorf("verify with the published trust material = %d\n%s", code, out)
	}
	_, otherTrust := auditFleet(t, "node-a")
	code, out = tpaudit(t, srv.ClientURL(), "verify", "--bundle-public-key", otherTrust[3])
	if code != 1 || !strings.Contains(out, "signature") {
		t.Errorf("verify with another bundle key = %d, want 1 and a signature error\n%s", code, out)
	}
}

func TestTailStatsExport(t *testing.T) {
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	fill(t, nc, "node-a", 9)
	url := srv.ClientURL()

	code, out := tpaudit(t, url, "tail", "--since", "1h", "--follow=false", "--outcome", "allow")
	if code != 0 || strings.Count(out, "\n") != 3 || strings.Contains(out, "passport_missing") {
		t.Errorf("tail --outcome allow = %d\n%s", code, out)
	}
	code, out = tpaudit(t, url, "tail", "--since", "1h", "--follow=false", "--node", "other")
	if code != 0 || out != "" {
		t.Errorf("tail --node other = %d %q", code, out)
	}
	code, out = tpaudit(t, url, "stats", "--window", "1h", "--json")
	if code != 0 || !strings.Contains(out, `"passport_missing": 6`) || !strings.Contains(out, `"allowed": 3`) {
		t.Errorf("stats = %d\n%s", code, out)
	}

	file := filepath.Join(t.TempDir(), "audit.jsonl")
	if code, out := tpaudit(t, url, "export", "--out", file); code != 0 {
		t.Fatalf("export = %d %s", code, out)
	}
	fill(t, nc, "node-b", 4)
	if code, out := tpaudit(t, url, "export", "--out", file); code != 0 {
		t.Fatalf("second export = %d %s", code, out)
	}
	b, _ := os.ReadFile(file)
	if n := strings.Count(string(b), "\n"); n != 13 {
		t.Errorf("two exports wrote %d lines, want 13 (resumed, nothing twice)", n)
	}
}
