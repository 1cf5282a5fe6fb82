package audit

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// faultyDisk hands the spool real files whose fsync can be made to fail
// (EIO, as a dying disk reports it) or to block, per path.
type faultyDisk struct {
	mu      sync.Mutex
	fail    map[string]bool          // guarded by mu; by path: Sync returns EIO
	failAll bool                     // guarded by mu
	block   map[string]chan struct{} // guarded by mu; by path: Sync waits for the channel to close
	blocked chan string              // receives the path of each Sync that starts blocking
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
	fail := f.d.failAll || f.d.fail[f.Name()]
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

// TestFsyncFailureBreaksSpool: one failed fsync of the active segment
// breaks the spool for good. Room turns false (step 18a denies
// audit_unavailable), Append refuses, and a later fsync that succeeds does
// not mark the events synced: after a failed fsync the kernel may have
// dropped the pages, so they are never handed to the publisher. A restart
// recovers from what is on disk.
func TestFsyncFailureBreaksSpool(t *testing.T) {
	dir := t.TempDir()
	disk := newFaultyDisk()
	s := openSpool(t, SpoolConfig{Dir: dir, SyncInterval: time.Hour, openFile: disk.open})
	appendN(t, s, 0, 2)
	if err := s.Sync(); err != nil {
		t.Fatalf("first Sync: %v", err)
	}
	appendN(t, s, 2, 3)
	seg := s.segs[len(s.segs)-1].path
	disk.setFail(seg, true)
	if err := s.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync with a failing disk = %v, want EIO", err)
	}
	if s.Room() {
		t.Error("Room = true after a failed fsync")
	}
	if err := s.Append(t.Context(), decision(5)); err == nil {
		t.Error("Append after a failed fsync succeeded")
	}
	disk.setFail(seg, false)
	if err := s.Sync(); err == nil {
		t.Error("Sync after a failed fsync = nil, want the spool's break")
	}
	if s.Room() {
		t.Error("Room = true after a later fsync succeeded")
	}
	if n := syncedCount(t, s); n != 2 {
		t.Errorf("publisher may read %d events, want the 2 fsynced before the failure", n)
	}
	if err := s.Close(); err == nil {
		t.Error("Close of a broken spool = nil error")
	}

	// Restarted on a working disk: the chain continues from the disk.
	r := openSpool(t, SpoolConfig{Dir: dir, SyncInterval: time.Hour})
	if !r.Room() {
		t.Fatal("Room = false after a restart on a working disk")
	}
	if e := appendN(t, r, 5, 1)[0]; e.NodeSeq != 6 {
		t.Errorf("after restart: node_seq %d, want 6", e.NodeSeq)
	}
}

// TestRotationFsyncFailure: a full segment's fsync runs after rotation,
// outside the lock; when it fails the spool breaks, and nothing of that
// segment or after it is marked synced.
func TestRotationFsyncFailure(t *testing.T) {
	dir := t.TempDir()
	disk := newFaultyDisk()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentBytes: 4 << 10, SyncInterval: time.Hour, openFile: disk.open})
	first := s.segs[0].path
	disk.setFail(first, true)
	for len(s.segs) < 2 {
		appendN(t, s, int(s.lastPos.Load()), 1)
	}
	if err := s.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync with a failing full segment = %v, want EIO", err)
	}
	if s.Room() {
		t.Error("Room = true after a full segment's fsync failed")
	}
	if n := syncedCount(t, s); n != 0 {
		t.Errorf("publisher may read %d events, want 0", n)
	}
}

// TestDirFsyncFailure: the directory entry of a new segment must be durable
// before its events count as synced.
func TestDirFsyncFailure(t *testing.T) {
	dir := t.TempDir()
	disk := newFaultyDisk()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentBytes: 4 << 10, SyncInterval: time.Hour, openFile: disk.open})
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
