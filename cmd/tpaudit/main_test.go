package main

import (
	"bytes"
	"context"
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
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// fill publishes n events of node through the real spool and publisher.
func fill(t *testing.T, nc *nats.Conn, node string, n int) {
	t.Helper()
	s, err := audit.OpenSpool(audit.SpoolConfig{Dir: t.TempDir(), NodeID: node})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := audit.EnsureStream(t.Context(), natstest.JetStream(t, nc), audit.StreamConfig{}, nil); err != nil {
		t.Fatal(err)
	}
	p, err := audit.NewPublisher(audit.PublisherConfig{Spool: s, Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	for i := range n {
		e := &audit.Event{Component: "verifier", Outcome: audit.OutcomeDeny, ReasonCode: reason.PassportMissing,
			RequestID: fmt.Sprintf("%s-%d", node, i), RouteID: "orders.get", Status: 401}
		if i%3 == 0 {
			e.Outcome, e.ReasonCode, e.Accepted, e.Status = audit.OutcomeAllow, reason.Allowed, true, 200
		}
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
		if _, err := js.Publish(ctx, strings.ToLower(name)+"."+strings.TrimPrefix(m.Subject, "trustplane."), data); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerifyTamper: verify finds two nodes' chains whole, then a deleted
// event and an altered event in tampered copies of the stream.
func TestVerifyTamper(t *testing.T) {
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	js := natstest.JetStream(t, nc)
	fill(t, nc, "node-a", 20)
	fill(t, nc, "node-b", 10)
	url := srv.ClientURL()

	if code, out := tpaudit(t, url, "verify"); code != 0 || !strings.Contains(out, "every chain whole") {
		t.Fatalf("verify of the real stream = %d\n%s", code, out)
	} else {
		t.Logf("verify:\n%s", out)
	}

	copyStream(t, js, "DELETED", func(seq uint64, data []byte) []byte {
		if seq == 7 {
			return nil
		}
		return data
	})
	code, out := tpaudit(t, url, "verify", "--stream", "DELETED")
	if code != exitProblems || !strings.Contains(out, "PROBLEM gap") {
		t.Errorf("verify with a deleted event = %d, want %d and a gap\n%s", code, exitProblems, out)
	}
	t.Logf("verify DELETED:\n%s", out)

	copyStream(t, js, "ALTERED", func(seq uint64, data []byte) []byte {
		if seq == 4 { // an allow of node-a; the attacker rewrites who it was
			return bytes.Replace(data, []byte(`"request_id":"node-a-3"`), []byte(`"request_id":"forged-3"`), 1)
		}
		return data
	})
	code, out = tpaudit(t, url, "verify", "--stream", "ALTERED")
	if code != exitProblems || !strings.Contains(out, "PROBLEM altered") {
		t.Errorf("verify with an altered event = %d, want %d and altered\n%s", code, exitProblems, out)
	}
	t.Logf("verify ALTERED:\n%s", out)
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
