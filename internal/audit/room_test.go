package audit

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
)

// TestRoomAfterFailedWrite: a write that fails while the segment can still
// be repaired (a full disk) leaves the spool usable but without room until
// a write succeeds again, so requests are denied at step 18a, before the
// ledger, instead of consuming their jti and then failing to record. The
// full disk is RLIMIT_FSIZE in a child process: writes past it fail with
// EFBIG, truncating back succeeds.
func TestRoomAfterFailedWrite(t *testing.T) {
	if os.Getenv("TPCLUSTER_AUDIT_FSIZE_CHILD") == "1" {
		roomAfterFailedWriteChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRoomAfterFailedWrite$", "-test.v")
	cmd.Env = append(os.Environ(), "TPCLUSTER_AUDIT_FSIZE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func roomAfterFailedWriteChild(t *testing.T) {
	signal.Ignore(syscall.SIGXFSZ) // a write past the limit fails instead of killing us
	s := openSpool(t, SpoolConfig{Dir: t.TempDir()})
	appendN(t, s, 0, 2)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	size := s.segs[len(s.segs)-1].size
	s.mu.Unlock()
	// Only the soft limit moves, so it can be raised again.
	tight := syscall.Rlimit{Cur: uint64(size) + 16, Max: lim.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &tight); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(t.Context(), decision(2)); err == nil {
		t.Fatal("Append past the file size limit succeeded")
	}
	if s.Room() {
		t.Error("Room = true right after a failed write")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(t.Context(), decision(3)); err != nil {
		t.Fatalf("Append after the disk has room again: %v", err)
	}
	if !s.Room() {
		t.Error("Room = false after a successful write")
	}
}
