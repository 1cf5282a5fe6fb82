//go:build !auditfuzz

package audit

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestRepairUnderLoad: a spool under steady appends (each one a decision
// answered to its caller) loses its disk: every fsync fails for a while,
// the repair's included, then the disk works again. While it is broken
// every request is denied (no room, Append refuses) and the readiness
// source (Broken) and the broken gauge say so; after the repair requests
// are recorded again without a restart. Every event whose append succeeded
// is in the stream of a real NATS server exactly once, in one whole chain:
// the unsynced tail of the old segment was never published, its rewrite
// once.
func TestRepairUnderLoad(t *testing.T) {
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ensure(t, js)
	mreader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(mreader))
	disk := newFaultyDisk()
	s := openSpool(t, SpoolConfig{Dir: t.TempDir(), SyncInterval: 5 * time.Millisecond, openFile: disk.open,
		MeterProvider: mp, repairMin: 20 * time.Millisecond, repairMax: 200 * time.Millisecond})
	p := newPublisher(t, s, PublisherConfig{Conn: nc})
	runPublisher(t, p)

	// The readiness source, polled as readyz would be.
	type transition struct {
		at     time.Duration
		broken bool
	}
	var (
		start       = time.Now()
		transitions []transition // guarded by tmu
		tmu         sync.Mutex
		stopPoll    = make(chan struct{})
		pollers     sync.WaitGroup
	)
	pollers.Go(func() {
		was := false
		for {
			select {
			case <-stopPoll:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if b := s.Broken() != nil; b != was {
				was = b
				tmu.Lock()
				transitions = append(transitions, transition{time.Since(start), b})
				tmu.Unlock()
			}
		}
	})

	// The load: a decision every millisecond or so, checked for room
	// first as step 18a does.
	var (
		acked              []string // guarded by amu: event ids answered to a caller
		amu                sync.Mutex
		allowed, denied    atomic.Int64
		deniedWhileBroken  atomic.Int64
		allowedWhileBroken atomic.Int64
		stopLoad           = make(chan struct{})
		loaders            sync.WaitGroup
	)
	loaders.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopLoad:
				return
			case <-time.After(time.Millisecond):
			}
			brokenBefore := s.Broken() != nil
			e := decision(i)
			ok := s.Room() && s.Append(t.Context(), e) == nil
			brokenAfter := s.Broken() != nil
			if !ok {
				denied.Add(1)
				if brokenBefore && brokenAfter {
					deniedWhileBroken.Add(1)
				}
				continue
			}
			if brokenBefore && brokenAfter {
				allowedWhileBroken.Add(1)
			}
			allowed.Add(1)
			amu.Lock()
			acked = append(acked, e.EventID)
			amu.Unlock()
		}
	})
	stop := func() {
		select {
		case <-stopLoad:
		default:
			close(stopLoad)
			close(stopPoll)
		}
		loaders.Wait()
		pollers.Wait()
	}
	t.Cleanup(stop)

	waitAllowed := func(n int64, what string) {
		t.Helper()
		base := allowed.Load()
		testwait.Until(t, 60*time.Second, what, func() error {
			if got := allowed.Load() - base; got < n {
				return fmt.Errorf("%d allowed", got)
			}
			return nil
		})
	}
	waitAllowed(50, "50 decisions recorded before the fault")

	disk.setFailAll(true)
	tookBreak := testwait.Until(t, 30*time.Second, "the spool broken", func() error {
		if s.Broken() == nil {
			return errors.New("not broken")
		}
		return nil
	})
	_, failed0 := disk.syncs()
	testwait.Until(t, 60*time.Second, "requests denied and repairs failing while the disk fails", func() error {
		if _, f := disk.syncs(); f < failed0+3 || deniedWhileBroken.Load() < 20 {
			return fmt.Errorf("%d more failed fsyncs, %d denied", f-failed0, deniedWhileBroken.Load())
		}
		return nil
	})
	// Appends stopped at the break: these were answered to their callers
	// but not fsynced, and only the repair's rewrite can publish them.
	unsynced := s.lastPos.Load() - s.syncedPos.Load()
	if unsynced == 0 {
		t.Error("no event awaited its fsync at the break: the rewrite is not exercised")
	}
	if got := collectGauge(t, mreader, metricSpoolBroken); got != 1 {
		t.Errorf("%s = %d while broken, want 1", metricSpoolBroken, got)
	}
	disk.setFailAll(false)
	tookRepair := waitRepaired(t, s)
	waitAllowed(50, "50 decisions recorded after the repair")
	stop()
	flush(t, p)

	if n := allowedWhileBroken.Load(); n != 0 {
		t.Errorf("%d requests allowed while the spool was broken", n)
	}
	if got := collectGauge(t, mreader, metricSpoolBroken); got != 0 {
		t.Errorf("%s = %d after the repair, want 0", metricSpoolBroken, got)
	}
	var rm metricdata.ResourceMetrics
	if err := mreader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if got := sumOf(rm, metricRepairFails); got < 2 {
		t.Errorf("%s = %d, want at least 2", metricRepairFails, got)
	}

	msgs := readStream(t, js, "TRUSTPLANE_AUDIT")
	amu.Lock()
	ids := acked
	amu.Unlock()
	checkChain(t, msgs, "node-a", len(ids))
	seen := map[string]int{}
	for _, m := range msgs {
		if !IsCheckpointSubject(m.subject) {
			seen[m.msgID]++
		}
	}
	missing, dup := 0, 0
	for _, id := range ids {
		switch seen[id] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	if missing != 0 || dup != 0 || len(seen) != len(ids) {
		t.Errorf("stream: %d of %d acknowledged events missing, %d duplicated, %d distinct ids stored", missing, len(ids), dup, len(seen))
	}
	tmu.Lock()
	defer tmu.Unlock()
	if len(transitions) != 2 || !transitions[0].broken || transitions[1].broken {
		t.Errorf("readiness transitions %+v, want broken then healthy", transitions)
	}
	tried, failed := disk.syncs()
	t.Logf("broken %v after the disk failed (%d events answered, not fsynced); repaired %v after it recovered; %d allowed, %d denied (%d while broken); %d of %d fsyncs failed; %d events in the stream exactly once; transitions %+v",
		tookBreak, unsynced, tookRepair, allowed.Load(), denied.Load(), deniedWhileBroken.Load(), failed, tried, len(ids), transitions)
}

// collectGauge collects and returns the int64 gauge name, or -1.
func collectGauge(t *testing.T, r *sdkmetric.ManualReader, name string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	return gaugeOf(rm, name)
}
