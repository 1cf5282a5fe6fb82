package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/metric"
)

// Sentinels of Append. Match with errors.Is.
var (
	// ErrFull means the spool has reached its size limit: the event was
	// not recorded, and the node must deny (SPEC §9).
	ErrFull = errors.New("audit spool full")
	// ErrClosed means the spool was closed.
	ErrClosed = errors.New("audit spool closed")
)

// roomReserve is the space Room keeps free for the decision it admits:
// more than an ordinary event, so a request that passes step 18a nearly
// always finds room for its record. One that does not (a huge event, or a
// race with other requests) fails closed in Append.
const roomReserve = 4 << 10

// SpoolConfig configures a Spool. Zero values are documented per field.
type SpoolConfig struct {
	// Dir holds the segment files and the acknowledgement cursor.
	// Required; created if absent.
	Dir string
	// NodeID names this node's chain (SPEC §9). Required.
	NodeID string
	// Region is copied into every event.
	Region string
	// MaxBytes bounds the files of the spool. If zero, 1 GiB.
	MaxBytes int64
	// SegmentBytes is the size at which a segment is closed and a new one
	// started; only whole segments are trimmed. If zero, the smaller of
	// 8 MiB and MaxBytes/8 (at least 4 KiB).
	SegmentBytes int64
	// SyncInterval is the fsync batch: appended data reaches the disk at
	// most this long after its write. If zero, 20ms.
	SyncInterval time.Duration
	// Now gives event times. If nil, time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
	// MeterProvider; nil means no-op.
	MeterProvider metric.MeterProvider

	// noSync skips every fsync; only tests that must not wait for a disk
	// (the fuzz target) set it.
	noSync bool
	// openFile opens segment files and the directory; tests inject files
	// whose fsync fails. If nil, os.OpenFile.
	openFile func(name string, flag int, perm os.FileMode) (spoolFile, error)
	// repairMin and repairMax bound the back-off between attempts to
	// repair a broken spool. If zero, 100ms and 5s; tests that look at
	// the broken state set a long repairMin.
	repairMin, repairMax time.Duration
}

// spoolFile is what the spool needs of a segment file (and of its
// directory, for fsync): an interface so tests can make fsync fail.
type spoolFile interface {
	Write(b []byte) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

func openOSFile(name string, flag int, perm os.FileMode) (spoolFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return f, nil
}

// Spool is the audit write-ahead log (SPEC §9): append-only segment files in
// one directory, one writer (Append, safe for concurrent use) and one reader
// (the Publisher). Open starts its fsync goroutine; Close stops it and waits.
type Spool struct {
	cfg SpoolConfig
	log *slog.Logger
	met *spoolMetrics

	used    atomic.Int64  // bytes of segment files
	lastPos atomic.Uint64 // pos of the last appended event
	// syncedPos is the pos of the last event known to be on disk
	// (fsynced). The publisher sends nothing beyond it: an event published
	// and then lost to an OS crash would let the restarted node reuse its
	// node_seq and fork its chain.
	syncedPos atomic.Uint64
	ackedPos  atomic.Uint64 // pos of the last event JetStream acknowledged
	refusing  atomic.Bool   // Append refuses every event: closed, or broken
	// writeFailed is set by a failed write (a full disk: ENOSPC) and
	// cleared by the next successful one; meanwhile Room reports none, so
	// requests are denied at step 18a before the ledger, and the deny
	// records those denials try to append are the retries.
	writeFailed atomic.Bool
	appended    chan struct{} // cap 1: an event was appended
	dirty       chan struct{} // cap 1: the active segment has unsynced data
	broke       chan struct{} // cap 1: the spool broke; the syncer repairs it

	mu     sync.Mutex
	closed bool // guarded by mu
	// broken is set by a failed write whose tail could not be cut off, or
	// by any failed fsync: after one, Linux may have dropped the dirty
	// pages, so a later fsync that succeeds proves nothing about the
	// earlier data (the "fsyncgate" behaviour). Only repair clears it,
	// by writing the events since the last good fsync (unsynced) again
	// into a new segment; no event past the failure was marked synced, so
	// none of them was published from the old copy.
	broken error // guarded by mu
	// unsynced are the records appended since the last good fsync, in
	// pos order: what repair writes again. Bounded by the fsync cadence
	// (a pass every SyncInterval drops what it synced) and, while a
	// fsync hangs, by MaxBytes, since each also counts in used.
	unsynced []unsyncedRecord // guarded by mu
	segs     []*segment       // guarded by mu; by first pos, the last one active
	active   spoolFile        // guarded by mu
	// retired are segments rotation closed for writing and the syncer
	// has not fsynced yet (with the directory) and closed: rotation runs
	// under mu, on a request's path, and must not wait for a disk.
	retired []retiredSegment  // guarded by mu
	nodeSeq uint64            // guarded by mu; node_seq of the last event
	prev    [sha256.Size]byte // guarded by mu; SHA-256 of the last event's bytes
	buf     []byte            // guarded by mu; record scratch
	unsync  bool              // guarded by mu; active has data not yet fsynced
	syncMu  sync.Mutex        // serialises Sync: one fsync pass at a time
	quit    chan struct{}     // closed by Close: stops the syncer
	wg      sync.WaitGroup    // the syncer
	cursor  *os.File          // written only by ack (the publisher)

	ageMu  sync.Mutex // guards the OldestPendingAge cache
	agePos uint64     // guarded by ageMu; pos whose appended_at is ageAt
	ageAt  int64      // guarded by ageMu; Unix ns
}

// unsyncedRecord is an event record written since the last good fsync,
// with the chain state before it.
type unsyncedRecord struct {
	pos     uint64
	nodeSeq uint64
	prev    [sha256.Size]byte // SHA-256 of the event before it
	rec     []byte            // the record, byte for byte as in the segment
}

// retiredSegment is a full segment waiting for its fsync and close.
type retiredSegment struct {
	f    spoolFile
	path string
	last uint64 // pos of its last event
}

// segment is one file of the spool.
type segment struct {
	first uint64 // pos of its first event (the name of the file)
	last  uint64 // pos of its last event; first-1 while empty
	size  int64  // bytes written and complete
	path  string
}

const segmentSuffix = ".seg"

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentSuffix) }

// OpenSpool opens (or creates) the spool in cfg.Dir and recovers the chain
// from it: node_seq and the last event hash continue where the last run
// stopped, kill -9 included. A torn last record (a crash inside a write) is
// cut off; damage anywhere else is an error naming the file and offset,
// since events there would be lost.
func OpenSpool(cfg SpoolConfig) (*Spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("audit: spool directory required")
	}
	if cfg.NodeID == "" {
		return nil, errors.New("audit: node id required")
	}
	if cfg.MaxBytes < 0 || cfg.SegmentBytes < 0 || cfg.SyncInterval < 0 {
		return nil, errors.New("audit: negative spool limit")
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 30
	}
	if cfg.SegmentBytes == 0 {
		cfg.SegmentBytes = max(min(8<<20, cfg.MaxBytes/8), 4<<10)
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = 20 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.openFile == nil {
		cfg.openFile = openOSFile
	}
	if cfg.repairMin == 0 {
		cfg.repairMin = 100 * time.Millisecond
	}
	if cfg.repairMax == 0 {
		cfg.repairMax = 5 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: spool directory: %w", err)
	}
	s := &Spool{
		cfg:      cfg,
		log:      cfg.Logger,
		appended: make(chan struct{}, 1),
		dirty:    make(chan struct{}, 1),
		broke:    make(chan struct{}, 1),
	}
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("audit: open spool %s: %w", cfg.Dir, err)
	}
	met, err := newSpoolMetrics(cfg.MeterProvider, s)
	if err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("audit: metrics: %w", err)
	}
	s.met = met
	s.quit = make(chan struct{})
	s.wg.Go(s.syncLoop)
	return s, nil
}

// recover lists the segments, checks them, cuts a torn tail off the last
// one, reads the cursor and continues the chain.
func (s *Spool) recover() error {
	names, err := filepath.Glob(filepath.Join(s.cfg.Dir, "*"+segmentSuffix))
	if err != nil {
		return err
	}
	slices.Sort(names) // zero-padded: name order is pos order
	// A segment repair was writing when the process died: not a segment
	// until renamed, and its events are still in the old files.
	leftovers, err := filepath.Glob(filepath.Join(s.cfg.Dir, "*"+segmentSuffix+repairSuffix))
	if err != nil {
		return err
	}
	for _, name := range leftovers {
		if err := os.Remove(name); err != nil {
			return err
		}
	}
	acked, err := s.openCursor()
	if err != nil {
		return err
	}
	var (
		last   segmentState
		states []segmentState // of s.segs
	)
	for i, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		st, scanErr := scanSegment(b)
		isLast := i == len(names)-1
		if !isLast {
			st, scanErr = cutAtNext(st, scanErr, names[i+1])
		}
		if scanErr != nil && !isLast {
			return fmt.Errorf("segment %s damaged at %w; to continue, move it and every older segment aside (their unpublished events are then lost)", filepath.Base(name), scanErr)
		}
		if st.valid == 0 {
			// Not even the chain record survived: the crash came
			// right after the file was created.
			if !isLast {
				return fmt.Errorf("segment %s holds no chain record", filepath.Base(name))
			}
			if err := os.Remove(name); err != nil {
				return err
			}
			continue
		}
		if scanErr != nil {
			s.log.Warn("audit spool: cutting a torn record off the last segment (a crash inside a write)",
				"segment", filepath.Base(name), "kept_bytes", st.valid, "dropped_bytes", int64(len(b))-st.valid, "reason", scanErr)
			if err := os.Truncate(name, st.valid); err != nil {
				return err
			}
		}
		if base := filepath.Base(name); base != segmentName(st.first) {
			return fmt.Errorf("segment %s starts at pos %d", base, st.first)
		}
		if len(s.segs) > 0 && st.first != s.segs[len(s.segs)-1].last+1 {
			return fmt.Errorf("segment %s starts at pos %d, after pos %d: a segment is missing", filepath.Base(name), st.first, s.segs[len(s.segs)-1].last)
		}
		s.segs = append(s.segs, &segment{first: st.first, last: st.first - 1 + uint64(st.events), size: st.valid, path: name})
		s.used.Add(st.valid)
		last = st
		states = append(states, st)
	}
	if n := len(s.segs); n > 0 && last.events == 0 && last.nodeID != s.cfg.NodeID {
		// An empty segment of another node id: the new chain starts in a
		// segment of the same first pos, so this one goes.
		if err := os.Remove(s.segs[n-1].path); err != nil {
			return err
		}
		s.used.Add(-s.segs[n-1].size)
		s.segs = s.segs[:n-1]
		if n > 1 {
			last = states[n-2]
		}
	}
	if len(s.segs) == 0 {
		// A new spool, or one whose every segment was empty.
		last = segmentState{first: acked + 1, nodeID: s.cfg.NodeID}
	}
	s.nodeSeq, s.prev = last.nodeSeq, last.prev
	lastPos := last.first - 1 + uint64(last.events)
	if len(s.segs) > 0 {
		lastPos = s.segs[len(s.segs)-1].last
	}
	s.lastPos.Store(lastPos)
	s.syncedPos.Store(lastPos) // what survived on disk is what there is
	s.ackedPos.Store(max(min(acked, lastPos), s.segs0First()-1))
	if len(s.segs) == 0 || last.nodeID != s.cfg.NodeID {
		if len(s.segs) > 0 {
			s.log.Warn("audit spool: node id changed; starting a new chain", "old_node_id", last.nodeID, "node_id", s.cfg.NodeID)
		}
		s.nodeSeq, s.prev = 0, [sha256.Size]byte{}
		return s.rotateLocked(lastPos + 1)
	}
	f, err := s.cfg.openFile(s.segs[len(s.segs)-1].path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	s.active = f
	return nil
}

// cutAtNext applies the repair rule to a segment that is not the last: a
// segment that starts at or before the end of the one before it was written
// by repair (the events after a failed fsync, again), so the earlier one
// counts only up to the next one's first pos, and damage past that point
// (its unsynced tail) does not matter.
func cutAtNext(st segmentState, scanErr error, next string) (segmentState, error) {
	nextFirst, ok := segmentFirst(next)
	if !ok || st.valid == 0 || nextFirst < st.first {
		return st, scanErr
	}
	end := st.first - 1 + uint64(st.events) // last whole event
	if end < nextFirst-1 {
		return st, scanErr // damage before the next segment's events: lost events
	}
	st.events = int(nextFirst - st.first)
	return st, nil
}

func (s *Spool) segs0First() uint64 {
	if len(s.segs) == 0 {
		return 1
	}
	return s.segs[0].first
}

// Room reports whether the spool can take the record of one more decision
// (SPEC §6 step 18a). It does not reserve the space. A closed spool, one
// broken by a failed write, or one whose last write failed (a full disk)
// has none: Append would refuse the record after the ledger had consumed
// the caller's jti.
func (s *Spool) Room() bool {
	return !s.refusing.Load() && !s.writeFailed.Load() && s.used.Load()+roomReserve <= s.cfg.MaxBytes
}

// Append records e: it sets EventID (a new UUIDv7 if empty), NodeID,
// Region, NodeSeq and PrevEventSHA256, encodes it and writes it to the
// active segment with one write(2). It returns after the write, before any
// fsync and without waiting for NATS. On error the event is not recorded:
// ErrFull when the spool is at its limit, ErrClosed after Close, or the
// write's error; each is counted as an unrecordable event. ctx only
// carries request-scoped values to the metrics: a local write is not
// cancellable, and the event must be written whatever the caller's state.
func (s *Spool) Append(ctx context.Context, e *Event) error {
	err := s.append(e)
	if err != nil {
		s.met.unrecordable.Add(1)
		return fmt.Errorf("audit: append %s event: %w", e.ReasonCode, err)
	}
	s.met.spooled.Add(ctx, 1)
	select {
	case s.appended <- struct{}{}:
	default:
	}
	return nil
}

func (s *Spool) append(e *Event) error {
	if err := e.check(); err != nil {
		return err
	}
	if e.EventID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("event id: %w", err)
		}
		e.EventID = id.String()
	}
	e.Version = Version
	e.NodeID, e.Region = s.cfg.NodeID, s.cfg.Region
	now := s.cfg.Now()
	if e.OccurredAt == "" {
		e.OccurredAt = Timestamp(now)
	}
	subject := e.NATSSubject()
	// Encode outside the lock; only the chain members, last in the
	// encoding, are filled in under it.
	head, err := e.encodeHead()
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.broken != nil:
		return s.broken
	}
	e.NodeSeq = s.nodeSeq + 1
	e.PrevEventSHA256 = hex.EncodeToString(s.prev[:])
	data := appendChain(head, e.NodeSeq, e.PrevEventSHA256)
	pos := s.lastPos.Load() + 1
	s.buf = appendEventRecord(s.buf[:0], pos, e.NodeSeq, now.UnixNano(), subject, e.EventID, data)
	if s.used.Load()+int64(len(s.buf)) > s.cfg.MaxBytes {
		return ErrFull
	}
	seg := s.segs[len(s.segs)-1]
	if n, err := s.active.Write(s.buf); err != nil {
		// Cut the partial record off so the next append lands on a
		// record boundary; if that fails too, refuse every append.
		if terr := s.active.Truncate(seg.size); terr != nil {
			s.breakLocked(fmt.Errorf("spool segment %s unusable after a failed write: %w", seg.path, errors.Join(err, terr)))
		}
		_ = n
		s.writeFailed.Store(true)
		return fmt.Errorf("write spool segment: %w", err)
	}
	s.writeFailed.Store(false)
	s.unsynced = append(s.unsynced, unsyncedRecord{pos: pos, nodeSeq: e.NodeSeq, prev: s.prev, rec: slices.Clone(s.buf)})
	seg.size += int64(len(s.buf))
	seg.last = pos
	s.used.Add(int64(len(s.buf)))
	s.nodeSeq, s.prev = e.NodeSeq, sha256.Sum256(data)
	s.lastPos.Store(pos)
	s.unsync = true
	select {
	case s.dirty <- struct{}{}:
	default:
	}
	if seg.size >= s.cfg.SegmentBytes {
		if err := s.rotateLocked(pos + 1); err != nil {
			// The event is recorded; the next append retries.
			s.log.Error("audit spool: cannot start a new segment", "err", err)
		}
	}
	return nil
}

// rotateLocked starts a new segment whose chain record holds the chain
// state, and hands the full one to the syncer, which fsyncs it (and the
// directory, for the new name) and closes it outside mu: the fsync of a
// full segment takes long, and every decision waits on mu. s.mu must be
// held, or s not yet shared.
func (s *Spool) rotateLocked(first uint64) error {
	path := filepath.Join(s.cfg.Dir, segmentName(first))
	rec := appendChainRecord(nil, first, s.nodeSeq, s.prev, s.cfg.NodeID)
	if s.used.Load()+int64(len(rec)) > s.cfg.MaxBytes && len(s.segs) > 0 {
		return ErrFull
	}
	f, err := s.cfg.openFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(rec); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if s.active != nil {
		s.retired = append(s.retired, retiredSegment{f: s.active, path: s.segs[len(s.segs)-1].path, last: first - 1})
	} else if err := s.syncDir(); err != nil {
		// Not yet shared (OpenSpool): nothing is marked synced past what
		// recovery found, so the failure only needs saying.
		return fmt.Errorf("fsync spool directory: %w", err)
	}
	s.active = f
	s.unsync = true
	s.segs = append(s.segs, &segment{first: first, last: first - 1, size: int64(len(rec)), path: path})
	s.used.Add(int64(len(rec)))
	return nil
}

// Close stops the fsync goroutine, fsyncs and closes the files. Events
// not yet published stay in the spool for the next start. Append fails with
// ErrClosed afterwards.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.refusing.Store(true)
	s.mu.Unlock()
	close(s.quit)
	s.wg.Wait()
	if s.Broken() != nil {
		// One last try, so that the events kept in memory reach the disk
		// before the process goes (they would otherwise depend on the old
		// file's unsynced pages).
		if err := s.repair(); err != nil {
			s.log.Error("audit spool repair at close failed; the events since the last good fsync may be lost", "err", err)
		}
	}
	s.mu.Lock()
	s.unsync = true
	s.mu.Unlock()
	err := s.Sync()
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(err, s.closeFiles())
}

func (s *Spool) closeFiles() error {
	var errs []error
	for _, r := range s.retired { // left by a broken Sync
		r.f.Close()
	}
	s.retired = nil
	if s.active != nil {
		errs = append(errs, s.active.Close())
		s.active = nil
	}
	if s.cursor != nil {
		errs = append(errs, s.cursor.Close())
		s.cursor = nil
	}
	return errors.Join(errs...)
}

// Bytes returns the size of the spool files.
func (s *Spool) Bytes() int64 { return s.used.Load() }

// Pending returns how many appended events JetStream has not acknowledged.
func (s *Spool) Pending() uint64 { return s.lastPos.Load() - s.ackedPos.Load() }
