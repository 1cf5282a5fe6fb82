package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// On disk, a segment is a sequence of records:
//
//	length  uint32, big endian: the body's length
//	crc     uint32, big endian: CRC-32C (Castagnoli) of the body
//	body    length bytes
//
// The first record of every segment is a chain record: the chain state at
// the segment's start, so the chain survives the deletion of every older
// segment. Every other record is an event record. Integers are big endian.
//
//	chain: kind=1 | pos u64 (of the next event) | node_seq u64 (of the last event) | prev [32] | node_id
//	event: kind=2 | pos u64 | node_seq u64 | appended_at i64 (Unix ns) | u16 len | subject | u16 len | event_id | data
//
// pos numbers events in the spool from 1, across node ids; node_seq numbers
// one node's events (SPEC §9). data is the message, byte for byte.
const (
	recordHeaderLen = 8
	// maxBodyLen bounds a record body: an event never comes near it
	// (paths are cut at maxPathBytes), so a longer length is corruption.
	maxBodyLen = 1 << 20

	kindChain byte = 1
	kindEvent byte = 2

	chainFixedLen = 1 + 8 + 8 + sha256.Size
	eventFixedLen = 1 + 8 + 8 + 8 + 2 + 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errShort means the bytes end inside a record: a torn tail, or a record
// still being written.
var errShort = errors.New("record incomplete")

// record is one decoded spool record.
type record struct {
	kind    byte
	pos     uint64
	nodeSeq uint64
	// chain records; the reader also sets nodeID on event records
	prev   [sha256.Size]byte
	nodeID string
	// event records
	appendedAt int64
	subject    string
	eventID    string
	data       []byte // aliases the input of parseRecord
}

// appendEventRecord appends an event record to dst.
func appendEventRecord(dst []byte, pos, nodeSeq uint64, appendedAt int64, subject, eventID string, data []byte) []byte {
	n := eventFixedLen + len(subject) + len(eventID) + len(data)
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, 0, 0, 0, 0) // crc, below
	dst = append(dst, kindEvent)
	dst = binary.BigEndian.AppendUint64(dst, pos)
	dst = binary.BigEndian.AppendUint64(dst, nodeSeq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(appendedAt))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(subject)))
	dst = append(dst, subject...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(eventID)))
	dst = append(dst, eventID...)
	dst = append(dst, data...)
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+recordHeaderLen:], castagnoli))
	return dst
}

// appendChainRecord appends a chain record to dst.
func appendChainRecord(dst []byte, pos, nodeSeq uint64, prev [sha256.Size]byte, nodeID string) []byte {
	n := chainFixedLen + len(nodeID)
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, 0, 0, 0, 0)
	dst = append(dst, kindChain)
	dst = binary.BigEndian.AppendUint64(dst, pos)
	dst = binary.BigEndian.AppendUint64(dst, nodeSeq)
	dst = append(dst, prev[:]...)
	dst = append(dst, nodeID...)
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+recordHeaderLen:], castagnoli))
	return dst
}

// parseRecord decodes the record at the start of b and returns it with its
// length on disk. It returns errShort when b ends inside the record, and
// another error when the bytes cannot be a record. It never panics, whatever
// b holds; the returned record's data aliases b.
func parseRecord(b []byte) (record, int, error) {
	var r record
	if len(b) < recordHeaderLen {
		return r, 0, errShort
	}
	n := binary.BigEndian.Uint32(b)
	if n == 0 || n > maxBodyLen {
		return r, 0, fmt.Errorf("record length %d out of range", n)
	}
	if uint64(len(b)-recordHeaderLen) < uint64(n) {
		return r, 0, errShort
	}
	body := b[recordHeaderLen : recordHeaderLen+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return r, 0, errors.New("record checksum mismatch")
	}
	r.kind = body[0]
	switch r.kind {
	case kindChain:
		if len(body) < chainFixedLen {
			return r, 0, errors.New("chain record too short")
		}
		r.pos = binary.BigEndian.Uint64(body[1:])
		r.nodeSeq = binary.BigEndian.Uint64(body[9:])
		copy(r.prev[:], body[17:chainFixedLen])
		r.nodeID = string(body[chainFixedLen:])
	case kindEvent:
		if len(body) < eventFixedLen {
			return r, 0, errors.New("event record too short")
		}
		r.pos = binary.BigEndian.Uint64(body[1:])
		r.nodeSeq = binary.BigEndian.Uint64(body[9:])
		r.appendedAt = int64(binary.BigEndian.Uint64(body[17:]))
		rest := body[25:]
		subject, rest, ok := cutLen(rest)
		if !ok {
			return r, 0, errors.New("event record subject overruns the record")
		}
		id, rest, ok := cutLen(rest)
		if !ok {
			return r, 0, errors.New("event record id overruns the record")
		}
		r.subject, r.eventID, r.data = string(subject), string(id), rest
	default:
		return r, 0, fmt.Errorf("unknown record kind %d", r.kind)
	}
	if r.pos == 0 {
		return r, 0, errors.New("record position 0")
	}
	return r, recordHeaderLen + int(n), nil
}

// cutLen splits a u16-length-prefixed field off b.
func cutLen(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < n {
		return nil, nil, false
	}
	return b[:n], b[n:], true
}

// segmentState is what scanSegment learns from a segment's bytes.
type segmentState struct {
	valid   int64  // bytes of whole, well-formed records from the start
	first   uint64 // pos of the chain record (the segment's first event)
	last    uint64 // pos of the last event record, or 0 if none
	events  int
	nodeID  string
	nodeSeq uint64            // node_seq of the last event (or the chain record's)
	prev    [sha256.Size]byte // SHA-256 of the last event's data (or the chain record's)
	oldest  int64             // appended_at of the first event, Unix ns
}

// scanSegment reads a segment's bytes record by record. It stops at the
// first record that is incomplete or malformed and returns what came before
// with the reason it stopped (nil if b ended on a record boundary). The
// records must start with a chain record and carry increasing positions and
// node sequences. It never panics.
func scanSegment(b []byte) (segmentState, error) {
	var st segmentState
	off := 0
	for off < len(b) {
		r, n, err := parseRecord(b[off:])
		if err != nil {
			return st, fmt.Errorf("offset %d: %w", off, err)
		}
		switch {
		case off == 0 && r.kind != kindChain:
			return st, errors.New("offset 0: segment does not start with a chain record")
		case off == 0:
			st.first, st.nodeSeq, st.prev, st.nodeID = r.pos, r.nodeSeq, r.prev, r.nodeID
		case r.kind != kindEvent:
			return st, fmt.Errorf("offset %d: chain record inside a segment", off)
		default:
			wantPos := st.first
			if st.last != 0 {
				wantPos = st.last + 1
			}
			if r.pos != wantPos || r.nodeSeq != st.nodeSeq+1 {
				return st, fmt.Errorf("offset %d: record pos %d node_seq %d, want %d and %d", off, r.pos, r.nodeSeq, wantPos, st.nodeSeq+1)
			}
			if st.events == 0 {
				st.oldest = r.appendedAt
			}
			st.last, st.nodeSeq, st.prev = r.pos, r.nodeSeq, sha256.Sum256(r.data)
			st.events++
		}
		off += n
		st.valid = int64(off)
	}
	return st, nil
}
