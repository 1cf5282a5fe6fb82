package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// readChunk is how much of a segment the reader reads at once.
const readChunk = 256 << 10

// reader reads event records from the spool in pos order, for the
// publisher. It reads only records the writer has completed (below the
// segment's recorded size), so it never sees a record being written. It is
// used by one goroutine.
type reader struct {
	s    *Spool
	next uint64 // pos of the next event to return
	// unsynced lets the reader return appended events not yet fsynced;
	// only the spool's own age probe sets it, never the publisher.
	unsynced bool
	nodeID   string // of the open segment's chain record

	f      *os.File
	first  uint64 // first pos of the open segment
	off    int64  // file offset of buf[0]
	buf    []byte
	cursor int // parse position in buf
}

func newReader(s *Spool, from uint64) *reader {
	return &reader{s: s, next: from}
}

// Next returns the next event record, or ok false if none is complete yet.
// The record's data aliases the reader's buffer until the next call: copy it
// to keep it.
func (r *reader) Next() (rec record, ok bool, err error) {
	for {
		limit := r.s.syncedPos.Load() // only what is on disk (see Spool.syncedPos)
		if r.unsynced {
			limit = r.s.lastPos.Load()
		}
		if r.next > limit {
			return rec, false, nil
		}
		seg, found := r.s.segmentFor(r.next)
		if !found {
			return rec, false, nil
		}
		if r.f == nil || r.first != seg.first {
			if err := r.open(seg); err != nil {
				return rec, false, err
			}
		}
		rec, n, err := parseRecord(r.buf[r.cursor:])
		if errors.Is(err, errShort) {
			end := r.off + int64(r.cursor)
			if end >= seg.size {
				if seg.last < r.next {
					// The segment ended; the next one is not listed
					// yet, or r.next is not appended yet.
					return rec, false, nil
				}
				return rec, false, fmt.Errorf("spool segment %s ends at %d before pos %d", seg.path, end, r.next)
			}
			if err := r.fill(seg.size); err != nil {
				return rec, false, err
			}
			continue
		}
		if err != nil {
			return rec, false, fmt.Errorf("spool segment %s at offset %d: %w", seg.path, r.off+int64(r.cursor), err)
		}
		r.cursor += n
		if rec.kind == kindChain {
			r.nodeID = rec.nodeID
		}
		if rec.kind != kindEvent || rec.pos < r.next {
			continue
		}
		rec.nodeID = r.nodeID // the chain the event belongs to
		if rec.pos != r.next {
			return rec, false, fmt.Errorf("spool segment %s: pos %d where %d was expected", seg.path, rec.pos, r.next)
		}
		r.next++
		return rec, true, nil
	}
}

func (r *reader) open(seg segment) error {
	r.close()
	f, err := os.Open(seg.path)
	if err != nil {
		return fmt.Errorf("open spool segment: %w", err)
	}
	r.f, r.first, r.off, r.buf, r.cursor, r.nodeID = f, seg.first, 0, r.buf[:0], 0, ""
	return nil
}

// fill drops the parsed part of buf and reads more of the segment, up to
// size.
func (r *reader) fill(size int64) error {
	r.off += int64(r.cursor)
	r.buf = append(r.buf[:0], r.buf[r.cursor:]...)
	r.cursor = 0
	have := r.off + int64(len(r.buf))
	want := min(size-have, readChunk)
	if want <= 0 {
		// Only bytes of an incomplete record remain before size: the
		// writer records sizes on record boundaries, so this is damage.
		return fmt.Errorf("record crosses the end of the segment at %d", size)
	}
	start := len(r.buf)
	r.buf = slices.Grow(r.buf, int(want))[:start+int(want)]
	n, err := r.f.ReadAt(r.buf[start:], have)
	r.buf = r.buf[:start+n]
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read spool segment: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("spool segment shorter than its recorded size %d", size)
	}
	return nil
}

func (r *reader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}
