package nodeaudit

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/proxy"
	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestCheckBacklog: the audit_spool readiness check fails while more events
// than the threshold await the stream's acknowledgement (here: the
// publisher is not started yet), names the count, and passes once the
// publisher has delivered them.
func TestCheckBacklog(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	s := natstest.Server(t)
	nc := natstest.Connect(t, s.ClientURL())
	a, err := Open(Config{
		Spool: audit.SpoolConfig{Dir: t.TempDir(), NodeID: "n1"},
		Conn:  nc,
	})
	if err != nil {
		t.Fatal(err)
	}
	check2, check5 := a.CheckBacklog(2), a.CheckBacklog(5)
	if err := check2(t.Context()); err != nil {
		t.Fatalf("empty spool: check = %v, want nil", err)
	}
	d := &core.Decision{Outcome: core.Allow, Reason: reason.Allowed, Status: 200, RouteID: "orders.get"}
	for range 3 {
		if err := a.Record(t.Context(), &proxy.Record{Decision: d, RequestID: "r", Method: "GET", Path: "/"}); err != nil {
			t.Fatalf("Record: %v", err)
		}
	}
	if err := check2(t.Context()); err == nil || !strings.Contains(err.Error(), "3 audit events") {
		t.Errorf("3 pending, threshold 2: check = %v, want the backlog named", err)
	}
	if err := check5(t.Context()); err != nil {
		t.Errorf("3 pending, threshold 5: check = %v, want nil", err)
	}

	a.Start(t.Context())
	defer a.Shutdown(t.Context(), 10*time.Second)
	testwait.Until(t, 30*time.Second, "the backlog check passes once the stream acknowledged", func() error { return check2(t.Context()) })
}
