package audit

// Syncing: the fsync batches, the syncer goroutine, and what a failed
// fsync does (the spool breaks until repair.go repairs it).

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tpcluster/tpcluster/internal/retry"
)

func (s *Spool) fsync(f spoolFile) error {
	if s.cfg.noSync {
		return nil
	}
	return f.Sync()
}

// syncDir makes a new segment's name durable.
func (s *Spool) syncDir() error {
	if s.cfg.noSync {
		return nil
	}
	d, err := s.cfg.openFile(s.cfg.Dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// syncLoop fsyncs the active segment at most once per SyncInterval while
// there is data to sync, and repairs the spool when it breaks, with a
// back-off while the disk keeps failing.
func (s *Spool) syncLoop() {
	t := time.NewTimer(s.cfg.SyncInterval)
	defer t.Stop()
	bo := retry.Backoff{Min: s.cfg.repairMin, Max: s.cfg.repairMax}
	for attempt := 0; ; {
		if s.Broken() != nil {
			attempt++
			t.Reset(bo.Next())
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
			if err := s.repair(); err != nil {
				s.met.repairFailures.Add(1)
				if attempt == 1 || attempt%20 == 0 { // at most about one line a minute
					s.log.Error("audit spool repair failed; every request is still denied audit_unavailable", "err", err, "attempt", attempt)
				}
				continue
			}
			attempt = 0
			bo.Reset()
			continue
		}
		select {
		case <-s.quit:
			return
		case <-s.broke:
			continue
		case <-s.dirty:
		}
		t.Reset(s.cfg.SyncInterval)
		select {
		case <-s.quit:
			return
		case <-s.broke:
			continue
		case <-t.C:
		}
		_ = s.Sync() // a failure breaks the spool and is logged there, once
	}
}

// Sync fsyncs what was appended so far: the segments rotation retired (and
// the directory that names their successors), then the active one. Only
// then are those events marked synced, handed to the publisher. A failed
// fsync breaks the spool (see Spool.broken): every later Append and Sync
// fails, and Room reports none, so the node denies audit_unavailable.
func (s *Spool) Sync() error {
	s.syncMu.Lock() // one pass at a time, in pos order
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if s.broken != nil {
		err := s.broken
		s.mu.Unlock()
		return err
	}
	retired := s.retired
	s.retired = nil
	f, need := s.active, s.unsync
	pos := s.lastPos.Load() // every event up to here is in f or in retired
	s.unsync = false
	s.mu.Unlock()
	// The active file stays open under us: only this pass and Close
	// (after the syncer stopped, holding syncMu) close files.
	for i, r := range retired {
		err := s.fsync(r.f)
		if cerr := r.f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return s.breakSync(fmt.Errorf("fsync full spool segment %s: %w", filepath.Base(r.path), err), retired[i+1:])
		}
	}
	if len(retired) > 0 {
		if err := s.syncDir(); err != nil {
			return s.breakSync(fmt.Errorf("fsync spool directory %s: %w", s.cfg.Dir, err), nil)
		}
	}
	if need && f != nil {
		if err := s.fsync(f); err != nil {
			return s.breakSync(fmt.Errorf("fsync spool segment: %w", err), nil)
		}
	}
	s.mu.Lock()
	s.dropUnsyncedLocked(pos)
	s.mu.Unlock()
	s.markSynced(pos)
	return nil
}

// dropUnsyncedLocked forgets the records up to pos, now on disk.
func (s *Spool) dropUnsyncedLocked(pos uint64) {
	i := 0
	for i < len(s.unsynced) && s.unsynced[i].pos <= pos {
		s.unsynced[i] = unsyncedRecord{} // let the record's bytes go
		i++
	}
	if i == len(s.unsynced) {
		s.unsynced = s.unsynced[:0]
		return
	}
	s.unsynced = s.unsynced[i:]
}

// breakSync marks the spool broken by a failed fsync and closes what was
// retired and not closed yet.
func (s *Spool) breakSync(err error, retired []retiredSegment) error {
	for _, r := range retired {
		r.f.Close()
	}
	err = fmt.Errorf("audit: %w", err)
	s.mu.Lock()
	s.breakLocked(err)
	s.mu.Unlock()
	return err
}

// breakLocked marks the spool broken, unless it already is, and wakes the
// syncer to repair it.
func (s *Spool) breakLocked(err error) {
	if s.broken != nil {
		return
	}
	s.broken = err
	s.refusing.Store(true)
	s.log.Error("audit spool broken; every request is denied audit_unavailable until it is repaired (the events since the last good fsync written again to a new segment)",
		"err", err, "pending", s.Pending())
	select {
	case s.broke <- struct{}{}:
	default:
	}
}

// Broken returns why the spool refuses every event (a failed fsync, or a
// failed write whose tail could not be cut off), or nil. The spool repairs
// itself in the background; Broken turns nil once it has. It is what the
// node's audit readiness check reports. Safe for concurrent use.
func (s *Spool) Broken() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

// markSynced records that every event up to pos is on disk, and wakes the
// publisher, which sends only such events.
func (s *Spool) markSynced(pos uint64) {
	for {
		cur := s.syncedPos.Load()
		if pos <= cur || s.syncedPos.CompareAndSwap(cur, pos) {
			break
		}
	}
	select {
	case s.appended <- struct{}{}:
	default:
	}
}
