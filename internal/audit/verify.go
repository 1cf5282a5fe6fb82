package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Problem kinds a ChainVerifier reports.
const (
	ProblemMalformed = "malformed"  // not an event
	ProblemSubject   = "subject"    // subject does not match outcome and reason_code
	ProblemGap       = "gap"        // node_seq values missing
	ProblemAltered   = "altered"    // prev_event_sha256 does not hash the previous event
	ProblemDuplicate = "duplicate"  // a node_seq stored twice
	ProblemHead      = "head"       // the chain does not start at node_seq 1
	ProblemFirstPrev = "first_prev" // node_seq 1 with a prev_event_sha256 other than zeros
)

// DefaultReorderWindow bounds how far a node's events may be out of
// node_seq order in the stream before the missing ones are reported as a
// gap. Events reach the stream in node_seq order except around a failure
// in the middle of a window of asynchronous publishes (a stream leader
// change), where the publisher resends from the first failure; the
// distance is then below its window (256 by default).
const DefaultReorderWindow = 1 << 16

// Problem is one break in a node's chain.
type Problem struct {
	Kind      string
	NodeID    string
	NodeSeq   uint64 // of the event where the break was seen
	StreamSeq uint64 // its stream sequence
	Detail    string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s: node %q node_seq %d (stream seq %d): %s", p.Kind, p.NodeID, p.NodeSeq, p.StreamSeq, p.Detail)
}

// NodeChain summarises one node's events as verified.
type NodeChain struct {
	NodeID      string
	First, Last uint64 // node_seq range seen
	Events      int
	Reordered   int // events stored after one with a higher node_seq
}

// ChainVerifier checks each node's hash chain (SPEC §9) over the messages
// of a stream: node_seq counts up by one from 1, and prev_event_sha256 is
// the SHA-256 of the previous event's exact bytes. A deleted event shows as
// a gap, an altered one as a hash mismatch at its successor (or its own
// subject), an event stored twice as a duplicate. Events may arrive out of
// node_seq order within ReorderWindow; they are checked in node_seq order.
//
// A deletion of a node's newest events cannot be seen in the chain itself;
// compare Last with the node's own count.
//
// Call Add for every message, then Finish. A ChainVerifier is not safe for
// concurrent use.
type ChainVerifier struct {
	// HeadTrimmed says the stream's oldest events were removed by its
	// retention limits, so a chain may start after node_seq 1.
	HeadTrimmed bool
	// ReorderWindow bounds the events of one node held while an earlier
	// node_seq is missing. If zero, DefaultReorderWindow.
	ReorderWindow int

	nodes    map[string]*nodeState
	problems []Problem
}

type nodeState struct {
	NodeChain
	next     uint64 // node_seq expected next in the chain (0: not started)
	lastHash [sha256.Size]byte
	haveHash bool // lastHash is the hash of event next-1
	maxSeen  uint64
	pending  map[uint64]pendingEvent // node_seq > next, waiting for the gap to fill
}

type pendingEvent struct {
	streamSeq uint64
	prev      string // its prev_event_sha256
	sum       [sha256.Size]byte
}

// Add checks one stored message.
func (v *ChainVerifier) Add(streamSeq uint64, subject string, data []byte) {
	if v.nodes == nil {
		v.nodes = map[string]*nodeState{}
	}
	e, err := Decode(data)
	if err != nil || e.NodeID == "" || e.NodeSeq == 0 {
		v.report(ProblemMalformed, "", 0, streamSeq, "not an audit event with node_id and node_seq")
		return
	}
	if want := e.Outcome + "." + string(e.ReasonCode); !strings.HasSuffix(subject, "."+want) {
		v.report(ProblemSubject, e.NodeID, e.NodeSeq, streamSeq, fmt.Sprintf("subject %q, event says %s", subject, want))
	}
	n := v.nodes[e.NodeID]
	if n == nil {
		n = &nodeState{NodeChain: NodeChain{NodeID: e.NodeID, First: e.NodeSeq}, pending: map[uint64]pendingEvent{}}
		v.nodes[e.NodeID] = n
	}
	n.First = min(n.First, e.NodeSeq)
	if e.NodeSeq < n.maxSeen {
		n.Reordered++
	}
	n.maxSeen = max(n.maxSeen, e.NodeSeq)
	pe := pendingEvent{streamSeq: streamSeq, prev: e.PrevEventSHA256, sum: sha256.Sum256(data)}
	if _, dup := n.pending[e.NodeSeq]; dup || (n.next != 0 && e.NodeSeq < n.next) {
		v.report(ProblemDuplicate, e.NodeID, e.NodeSeq, streamSeq, fmt.Sprintf("node_seq %d stored again", e.NodeSeq))
		return
	}
	n.Events++
	n.pending[e.NodeSeq] = pe
	if n.next == 0 && e.NodeSeq == 1 {
		n.next = 1
	}
	v.drain(n)
	window := v.ReorderWindow
	if window <= 0 {
		window = DefaultReorderWindow
	}
	for len(n.pending) > window {
		v.skip(n)
	}
}

// drain checks and consumes the pending events that continue the chain.
func (v *ChainVerifier) drain(n *nodeState) {
	for n.next != 0 {
		pe, ok := n.pending[n.next]
		if !ok {
			return
		}
		delete(n.pending, n.next)
		switch {
		case n.next == 1 && pe.prev != zeroHash:
			v.report(ProblemFirstPrev, n.NodeID, 1, pe.streamSeq, "first event's prev_event_sha256 is not 64 zeros")
		case n.next > 1 && n.haveHash && pe.prev != hex.EncodeToString(n.lastHash[:]):
			v.report(ProblemAltered, n.NodeID, n.next, pe.streamSeq,
				fmt.Sprintf("prev_event_sha256 does not match event node_seq %d: it or this event was altered", n.next-1))
		}
		n.Last, n.lastHash, n.haveHash = n.next, pe.sum, true
		n.next++
	}
}

// skip gives up on the missing node_seq values before the lowest pending
// event: a gap (or the head of the chain), then continues from it.
func (v *ChainVerifier) skip(n *nodeState) {
	low := slices.Min(slices.Collect(maps.Keys(n.pending)))
	pe := n.pending[low]
	switch {
	case n.next == 0 && !v.HeadTrimmed:
		v.report(ProblemHead, n.NodeID, low, pe.streamSeq, fmt.Sprintf("chain starts at node_seq %d: events 1..%d missing", low, low-1))
	case n.next != 0:
		v.report(ProblemGap, n.NodeID, low, pe.streamSeq, fmt.Sprintf("node_seq %d..%d missing", n.next, low-1))
	}
	n.next, n.haveHash = low, false
	v.drain(n)
}

// Finish reports what is still missing once every message was added:
// gaps before events that never had their predecessor.
func (v *ChainVerifier) Finish() {
	ids := make([]string, 0, len(v.nodes))
	for id := range v.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		n := v.nodes[id]
		for len(n.pending) > 0 {
			v.skip(n)
		}
	}
}

func (v *ChainVerifier) report(kind, node string, seq, streamSeq uint64, detail string) {
	v.problems = append(v.problems, Problem{Kind: kind, NodeID: node, NodeSeq: seq, StreamSeq: streamSeq, Detail: detail})
}

// Problems returns what was found so far, in the order it was found.
func (v *ChainVerifier) Problems() []Problem { return v.problems }

// Nodes returns each node's chain summary, by node id.
func (v *ChainVerifier) Nodes() []NodeChain {
	out := make([]NodeChain, 0, len(v.nodes))
	for _, n := range v.nodes {
		out = append(out, n.NodeChain)
	}
	slices.SortFunc(out, func(a, b NodeChain) int { return strings.Compare(a.NodeID, b.NodeID) })
	return out
}
