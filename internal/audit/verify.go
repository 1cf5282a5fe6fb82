package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
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

	ProblemUnknownNode = "unknown_node" // an event or checkpoint of a node that is not a fleet member
	ProblemSignature   = "signature"    // no signature, or none of the node's keys made it
	ProblemTruncated   = "truncated"    // a checkpoint says events exist past the chain's last one
	ProblemCheckpoint  = "checkpoint"   // an active member without a (recent) checkpoint, or a malformed one
	ProblemPurged      = "purged"       // stream messages gone that retention would have kept
	ProblemDeleted     = "deleted"      // messages deleted from inside the stream
)

// maxSignatureReports bounds the signature problems reported per node; the
// rest are counted in one more problem at Finish (a node that ran without
// its key would otherwise print every event).
const maxSignatureReports = 5

// recentSums is how many of a node's latest event hashes are kept to check
// the checkpoints that arrive after their event (the usual order).
const recentSums = 1 << 16

// Member is a fleet member's audit key (trust material audit_nodes).
type Member struct {
	NodeID    string
	PublicKey ed25519.PublicKey
	// Active members are in service: each must have a checkpoint in the
	// stream (and, with CheckpointMaxAge, a recent one).
	Active bool
}

// Msg is one stored message of the audit stream.
type Msg struct {
	StreamSeq uint64
	Subject   string
	Signature string    // the SignatureHeader value, empty if none
	Data      []byte    // the message, byte for byte
	Time      time.Time // when the stream stored it; zero if unknown
}

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
	switch {
	case p.NodeID == "" && p.StreamSeq == 0:
		return fmt.Sprintf("%s: %s", p.Kind, p.Detail)
	case p.NodeID == "":
		return fmt.Sprintf("%s: stream seq %d: %s", p.Kind, p.StreamSeq, p.Detail)
	case p.NodeSeq == 0:
		return fmt.Sprintf("%s: node %q: %s", p.Kind, p.NodeID, p.Detail)
	}
	return fmt.Sprintf("%s: node %q node_seq %d (stream seq %d): %s", p.Kind, p.NodeID, p.NodeSeq, p.StreamSeq, p.Detail)
}

// NodeChain summarises one node's events as verified.
type NodeChain struct {
	NodeID      string
	First, Last uint64 // node_seq range seen
	Events      int
	Reordered   int // events stored after one with a higher node_seq
	Checkpoints int // valid checkpoints
	// CheckpointSeq is the highest node_seq a valid checkpoint vouches
	// for, CheckpointAt when the newest checkpoint was stored.
	CheckpointSeq uint64
	CheckpointAt  time.Time
	Member        bool // listed in Members
}

// ChainVerifier checks each node's hash chain (SPEC §9) over the messages
// of a stream: node_seq counts up by one from 1, and prev_event_sha256 is
// the SHA-256 of the previous event's exact bytes. A deleted event shows as
// a gap, an altered one as a hash mismatch at its successor (or its own
// subject), an event stored twice as a duplicate. Events may arrive out of
// node_seq order within ReorderWindow; they are checked in node_seq order.
//
// Every event and checkpoint must come from a node listed in Members and
// carry that node's signature (docs/AUDIT.md): a forged node, a forged or
// changed event fails there. The deletion of a node's newest events, which
// the chain cannot show, is seen against the node's signed checkpoints:
// one vouching for a node_seq past the chain's last event is ProblemTruncated,
// unless that event was appended before RetainedFrom. Every active member
// must have a checkpoint in the stream, so a purged stream names them.
//
// Call Add for every message, then Finish. A ChainVerifier is not safe for
// concurrent use.
type ChainVerifier struct {
	// Members is the fleet. A node not listed is ProblemUnknownNode; with
	// no members every event is.
	Members []Member
	// UnsignedBefore: events stored before this stream sequence need no
	// signature (the history from before the nodes had audit keys). Zero:
	// every event does. Checkpoints always need one.
	UnsignedBefore uint64
	// HeadTrimmed says the stream's oldest events were removed by its
	// retention limits, so a chain may start after node_seq 1 (see
	// CheckStream).
	HeadTrimmed bool
	// RetainedFrom: with HeadTrimmed, events appended before it may have
	// been removed by retention, so a checkpoint vouching for such an
	// event is not a deletion. Zero: every event a checkpoint vouches for
	// must be in the stream.
	RetainedFrom time.Time
	// CheckpointMaxAge, if positive, makes an active member whose newest
	// checkpoint was stored more than this before Now a problem: the node
	// stopped, or its latest checkpoints and events were removed.
	CheckpointMaxAge time.Duration
	Now              time.Time
	// ReorderWindow bounds the events of one node held while an earlier
	// node_seq is missing. If zero, DefaultReorderWindow.
	ReorderWindow int

	nodes    map[string]*nodeState
	keys     map[string][]ed25519.PublicKey // by node id, from Members
	problems []Problem
}

type nodeState struct {
	NodeChain
	badSigs  int                 // events or checkpoints with a bad or missing signature
	reported bool                // reported as not a fleet member
	claims   map[uint64]claim    // checkpoint claims on events not yet checked, by node_seq
	recent   [][sha256.Size]byte // hashes of recent events, by node_seq % recentSums
	newest   claim               // the checkpoint vouching for the highest node_seq
	next     uint64              // node_seq expected next in the chain (0: not started)
	lastHash [sha256.Size]byte
	haveHash bool // lastHash is the hash of event next-1
	maxSeen  uint64
	pending  map[uint64]pendingEvent // node_seq > next, waiting for the gap to fill
}

// claim is what a checkpoint says about one event.
type claim struct {
	streamSeq uint64
	sum       string    // head_sha256
	headAt    time.Time // when the node appended the event
}

type pendingEvent struct {
	streamSeq uint64
	prev      string // its prev_event_sha256
	sum       [sha256.Size]byte
}

// Add checks one stored message: an event, or (on a checkpoint subject) a
// checkpoint.
func (v *ChainVerifier) Add(m Msg) {
	v.setup()
	if IsCheckpointSubject(m.Subject) {
		v.addCheckpoint(m)
		return
	}
	streamSeq, subject, data := m.StreamSeq, m.Subject, m.Data
	e, err := Decode(data)
	if err != nil || e.NodeID == "" || e.NodeSeq == 0 {
		v.report(ProblemMalformed, "", 0, streamSeq, "not an audit event with node_id and node_seq")
		return
	}
	if want := e.Outcome + "." + string(e.ReasonCode); !strings.HasSuffix(subject, "."+want) {
		v.report(ProblemSubject, e.NodeID, e.NodeSeq, streamSeq, fmt.Sprintf("subject %q, event says %s", subject, want))
	}
	n := v.node(e.NodeID)
	if v.mustBeSigned(n, e.NodeSeq, streamSeq) && !verifySig(v.keys[e.NodeID], eventContext, data, m.Signature) {
		v.badSignature(n, e.NodeSeq, streamSeq, "event")
	}
	if n.Events == 0 {
		n.First = e.NodeSeq
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

func (v *ChainVerifier) setup() {
	if v.nodes != nil {
		return
	}
	v.nodes = map[string]*nodeState{}
	v.keys = map[string][]ed25519.PublicKey{}
	for _, mb := range v.Members {
		v.keys[mb.NodeID] = append(v.keys[mb.NodeID], mb.PublicKey)
	}
}

// mustBeSigned reports whether a message of n at streamSeq must carry a
// member's signature: it must unless it predates UnsignedBefore. A node
// that is not a member is reported once, at its first such message.
func (v *ChainVerifier) mustBeSigned(n *nodeState, nodeSeq, streamSeq uint64) bool {
	if streamSeq < v.UnsignedBefore {
		return false
	}
	if !n.Member && !n.reported {
		n.reported = true
		v.report(ProblemUnknownNode, n.NodeID, nodeSeq, streamSeq, "not a fleet member (trust material audit_nodes): its events are not authentic")
	}
	return n.Member
}

// node returns node id's state, creating it on its first message.
func (v *ChainVerifier) node(id string) *nodeState {
	n := v.nodes[id]
	if n != nil {
		return n
	}
	n = &nodeState{
		NodeChain: NodeChain{NodeID: id, Member: len(v.keys[id]) > 0},
		pending:   map[uint64]pendingEvent{},
		claims:    map[uint64]claim{},
	}
	v.nodes[id] = n
	return n
}

func (v *ChainVerifier) badSignature(n *nodeState, nodeSeq, streamSeq uint64, what string) {
	n.badSigs++
	if n.badSigs <= maxSignatureReports {
		v.report(ProblemSignature, n.NodeID, nodeSeq, streamSeq, what+" not signed by the node's audit key: forged or changed")
	}
}

// addCheckpoint checks a checkpoint's signature and records what it vouches
// for. A checkpoint that fails is reported and otherwise ignored.
func (v *ChainVerifier) addCheckpoint(m Msg) {
	c, err := DecodeCheckpoint(m.Data)
	if err != nil {
		v.report(ProblemCheckpoint, "", 0, m.StreamSeq, "malformed checkpoint: "+err.Error())
		return
	}
	// The token after "checkpoint." names the node; the prefix differs
	// between a region's stream, the global one and a copy.
	if want := CheckpointSubject("", c.NodeID); !strings.HasSuffix(m.Subject, want[len(SubjectPrefix)-1:]) {
		v.report(ProblemSubject, c.NodeID, c.NodeSeq, m.StreamSeq, fmt.Sprintf("checkpoint on subject %q, not its node's", m.Subject))
	}
	n := v.node(c.NodeID)
	// A checkpoint counts only when a member signed it, whenever it was
	// stored: it is what the other checks trust.
	v.mustBeSigned(n, c.NodeSeq, m.StreamSeq)
	if !n.Member {
		return
	}
	if !verifySig(v.keys[c.NodeID], checkpointContext, m.Data, m.Signature) {
		v.badSignature(n, c.NodeSeq, m.StreamSeq, "checkpoint")
		return
	}
	headAt, _ := time.Parse(time.RFC3339, c.HeadAt)
	stored := m.Time
	if stored.IsZero() {
		stored, _ = time.Parse(time.RFC3339, c.IssuedAt)
	}
	n.Checkpoints++
	n.CheckpointAt = later(n.CheckpointAt, stored)
	cl := claim{streamSeq: m.StreamSeq, sum: c.HeadSHA256, headAt: headAt}
	if c.NodeSeq >= n.CheckpointSeq {
		n.CheckpointSeq, n.newest = c.NodeSeq, cl
	}
	switch {
	case n.next != 0 && c.NodeSeq < n.next:
		// Its event was checked already: compare with its hash, if
		// still held.
		if sum, ok := n.recentSum(c.NodeSeq); ok && hex.EncodeToString(sum[:]) != c.HeadSHA256 {
			v.report(ProblemAltered, n.NodeID, c.NodeSeq, m.StreamSeq, "event differs from what the node's checkpoint says: it was changed")
		}
	default:
		n.claims[c.NodeSeq] = cl
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (n *nodeState) recentSum(seq uint64) ([sha256.Size]byte, bool) {
	if n.recent == nil || seq+recentSums <= n.Last || seq > n.Last {
		return [sha256.Size]byte{}, false
	}
	return n.recent[seq%recentSums], true
}

func (n *nodeState) keepSum(seq uint64, sum [sha256.Size]byte) {
	if n.recent == nil {
		n.recent = make([][sha256.Size]byte, recentSums)
	}
	n.recent[seq%recentSums] = sum
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
		if cl, ok := n.claims[n.next]; ok {
			delete(n.claims, n.next)
			if cl.sum != hex.EncodeToString(pe.sum[:]) {
				v.report(ProblemAltered, n.NodeID, n.next, pe.streamSeq,
					fmt.Sprintf("event differs from what the node's checkpoint (stream seq %d) says: it was changed", cl.streamSeq))
			}
		}
		n.Last, n.lastHash, n.haveHash = n.next, pe.sum, true
		if n.Member { // only members' checkpoints count; a flood of forged node ids costs no memory here
			n.keepSum(n.next, pe.sum)
		}
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

// Finish reports what is still missing once every message was added: gaps
// before events that never had their predecessor, events a checkpoint
// vouches for past a chain's end, active members without a (recent)
// checkpoint, and the count of signature problems not reported one by one.
func (v *ChainVerifier) Finish() {
	v.setup()
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
		if n.CheckpointSeq > n.maxSeen {
			cl := n.newest
			switch {
			case v.HeadTrimmed && cl.headAt.Before(v.RetainedFrom):
				// Appended before the oldest message retention kept.
			case n.Events == 0:
				v.report(ProblemTruncated, id, n.CheckpointSeq, cl.streamSeq,
					fmt.Sprintf("no event in the stream, but a checkpoint says node_seq 1..%d existed (appended up to %s): deleted", n.CheckpointSeq, Timestamp(cl.headAt)))
			default:
				v.report(ProblemTruncated, id, n.CheckpointSeq, cl.streamSeq,
					fmt.Sprintf("node_seq %d..%d missing after the chain's last event: a checkpoint says node_seq %d existed (appended %s): deleted", n.maxSeen+1, n.CheckpointSeq, n.CheckpointSeq, Timestamp(cl.headAt)))
			}
		}
		if n.badSigs > maxSignatureReports {
			v.report(ProblemSignature, id, 0, 0, fmt.Sprintf("%d more messages not signed by the node's audit key", n.badSigs-maxSignatureReports))
		}
	}
	active := map[string]bool{}
	for _, mb := range v.Members {
		active[mb.NodeID] = active[mb.NodeID] || mb.Active
	}
	members := slices.Sorted(maps.Keys(active))
	for _, id := range members {
		if !active[id] {
			continue
		}
		n := v.nodes[id]
		switch {
		case n == nil || n.Checkpoints == 0:
			v.report(ProblemCheckpoint, id, 0, 0, "active fleet member without a checkpoint in the stream: its trail was removed, or it never ran with its audit key")
		case v.CheckpointMaxAge > 0 && v.Now.Sub(n.CheckpointAt) > v.CheckpointMaxAge:
			v.report(ProblemCheckpoint, id, n.CheckpointSeq, n.newest.streamSeq,
				fmt.Sprintf("newest checkpoint stored %s, more than %s ago: the node stopped, or its newest events and checkpoints were removed", Timestamp(n.CheckpointAt), v.CheckpointMaxAge))
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
