package natsx_test

import (
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testport"
)

// TestUnreachable: a closed port is named with its dial error, a live
// server gives nil, and credentials are never repeated.
func TestUnreachable(t *testing.T) {
	closed := testport.Addrs(t, 1)[0]
	live := natstest.Server(t).ClientURL()
	err := natsx.Unreachable(t.Context(), "nats://user:s3cret@"+closed+", "+live)
	if err == nil {
		t.Fatalf("Unreachable(%s) = nil", closed)
	}
	if got := err.Error(); !strings.Contains(got, "nats://"+closed+": dial tcp "+closed) || !strings.Contains(got, "refused") ||
		strings.Contains(got, "s3cret") || strings.Contains(got, live) {
		t.Errorf("Unreachable = %q, want the closed server, its dial error, no password, not the live server", got)
	}
	if err := natsx.Unreachable(t.Context(), live); err != nil {
		t.Errorf("Unreachable(live server) = %v, want nil", err)
	}
	if got := natsx.RedactURLs("nats://user:s3cret@h:4222,nats://h2:4222"); strings.Contains(got, "s3cret") || !strings.Contains(got, "h2:4222") {
		t.Errorf("RedactURLs = %q", got)
	}
}
