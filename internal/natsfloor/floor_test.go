package natsfloor

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/loadgen"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// TestFloorStreamsOnlyRename: the floor's copies of the ledger's and the
// audit stream's configurations (as ledger.StreamConfig and
// audit.EnsureStream make them) differ in nothing but the name, the
// subjects, the description and the audit copy's max bytes.
func TestFloorStreamsOnlyRename(t *testing.T) {
	s := natstest.Server(t)
	js, err := jetstream.New(natstest.Connect(t, s.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := audit.EnsureStream(ctx, js, audit.StreamConfig{}, nil); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, audit.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	ac := st.CachedInfo().Config
	lc := ledger.StreamConfig(ledger.DefaultBucket, 3, 20*time.Minute, nil)

	fl, fa, err := Streams(lc, ac)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name            string
		orig, copy      jetstream.StreamConfig
		wantName        string
		wantSubjects    []string
		wantMaxBytes    int64
		wantDescription string
	}{
		{"ledger", lc, fl, "KV_FLOORBENCH_REPLAY", []string{"$KV.FLOORBENCH_REPLAY.>"}, lc.MaxBytes, "tpload nats-floor copy: " + lc.Description},
		{"audit", ac, fa, "FLOORBENCH_AUDIT", []string{"floorbench.audit.>"}, floorAuditMaxBytes, "tpload nats-floor copy: " + ac.Description},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.copy.Name != tc.wantName || !reflect.DeepEqual(tc.copy.Subjects, tc.wantSubjects) ||
				tc.copy.MaxBytes != tc.wantMaxBytes || tc.copy.Description != tc.wantDescription {
				t.Errorf("copy: name %q subjects %q max bytes %d description %q; want %q %q %d %q",
					tc.copy.Name, tc.copy.Subjects, tc.copy.MaxBytes, tc.copy.Description,
					tc.wantName, tc.wantSubjects, tc.wantMaxBytes, tc.wantDescription)
			}
			// The same length: subjects keep their size.
			if len(tc.copy.Subjects[0]) != len(tc.orig.Subjects[0]) {
				t.Errorf("subject %q is %d bytes, the original %q %d", tc.copy.Subjects[0], len(tc.copy.Subjects[0]), tc.orig.Subjects[0], len(tc.orig.Subjects[0]))
			}
			c := tc.copy
			c.Name, c.Subjects, c.MaxBytes, c.Description = tc.orig.Name, tc.orig.Subjects, tc.orig.MaxBytes, tc.orig.Description
			if !reflect.DeepEqual(c, tc.orig) {
				t.Errorf("copy differs in more than name, subjects, description and max bytes:\n got %+v\nwant %+v", c, tc.orig)
			}
		})
	}
	if _, _, err := Streams(jetstream.StreamConfig{Name: "OTHER"}, ac); err == nil {
		t.Error("FloorStreams of a stream without TRUSTPLANE in its name: want an error")
	}
}

// floorCluster is three servers with monitoring, the ledger bucket and the
// audit stream at R3, one consumed jti and one signed allow event, made by
// the ledger and the audit publisher themselves.
func floorCluster(t *testing.T) (servers []*server.Server, monitors []string, admin jetstream.JetStream) {
	t.Helper()
	servers = natstest.ClusterWith(t, 3, func(o *server.Options) {
		o.HTTPHost, o.HTTPPort = "127.0.0.1", server.RANDOM_PORT
	})
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
		monitors = append(monitors, "http://"+s.MonitorAddr().String())
	}
	ctx := t.Context()
	nc := natstest.Connect(t, urls...)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(ctx, ledger.Config{JetStream: js, Replicas: 3, MaxAge: 20 * time.Minute, NodeID: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	key := core.NewLedgerKey("https://issuer.example", "jti-1")
	if err := l.Consume(ctx, key, 10*time.Minute, core.LedgerEntry{RouteID: "orders.get"}); err != nil {
		t.Fatal(err)
	}

	spool, err := audit.OpenSpool(audit.SpoolConfig{Dir: t.TempDir(), NodeID: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, signKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := audit.NewPublisher(audit.PublisherConfig{Spool: spool, Conn: nc, Stream: audit.StreamConfig{Replicas: 3}, SignKey: signKey})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pub.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done; spool.Close() })
	e := &audit.Event{Version: audit.Version, OccurredAt: audit.Timestamp(time.Now()), Component: "verifier",
		Outcome: audit.OutcomeAllow, Accepted: true, ReasonCode: reason.Allowed, RouteID: "orders.get",
		JTI: "jti-1", Method: "GET", Path: "/v1/orders/ord_42", Status: 200}
	if err := spool.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := pub.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	return servers, monitors, js
}

// TestFloor runs the floor on three servers against streams and messages
// the ledger and the audit publisher made: every pair is a create into an
// R3 copy of the ledger led by the ledger's leader and an event into an R3
// copy of the audit stream led by its leader, with the originals' headers
// and sizes; nothing else is sent; the copies are deleted afterwards.
func TestFloor(t *testing.T) {
	_, monitors, admin := floorCluster(t)
	ctx := t.Context()

	// A node's connection, found by its name as a verifier's would be.
	node, err := natsx.Connect(ctx, natsURLs(t, admin), "verifierd node-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	urls, err := loadgen.ConnectionServers(ctx, monitors, "verifierd")
	if err != nil {
		t.Fatal(err)
	}
	if len(urls) != 1 || urls[0] != "nats://"+strings.TrimPrefix(node.ConnectedUrl(), "nats://") {
		t.Errorf("ConnectionServers = %q, want the one server verifierd node-1 is on (%s)", urls, node.ConnectedUrl())
	}
	var conns []*nats.Conn
	for i, u := range urls {
		nc, err := natsx.Connect(ctx, u, fmt.Sprintf("tpload-floor-%d", i+1), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conns = append(conns, nc)
	}

	const pairs = 300
	rep, err := Run(ctx, Config{
		Conns: conns, Admin: admin, Workers: 8, Pairs: pairs, Duration: time.Minute, Warmup: 10, Keep: true,
		CPU: []loadgen.CPUGroup{{Role: "nats", PIDs: []int{os.Getpid()}}}, NATSMonitor: monitors,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Answered != pairs || rep.Errors.Total() != 0 || rep.Outcomes["created"] != pairs {
		t.Fatalf("floor: %d answered, outcomes %v, errors %+v; want %d created, no errors", rep.Answered, rep.Outcomes, rep.Errors, pairs)
	}
	if len(rep.CPU) == 0 || rep.CPU[0].Role != "nats" || rep.CPU[0].Seconds <= 0 {
		t.Errorf("floor CPU = %+v, want the nats group's time", rep.CPU)
	}
	u := rep.NATS
	for _, tc := range []struct{ copy, orig string }{{"KV_FLOORBENCH_REPLAY", "KV_TRUSTPLANE_REPLAY"}, {"FLOORBENCH_AUDIT", audit.DefaultStream}} {
		c, o := u.Stream(tc.copy), u.Stream(tc.orig)
		if c == nil || o == nil {
			t.Fatalf("streams in the report: %+v; want %s and %s", u.Streams, tc.copy, tc.orig)
		}
		if c.Added != pairs || c.Replicas != 3 || c.Leader != o.Leader || o.Added != 0 {
			t.Errorf("%s: %+v, %s: %+v; want %d added at R3 under the original's leader, nothing added to the original", tc.copy, *c, tc.orig, *o, pairs)
		}
	}
	if got := u.ClientMsgsPerOp("tpload-floor", pairs); got != 2 {
		t.Errorf("floor connections sent %v messages per pair, want 2 (one create, one event)", got)
	}
	if u.APITotal != 0 {
		t.Errorf("JetStream API requests during the run: %d, want 0", u.APITotal)
	}

	// The messages are the originals' shape.
	for _, tc := range []struct{ orig, copy, subj, copySubj string }{
		{"KV_TRUSTPLANE_REPLAY", "KV_FLOORBENCH_REPLAY", "$KV.TRUSTPLANE_REPLAY.*", "$KV.FLOORBENCH_REPLAY.*"},
		{audit.DefaultStream, "FLOORBENCH_AUDIT", "trustplane.audit.allow.>", "floorbench.audit.allow.>"},
	} {
		o := lastMsg(t, admin, tc.orig, tc.subj)
		c := lastMsg(t, admin, tc.copy, tc.copySubj)
		if len(c.Subject) != len(o.Subject) || len(c.Data) != len(o.Data) {
			t.Errorf("%s: subject %q and %d bytes of data, original %q and %d", tc.copy, c.Subject, len(c.Data), o.Subject, len(o.Data))
		}
		for k := range sentHeader(o.Header) {
			if len(c.Header.Get(k)) != len(o.Header.Get(k)) {
				t.Errorf("%s: header %s %q, original %q", tc.copy, k, c.Header.Get(k), o.Header.Get(k))
			}
		}
		if id := o.Header.Get(jetstream.MsgIDHeader); id != "" && id == c.Header.Get(jetstream.MsgIDHeader) {
			t.Errorf("%s: message id %s repeated from the original", tc.copy, id)
		}
	}
	if lm := lastMsg(t, admin, "KV_TRUSTPLANE_REPLAY", "$KV.TRUSTPLANE_REPLAY.*"); lm.Header.Get(jetstream.MsgTTLHeader) == "" {
		t.Error("the ledger's message has no Nats-TTL: the copy would not carry one either")
	}

	// Without Keep, the copies go.
	rep, err = Run(ctx, Config{Conns: conns, Admin: admin, Workers: 2, Pairs: 20, Warmup: 1})
	if err != nil || rep.Answered != 20 {
		t.Fatalf("second floor run: %v, %d answered; want 20 (an earlier copy is replaced)", err, rep.Answered)
	}
	for _, name := range []string{"KV_FLOORBENCH_REPLAY", "FLOORBENCH_AUDIT"} {
		if _, err := admin.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("stream %s after a run without Keep: %v, want not found", name, err)
		}
	}
}

func lastMsg(t *testing.T, js jetstream.JetStream, stream, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	st, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(t.Context(), subject)
	if err != nil {
		t.Fatalf("%s: last message on %s: %v", stream, subject, err)
	}
	return m
}

func natsURLs(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	return strings.Join(js.Conn().Servers(), ",")
}
