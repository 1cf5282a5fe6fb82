package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/testwait"
)

// faultyDisk hands the spool real files whose fsync can be made to fail
// (EIO, as a dying disk reports it) or to block, per path.
type faultyDisk struct {
	mu      sync.Mutex
	fail    map[string]bool          // guarded by mu; by path: Sync returns EIO
	failAll bool                     // guarded by mu
	block   map[string]chan struct{} // guarded by mu; by path: Sync waits for the channel to close
	blocked chan string              // receives the path of each Sync that starts blocking
	failN   int                      // guarded by mu; the next failN Syncs of any file fail
	tried   int                      // guarded by mu; Syncs attempted
	failed  int                      // guarded by mu; Syncs that returned EIO
}

func newFaultyDisk() *faultyDisk {
	return &faultyDisk{fail: map[string]bool{}, block: map[string]chan struct{}{}, blocked: make(chan string, 16)}
}

func (d *faultyDisk) open(name string, flag int, perm os.FileMode) (spoolFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: f, d: d}, nil
}

func (d *faultyDisk) setFail(path string, fail bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail[path] = fail
}

type faultyFile struct {
	*os.File
	d *faultyDisk
}

func (f *faultyFile) Sync() error {
	f.d.mu.Lock()
	fail := f.d.failAll || f.d.fail[f.Name()] || f.d.failN > 0
	if f.d.failN > 0 {
		f.d.failN--
	}
	f.d.tried++
	if fail {
		f.d.failed++
	}
	block := f.d.block[f.Name()]
	f.d.mu.Unlock()
	if block != nil {
		f.d.blocked <- f.Name()
		<-block
	}
	if fail {
		return &os.PathError{Op: "sync", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Sync()
}

// syncedCount reads what the publisher may send: events up to syncedPos.
func syncedCount(t *testing.T, s *Spool) int {
	t.Helper()
	r := newReader(s, 1)
	defer r.close()
	n := 0
	for {
		_, ok, err := r.Next()
		if err != nil {
			t.Fatalf("reader: %v", err)
		}
		if !ok {
			return n
		}
		n++
	}
}

// setFailAll makes every fsync fail (or succeed again).
func (d *faultyDisk) setFailAll(fail bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failAll = fail
}

// failNext makes the next n fsyncs of any file fail.
func (d *faultyDisk) failNext(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failN = n
}

// syncs returns how many fsyncs were attempted and how many failed.
func (d *faultyDisk) syncs() (tried, failed int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tried, d.failed
}

// waitRepaired polls until the spool is healthy again.
func waitRepaired(t *testing.T, s *Spool) time.Duration {
	t.Helper()
	return testwait.Until(t, 30*time.Second, "spool repaired", func() error {
		if err := s.Broken(); err != nil {
			return err
		}
		if !s.Room() {
			return errors.New("no room")
		}
		return nil
	})
}

// TestFsyncFailureBreaksSpool: a failed fsync of the active segment breaks
// the spool until it is repaired. Meanwhile Room is false (step 18a denies
// audit_unavailable), Append refuses, Broken says why, and a later fsync
// of the old file that succeeds marks nothing synced: after a failed fsync
// the kernel may have dropped the pages. While the disk keeps failing the
// repair is retried; once it works, the events since the last good fsync
// are in a new segment, handed to the publisher once each, and appends go
// on with the chain. A restart reads the same events.
func TestFsyncFailureBreaksSpool(t *testing.T) {
	dir := t.TempDir()
	disk := newFaultyDisk()
	s := openSpool(t, SpoolConfig{Dir: dir, SyncInterval: time.Hour, openFile: disk.open,
		repairMin: 10 * time.Millisecond, repairMax: 50 * time.Millisecond})
	appendN(t, s, 0, 2)
	if err := s.Sync(); err != nil {
		t.Fatalf("first Sync: %v", err)
	}
	appendN(t, s, 2, 3)
	disk.setFailAll(true)
	if err := s.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync with a failing disk = %v, want EIO", err)
	}
	if err := s.Broken(); !errors.Is(err, syscall.EIO) {
		t.Errorf("Broken = %v, want EIO", err)
	}
	if s.Room() {
		t.Error("Room = true after a failed fsync")
	}
	if err := s.Append(t.Context(), decision(5)); err == nil {
		t.Error("Append after a failed fsync succeeded")
	}
	// The repair fails as long as the disk does.
	_, failed0 := disk.syncs()
	testwait.Until(t, 30*time.Second, "two failed repairs", func() error {
		if _, f := disk.syncs(); f < failed0+2 {
			return fmt.Errorf("%d failed fsyncs", f)
		}
		return nil
	})
	if s.Room() || s.Broken() == nil {
		t.Fatal("spool healthy while every fsync fails")
	}
	if n := syncedCount(t, s); n != 2 {
		t.Errorf("publisher may read %d events, want the 2 fsynced before the failure", n)
	}

	disk.setFailAll(false)
	took := waitRepaired(t, s)
	t.Logf("repaired %v after the disk recovered", took)
	if n := syncedCount(t, s); n != 5 {
		t.Errorf("after repair: publisher may read %d events, want 5", n)
	}
	if e := appendN(t, s, 5, 1)[0]; e.NodeSeq != 6 {
		t.Errorf("after repair: node_seq %d, want 6", e.NodeSeq)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after repair: %v", err)
	}

	// Restarted: the old segment's tail (never trusted) is overlapped by
	// the repaired one; the chain continues from the disk.
	r := openSpool(t, SpoolConfig{Dir: dir, SyncInterval: time.Hour})
	if n := syncedCount(t, r); n != 6 {
		t.Errorf("after restart: %d events readable, want 6", n)
	}
	if e := appendN(t, r, 6, 1)[0]; e.NodeSeq != 7 {
		t.Errorf("after restart: node_seq %d, want 7", e.NodeSeq)
	}
}

// TestRepairIgnoresDamagedTail: after a repair, the old segment's copy of
// the events past the last good fsync is not trusted: a restart succeeds
// and reads each event once even when that tail is garbage (the pages the
// kernel dropped).
func TestRepairIgnoresDamagedTail(t *testing.T) {
	dir := t.TempDir()
	disk := newFaultyDisk()
	s := openSpool(t, SpoolConfig{Dir: dir, SyncInterval: time.Hour, openFile: disk.open,
		repairMin: 10 * time.Millisecond, repairMax: 50 * time.Millisecond})
	appendN(t, s, 0, 3)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	oldSeg := s.segmentsSnapshot()[0]
	syncedSize := oldSeg.size
	appendN(t, s, 3, 4)
	disk.failNext(1)
	if err := s.Sync(); err == nil {
		t.Fatal("Sync = nil with a failing fsync")
	}
	waitRepaired(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What the kernel may have made of the unsynced tail.
	b, err := os.ReadFile(oldSeg.path)
	if err != nil {
		t.Fatal(err)
	}
	for i := syncedSize + 10; i < int64(len(b)); i++ {
		b[i] = 0
	}
	if err := os.WriteFile(oldSeg.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := openSpool(t, SpoolConfig{Dir: dir, SyncInterval: time.Hour})
	rd := newReader(r, 1)
	defer rd.close()
	for want := uint64(1); ; want++ {
		rec, ok, err := rd.Next()
		if err != nil {
			t.Fatalf("reader: %v", err)
		}
		if !ok {
			if want != 8 {
				t.Errorf("read %d events, want 7", want-1)
			}
			break
		}
		if rec.pos != want || rec.nodeSeq != want {
			t.Errorf("event pos %d node_seq %d, want %d", rec.pos, rec.nodeSeq, want)
		}
	}
	if e := appendN(t, r, 7, 1)[0]; e.NodeSeq != 8 {
		t.Errorf("after restart: node_seq %d, want 8", e.NodeSeq)
	}
}

// TestRotationFsyncFailure: a full segment's fsync runs after rotation,
// outside the lock; when it fails the spool breaks, and nothing of that
// segment or after it is marked synced until the repair, which rewrites
// them all to one new segment and deletes the segments rotation started.
func TestRotationFsyncFailure(t *testing.T) {
	dir := t.TempDir()
	disk := newFaultyDisk()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentBytes: 4 << 10, SyncInterval: time.Hour, openFile: disk.open,
		repairMin: 10 * time.Millisecond, repairMax: 50 * time.Millisecond})
	first := s.segs[0].path
	disk.setFail(first, true)
	disk.setFail(dir, true) // and the repair's directory fsync, for now
	for len(s.segs) < 3 {
		appendN(t, s, int(s.lastPos.Load()), 1)
	}
	appended := int(s.lastPos.Load())
	if err := s.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync with a failing full segment = %v, want EIO", err)
	}
	if s.Room() {
		t.Error("Room = true after a full segment's fsync failed")
	}
	if n := syncedCount(t, s); n != 0 {
		t.Errorf("publisher may read %d events, want 0", n)
	}
	disk.setFail(dir, false)
	waitRepaired(t, s)
	if n := syncedCount(t, s); n != appended {
		t.Errorf("after repair: publisher may read %d events, want %d", n, appended)
	}
	segs := s.segmentsSnapshot()
	if len(segs) != 1 || segs[0].first != 1 {
		t.Errorf("after repair: segments %+v, want one from pos 1", segs)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix+"*"))
	if len(names) != 1 {
		t.Errorf("after repair: files %v, want one segment", names)
	}
}

// TestDirFsyncFailure: the directory entry of a new segment must be durable
// before its events count as synced.
func TestDirFsyncFailure(t *testing.T) {
	dir := t.TempDir()
	disk := newFaultyDisk()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentBytes: 4 << 10, SyncInterval: time.Hour, openFile: disk.open,
		repairMin: 10 * time.Millisecond, repairMax: 50 * time.Millisecond})
	disk.setFail(dir, true)
	for len(s.segs) < 2 {
		appendN(t, s, int(s.lastPos.Load()), 1)
	}
	if err := s.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync with a failing directory fsync = %v, want EIO", err)
	}
	if s.Room() {
		t.Error("Room = true after the directory fsync failed")
	}
	_, failed0 := disk.syncs()
	testwait.Until(t, 30*time.Second, "a failed repair", func() error {
		if _, f := disk.syncs(); f < failed0+1 {
			return fmt.Errorf("%d failed fsyncs", f)
		}
		return nil
	})
	if s.Room() {
		t.Error("Room = true while the directory fsync fails")
	}
	disk.setFail(dir, false)
	waitRepaired(t, s)
	if n, want := syncedCount(t, s), int(s.lastPos.Load()); n != want {
		t.Errorf("after repair: publisher may read %d events, want %d", n, want)
	}
}

// TestRotationDoesNotWaitForFsync: while the fsync of a full segment is
// stuck (a slow disk), appends go on, a rotation included: decisions never
// wait on a disk flush under the spool lock. The stuck segment's events
// become readable only once its fsync returns.
func TestRotationDoesNotWaitForFsync(t *testing.T) {
	dir := t.TempDir()
	disk := newFaultyDisk()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentBytes: 4 << 10, SyncInterval: time.Hour, openFile: disk.open})
	release := make(chan struct{})
	disk.mu.Lock()
	disk.block[s.segs[0].path] = release
	disk.mu.Unlock()
	for len(s.segs) < 2 {
		appendN(t, s, int(s.lastPos.Load()), 1)
	}
	synced := make(chan error, 1)
	go func() { synced <- s.Sync() }()
	select {
	case <-disk.blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("Sync never reached the full segment's fsync")
	}
	// The fsync is stuck: appends must not wait for it, through another
	// rotation.
	appended := make(chan error, 1)
	go func() {
		for len(s.segmentsSnapshot()) < 3 {
			if err := s.Append(t.Context(), decision(int(s.lastPos.Load()))); err != nil {
				appended <- err
				return
			}
		}
		appended <- nil
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatalf("Append while a fsync is stuck: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Append blocked behind a stuck fsync")
	}
	if n := syncedCount(t, s); n != 0 {
		t.Errorf("publisher may read %d events while their fsync is stuck, want 0", n)
	}
	close(release)
	if err := <-synced; err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := s.Sync(); err != nil { // the rest, the second rotation included
		t.Fatalf("second Sync: %v", err)
	}
	if n, want := syncedCount(t, s), int(s.lastPos.Load()); n != want {
		t.Errorf("after the fsyncs: publisher may read %d events, want %d", n, want)
	}
	if _, err := os.Stat(filepath.Join(dir, segmentName(s.segmentsSnapshot()[2].first))); err != nil {
		t.Errorf("third segment: %v", err)
	}
}

// segmentsSnapshot copies the segment list under the lock.
func (s *Spool) segmentsSnapshot() []segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]segment, len(s.segs))
	for i, seg := range s.segs {
		out[i] = *seg
	}
	return out
}

// TestCloseRepairs: a spool still broken when it is closed tries the repair
// once more, so the events kept in memory reach the disk: a restart finds
// them all, although the old segment's unsynced tail is gone.
func TestCloseRepairs(t *testing.T) {
	dir := t.TempDir()
	disk := newFaultyDisk()
	s := openSpool(t, SpoolConfig{Dir: dir, SyncInterval: time.Hour, openFile: disk.open, repairMin: time.Hour})
	appendN(t, s, 0, 2)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	old := s.segmentsSnapshot()[0]
	appendN(t, s, 2, 3)
	disk.failNext(1)
	if err := s.Sync(); err == nil {
		t.Fatal("Sync = nil with a failing fsync")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close of a spool its repair fixed: %v", err)
	}
	// What the kernel may have kept of the old file: only the synced part.
	if err := os.Truncate(old.path, old.size); err != nil {
		t.Fatal(err)
	}
	r := openSpool(t, SpoolConfig{Dir: dir, SyncInterval: time.Hour})
	if n := syncedCount(t, r); n != 5 {
		t.Errorf("after restart: %d events, want 5", n)
	}
	if e := appendN(t, r, 5, 1)[0]; e.NodeSeq != 6 {
		t.Errorf("after restart: node_seq %d, want 6", e.NodeSeq)
	}
}
