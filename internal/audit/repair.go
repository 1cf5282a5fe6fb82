package audit

// Repair of a broken spool, without a restart.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// repairSuffix names a segment being written by repair; OpenSpool deletes
// one left by a crash (it is not a segment until renamed).
const repairSuffix = ".repair"

// repair re-establishes a known-good spool after it broke. After a failed
// fsync the kernel may have dropped the dirty pages of that file (Linux
// "fsyncgate"), so nothing past the last good fsync is trusted in the old
// files: the records appended since (s.unsynced, byte for byte: same pos,
// node_seq and event_id) are written to a new segment that starts right
// after the last synced event, the new segment and the directory are
// fsynced, and only then is the spool healthy and those events handed to
// the publisher. The old copies were never published (the publisher reads
// only synced events), so the stream gets each event once.
//
// On disk, the new segment overlaps the old one's unsynced tail; recovery
// counts an older segment only up to the next one's first pos (see
// recover). Segments that started after the last synced event are deleted.
// Only the syncer calls repair, and Close once the syncer has stopped.
func (s *Spool) repair() error {
	s.syncMu.Lock() // no Sync pass while the files change
	defer s.syncMu.Unlock()

	s.mu.Lock()
	if s.broken == nil {
		s.mu.Unlock()
		return nil
	}
	synced, last := s.syncedPos.Load(), s.lastPos.Load()
	recs := slices.Clone(s.unsynced)
	seq, prev := s.nodeSeq, s.prev
	if len(recs) > 0 {
		seq, prev = recs[0].nodeSeq-1, recs[0].prev
	}
	var stale []segment // started after the last synced event
	for _, seg := range s.segs {
		if seg.first > synced {
			stale = append(stale, *seg)
		}
	}
	s.mu.Unlock()
	// Appends are refused while broken, so nothing above changes under us
	// but the publisher's trimming of acknowledged (so synced) segments.
	if uint64(len(recs)) != last-synced || (len(recs) > 0 && recs[0].pos != synced+1) {
		return fmt.Errorf("audit: repair spool: %d unsynced records kept for pos %d to %d", len(recs), synced+1, last)
	}

	first := synced + 1
	path := filepath.Join(s.cfg.Dir, segmentName(first))
	tmp := path + repairSuffix
	buf := appendChainRecord(nil, first, seq, prev, s.cfg.NodeID)
	for _, r := range recs {
		buf = append(buf, r.rec...)
	}
	f, err := s.writeRepairSegment(tmp, buf)
	if err != nil {
		return fmt.Errorf("audit: repair spool: %w", err)
	}
	// The new name replaces a stale segment of the same first pos; the
	// other stale segments go, and one directory fsync makes it all
	// durable.
	err = os.Rename(tmp, path)
	for _, seg := range stale {
		if err != nil {
			break
		}
		if seg.path != path {
			if rerr := os.Remove(seg.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = rerr
			}
		}
	}
	if err == nil {
		if derr := s.syncDir(); derr != nil {
			err = fmt.Errorf("fsync spool directory %s: %w", s.cfg.Dir, derr)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("audit: repair spool: %w", err)
	}

	s.mu.Lock()
	old := make([]spoolFile, 0, len(s.retired)+1)
	for _, r := range s.retired {
		old = append(old, r.f)
	}
	s.retired = nil
	if s.active != nil {
		old = append(old, s.active)
	}
	kept := s.segs[:0]
	for _, seg := range s.segs {
		if seg.first > synced {
			s.used.Add(-seg.size)
			continue
		}
		kept = append(kept, seg)
	}
	if n := len(kept); n > 0 {
		kept[n-1].last = synced // its copy of anything later is not trusted
	}
	s.segs = append(kept, &segment{first: first, last: last, size: int64(len(buf)), path: path})
	s.used.Add(int64(len(buf)))
	s.active = f
	s.unsync = false
	s.dropUnsyncedLocked(last)
	cause := s.broken
	s.broken = nil
	s.writeFailed.Store(false)
	s.refusing.Store(s.closed)
	s.mu.Unlock()
	for _, f := range old {
		f.Close() // their state is unknown; the error says nothing new
	}
	s.markSynced(last)
	s.log.Warn("audit spool repaired; requests are recorded again",
		"cause", cause, "segment", filepath.Base(path), "rewritten_events", len(recs))
	return nil
}

// writeRepairSegment creates name (removing a previous attempt's), writes
// b and fsyncs it. It returns the file open for appending.
func (s *Spool) writeRepairSegment(name string, b []byte) (spoolFile, error) {
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	f, err := s.cfg.openFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(name)
		return nil, err
	}
	if err := s.fsync(f); err != nil {
		f.Close()
		os.Remove(name)
		return nil, fmt.Errorf("fsync new segment %s: %w", filepath.Base(name), err)
	}
	return f, nil
}

// segmentFirst parses the first pos out of a segment file's name.
func segmentFirst(name string) (uint64, bool) {
	v, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(name), segmentSuffix), 10, 64)
	return v, err == nil
}
