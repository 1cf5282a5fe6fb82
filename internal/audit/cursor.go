package audit

// The publisher's side of the spool: the acknowledgement cursor, trimming,
// and segment lookup for the reader.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const cursorName = "acked"

// openCursor opens the cursor file and returns the pos it holds: the last
// event JetStream acknowledged. A missing or unreadable cursor is 0, which
// resends what the spool still holds (the stream's duplicate window drops
// what it already has).
func (s *Spool) openCursor() (uint64, error) {
	path := filepath.Join(s.cfg.Dir, cursorName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	s.cursor = f
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	v, err := strconv.ParseUint(strings.TrimSpace(string(b[:n])), 10, 64)
	if err != nil {
		if n > 0 {
			s.log.Warn("audit spool: unreadable cursor; resending what the spool holds", "file", path)
		}
		return 0, nil
	}
	return v, nil
}

// ack records that every event up to pos is in the stream: it writes the
// cursor (one pwrite, no fsync: after an OS crash a stale cursor only
// resends events, which the duplicate window drops) and deletes the
// segments that hold nothing newer. Only the publisher calls it.
func (s *Spool) ack(pos uint64) {
	s.ackedPos.Store(pos)
	if s.cursor != nil {
		if _, err := s.cursor.WriteAt(fmt.Appendf(nil, "%020d\n", pos), 0); err != nil {
			s.log.Warn("audit spool: cursor write failed", "err", err)
		}
	}
	var drop []*segment
	s.mu.Lock()
	for len(s.segs) > 1 && s.segs[0].last <= pos {
		drop = append(drop, s.segs[0])
		s.segs = s.segs[1:]
	}
	s.mu.Unlock()
	for _, seg := range drop {
		if err := os.Remove(seg.path); err != nil {
			s.log.Warn("audit spool: cannot delete a published segment", "segment", seg.path, "err", err)
			continue
		}
		s.used.Add(-seg.size)
	}
}

// segmentFor returns a copy of the segment holding pos, or of the next one
// if pos is past its end (or the segment was trimmed), for the reader. ok
// is false if the spool has no segment.
func (s *Spool) segmentFor(pos uint64) (seg segment, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.segs) - 1; i >= 0; i-- {
		if s.segs[i].first <= pos {
			if s.segs[i].last < pos && i+1 < len(s.segs) {
				return *s.segs[i+1], true
			}
			return *s.segs[i], true
		}
	}
	if len(s.segs) > 0 {
		return *s.segs[0], true
	}
	return segment{}, false
}

// OldestPendingAge returns how long the oldest event JetStream has not
// acknowledged has been in the spool, or 0 if there is none. It does not
// depend on the publisher: an event waits the same whether the publisher is
// sending, retrying, or never started (a stream that cannot be created).
// It reads the event's record from disk when the oldest pending event
// changed since the last call, so call it at scrape or check rates, not per
// request. Safe for concurrent use.
func (s *Spool) OldestPendingAge() (time.Duration, error) {
	s.ageMu.Lock()
	defer s.ageMu.Unlock()
	next := s.ackedPos.Load() + 1
	if next > s.lastPos.Load() {
		return 0, nil
	}
	if s.agePos != next {
		r := newReader(s, next)
		r.unsynced = true
		rec, ok, err := r.Next()
		r.close()
		switch {
		case err != nil:
			return 0, fmt.Errorf("audit: read oldest pending event: %w", err)
		case !ok:
			// Trimmed or acknowledged meanwhile: next call.
			return 0, nil
		}
		s.agePos, s.ageAt = rec.pos, rec.appendedAt
	}
	return max(s.cfg.Now().Sub(time.Unix(0, s.ageAt)), 0), nil
}
