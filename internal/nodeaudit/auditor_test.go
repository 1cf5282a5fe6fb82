package nodeaudit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/proxy"
	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestAuditorSendsEveryEvent: a decision, a changed pair (two documents, so
// two events), the same pair again (no event) and a rejection reach the
// stream by Shutdown, and the auditor leaves no goroutine behind.
func TestAuditorSendsEveryEvent(t *testing.T) {
	// Registered first, so it runs after the server and connection cleanups.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	s := natstest.Server(t)
	nc := natstest.Connect(t, s.ClientURL())
	js := natstest.JetStream(t, nc)

	a, err := Open(Config{
		Spool: audit.SpoolConfig{Dir: t.TempDir(), NodeID: "n1"},
		Conn:  nc,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CheckStream(t.Context()); err == nil {
		t.Error("CheckStream before Start = nil, want not checked yet")
	}
	a.Start(t.Context())
	// The readiness check passes once the publisher created the stream.
	testwait.Until(t, 30*time.Second, "CheckStream passes after Start", func() error { return a.CheckStream(t.Context()) })
	if !a.Room() {
		t.Fatal("Room() = false on an empty spool")
	}
	d := &core.Decision{Outcome: core.Allow, Reason: reason.Allowed, Status: 200, RouteID: "orders.get"}
	if err := a.Record(t.Context(), &proxy.Record{Decision: d, RequestID: "r1", Method: "GET", Path: "/"}); err != nil {
		t.Fatalf("Record: %v", err)
	}
	pair := &core.Snapshot{Policy: &bundle.Policy{Sequence: 1, SHA256: "p1"}, Trust: &bundle.TrustMaterial{Sequence: 1, SHA256: "t1"}}
	a.OnFileApply(pair)
	a.OnFileApply(pair)
	a.OnFileReject("policy bundle", errors.New("signature invalid"))

	a.Shutdown(t.Context(), 10*time.Second)
	if n := a.Pending(); n != 0 {
		t.Errorf("after Shutdown %d events pending, want 0", n)
	}
	st, err := js.Stream(t.Context(), audit.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Msgs; got != 4 {
		t.Errorf("stream holds %d events, want 4 (decision, trust and policy applied, policy rejected)", got)
	}
	if err := a.Record(t.Context(), &proxy.Record{Decision: d}); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Record after Shutdown = %v, want audit.ErrClosed (the proxy denies audit_unavailable)", err)
	}
	a.Close() // a second close is harmless
}

// TestAuditorRecordsAssertion: an allow that minted a backend assertion
// reaches the audit stream with the event id the assertion names (not one
// the spool made up) and the assertion's jti and key id
// (docs/BACKEND-JWT.md); an allow without one carries neither member.
func TestAuditorRecordsAssertion(t *testing.T) {
	s := natstest.Server(t)
	nc := natstest.Connect(t, s.ClientURL())
	js := natstest.JetStream(t, nc)
	a, err := Open(Config{Spool: audit.SpoolConfig{Dir: t.TempDir(), NodeID: "n1"}, Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	a.Start(t.Context())
	d := &core.Decision{Outcome: core.Allow, Reason: reason.Allowed, Status: 200, RouteID: "orders.get"}
	const eventID = "01890a5d-ac96-774b-bcce-b302099a8057"
	if err := a.Record(t.Context(), &proxy.Record{Decision: d, RequestID: "r1", Method: "GET", Path: "/",
		EventID: eventID, AssertionJTI: "aj-1", AssertionKID: "node-1"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Record(t.Context(), &proxy.Record{Decision: d, RequestID: "r2", Method: "GET", Path: "/"}); err != nil {
		t.Fatal(err)
	}
	a.Shutdown(t.Context(), 10*time.Second)
	st, err := js.Stream(t.Context(), audit.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	var e audit.Event
	if err := json.Unmarshal(first.Data, &e); err != nil {
		t.Fatal(err)
	}
	if e.EventID != eventID || e.AssertionJTI != "aj-1" || e.AssertionKID != "node-1" || first.Header.Get("Nats-Msg-Id") != eventID {
		t.Errorf("event = id %q (msg id %q) assertion_jti %q assertion_kid %q, want %q aj-1 node-1",
			e.EventID, first.Header.Get("Nats-Msg-Id"), e.AssertionJTI, e.AssertionKID, eventID)
	}
	second, err := st.GetMsg(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(second.Data), "assertion_") {
		t.Errorf("event without an assertion names one: %s", second.Data)
	}
}
