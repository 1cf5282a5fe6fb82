package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestChainAcrossReopen: node_seq and the last hash continue after a
// restart, and after every segment but the chain record was trimmed.
func TestChainAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(SpoolConfig{Dir: dir, NodeID: "node-a", SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	first := appendN(t, s, 0, 20)
	if first[0].NodeSeq != 1 || first[0].PrevEventSHA256 != zeroHash {
		t.Fatalf("first event node_seq %d prev %s, want 1 and zeros", first[0].NodeSeq, first[0].PrevEventSHA256)
	}
	last, _ := first[19].Encode()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSpool(t, SpoolConfig{Dir: dir, NodeID: "node-a", SegmentBytes: 4 << 10})
	next := appendN(t, s, 20, 1)[0]
	if next.NodeSeq != 21 || next.PrevEventSHA256 != sha(last) {
		t.Fatalf("after reopen: node_seq %d prev %s, want 21 and %s", next.NodeSeq, next.PrevEventSHA256, sha(last))
	}
	// Acknowledge everything: older segments go, the chain stays.
	s.ack(s.lastPos.Load())
	if n, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(n) != 1 {
		t.Errorf("after a full ack: %d segments, want 1", len(n))
	}
	lastB, _ := next.Encode()
	s.Close()
	s = openSpool(t, SpoolConfig{Dir: dir, NodeID: "node-a", SegmentBytes: 4 << 10})
	if got := appendN(t, s, 21, 1)[0]; got.NodeSeq != 22 || got.PrevEventSHA256 != sha(lastB) {
		t.Errorf("after trim and reopen: node_seq %d, want 22 chained to 21", got.NodeSeq)
	}
	if s.Pending() != 1 {
		t.Errorf("Pending = %d, want 1", s.Pending())
	}
}

// TestTornTail simulates kill -9 inside a write: the last record is cut
// off, the chain continues from the record before it.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenSpool(SpoolConfig{Dir: dir, NodeID: "node-a"})
	evs := appendN(t, s, 0, 3)
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	b, _ := os.ReadFile(segs[len(segs)-1])
	// Half of a fourth record.
	rec := appendEventRecord(nil, 4, 4, 1, "trustplane.audit.deny.passport_missing", "id", []byte(`{"x":1}`))
	if err := os.WriteFile(segs[len(segs)-1], append(b, rec[:len(rec)/2]...), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, SpoolConfig{Dir: dir, NodeID: "node-a"})
	third, _ := evs[2].Encode()
	if got := appendN(t, s, 3, 1)[0]; got.NodeSeq != 4 || got.PrevEventSHA256 != sha(third) {
		t.Errorf("after a torn tail: node_seq %d prev %s, want 4 chained to 3", got.NodeSeq, got.PrevEventSHA256)
	}
	// The reader (the publisher's) sees only what is fsynced.
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	r := newReader(s, 1)
	defer r.close()
	for i := uint64(1); i <= 4; i++ {
		rec, ok, err := r.Next()
		if err != nil || !ok || rec.nodeSeq != i {
			t.Fatalf("reader after recovery: record %d: %+v %v %v", i, rec.nodeSeq, ok, err)
		}
	}
}

// TestDamagedOlderSegment: damage before the tail loses events, so Open
// refuses and says where.
func TestDamagedOlderSegment(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenSpool(SpoolConfig{Dir: dir, NodeID: "node-a", SegmentBytes: 4 << 10})
	appendN(t, s, 0, 30)
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) < 2 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	b, _ := os.ReadFile(segs[0])
	b[len(b)-5] ^= 0xff
	os.WriteFile(segs[0], b, 0o600)
	if _, err := OpenSpool(SpoolConfig{Dir: dir, NodeID: "node-a"}); err == nil {
		t.Fatal("OpenSpool with a damaged older segment = nil error")
	} else {
		t.Logf("OpenSpool: %v", err)
	}
}

// TestSpoolFull: at the limit Room is false and Append fails with ErrFull,
// counted as unrecordable.
func TestSpoolFull(t *testing.T) {
	reader := metric.NewManualReader()
	mp := metric.NewMeterProvider(metric.WithReader(reader))
	s := openSpool(t, SpoolConfig{Dir: t.TempDir(), MaxBytes: 16 << 10, MeterProvider: mp})
	var n int
	for s.Room() {
		appendN(t, s, n, 1)
		n++
		if n > 1000 {
			t.Fatal("Room never turned false")
		}
	}
	var full int
	for i := range 50 {
		err := s.Append(t.Context(), decision(n+i))
		switch {
		case errors.Is(err, ErrFull):
			full++
		case err != nil:
			t.Fatalf("Append = %v, want nil or ErrFull", err)
		}
	}
	if full == 0 {
		t.Fatal("Append never returned ErrFull")
	}
	if s.Bytes() > 16<<10 {
		t.Errorf("spool holds %d bytes, limit %d", s.Bytes(), 16<<10)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if got := sumOf(rm, metricUnrecordable); got != int64(full) {
		t.Errorf("%s = %d, want %d", metricUnrecordable, got, full)
	}
	if got := gaugeOf(rm, metricSpoolSize); got != s.Bytes() {
		t.Errorf("%s = %d, want %d", metricSpoolSize, got, s.Bytes())
	}
	// Acknowledging makes room again.
	s.ack(s.lastPos.Load())
	if !s.Room() {
		t.Error("Room false after everything was acknowledged")
	}
}

// TestRoomWhenUnusable: a spool that refuses every append (a write failed
// and its tail could not be cut off, or the spool is closed) has no room,
// so the pipeline denies audit_unavailable at step 18a instead of
// consuming the caller's jti first and then failing to record the decision
// (SPEC §6, §9).
func TestRoomWhenUnusable(t *testing.T) {
	// No repair during the test: it swaps the files under the spool.
	s := openSpool(t, SpoolConfig{Dir: t.TempDir(), repairMin: time.Hour})
	appendN(t, s, 0, 1)
	// Swap the active segment for a read-only handle on the same file:
	// the write fails, and so does the truncate that would repair it.
	s.mu.Lock()
	ro, err := os.Open(s.segs[len(s.segs)-1].path)
	if err != nil {
		s.mu.Unlock()
		t.Fatal(err)
	}
	rw := s.active
	s.active = ro
	s.mu.Unlock()
	if err := s.Append(t.Context(), decision(1)); err == nil {
		t.Fatal("Append on a read-only segment succeeded")
	}
	if err := s.Append(t.Context(), decision(2)); err == nil {
		t.Fatal("Append on a broken spool succeeded")
	}
	if s.Room() {
		t.Error("Room = true on a spool that refuses every append")
	}
	s.mu.Lock()
	s.active = rw
	s.mu.Unlock()
	ro.Close()

	c := openSpool(t, SpoolConfig{Dir: t.TempDir()})
	c.Close()
	if c.Room() {
		t.Error("Room = true after Close")
	}
}

func TestAppendAfterClose(t *testing.T) {
	s := openSpool(t, SpoolConfig{Dir: t.TempDir()})
	s.Close()
	if err := s.Append(t.Context(), decision(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
}

// TestNodeIDChange starts a new chain for a new node id, and the old
// node's events stay to be published.
func TestNodeIDChange(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenSpool(SpoolConfig{Dir: dir, NodeID: "old"})
	appendN(t, s, 0, 2)
	s.Close()
	s = openSpool(t, SpoolConfig{Dir: dir, NodeID: "new"})
	if e := appendN(t, s, 2, 1)[0]; e.NodeSeq != 1 || e.PrevEventSHA256 != zeroHash || e.NodeID != "new" {
		t.Errorf("first event of a new node id: node_seq %d node %s", e.NodeSeq, e.NodeID)
	}
	if s.Pending() != 3 {
		t.Errorf("Pending = %d, want 3", s.Pending())
	}
}

func sumOf(rm metricdata.ResourceMetrics, name string) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range s.DataPoints {
					n += dp.Value
				}
			}
		}
	}
	return n
}

func gaugeOf(rm metricdata.ResourceMetrics, name string) int64 {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == name && len(g.DataPoints) > 0 {
				return g.DataPoints[0].Value
			}
		}
	}
	return -1
}

// TestNodeIDChangeEmptySegment: a node id change right after a rotation
// (the active segment holds only its chain record).
func TestNodeIDChangeEmptySegment(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenSpool(SpoolConfig{Dir: dir, NodeID: "old"})
	s.Close()
	s = openSpool(t, SpoolConfig{Dir: dir, NodeID: "new"})
	if e := appendN(t, s, 0, 1)[0]; e.NodeSeq != 1 || e.NodeID != "new" {
		t.Errorf("first event after the change: node_seq %d node %s", e.NodeSeq, e.NodeID)
	}
}

// TestPublishOnlySynced: an appended event is not handed to the publisher
// until it is fsynced, so an OS crash can never lose an event JetStream
// already holds (the restarted node would reuse its node_seq and fork its
// chain).
func TestPublishOnlySynced(t *testing.T) {
	s := openSpool(t, SpoolConfig{Dir: t.TempDir(), SyncInterval: time.Hour})
	appendN(t, s, 0, 2)
	r := newReader(s, 1)
	defer r.close()
	if _, ok, err := r.Next(); ok || err != nil {
		t.Fatalf("reader returned an unsynced event (ok %v, err %v)", ok, err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 2; i++ {
		if rec, ok, err := r.Next(); !ok || err != nil || rec.nodeSeq != i {
			t.Fatalf("after Sync: record %d: %v %v", i, ok, err)
		}
	}
}
