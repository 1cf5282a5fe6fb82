package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Problem kinds a ChainVerifier reports.
const (
	ProblemMalformed = "malformed"  // not an event
	ProblemSubject   = "subject"    // subject does not match outcome and reason_code
	ProblemGap       = "gap"        // node_seq values missing
	ProblemAltered   = "altered"    // prev_event_sha256 does not hash the previous event
	ProblemDuplicate = "duplicate"  // a node_seq stored again, or out of order
	ProblemHead      = "head"       // the chain does not start at node_seq 1
	ProblemFirstPrev = "first_prev" // node_seq 1 with a prev_event_sha256 other than zeros
)

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
}

// ChainVerifier walks the events of a stream in stream order and checks
// each node's hash chain (SPEC §9): node_seq counts up by one, and
// prev_event_sha256 is the SHA-256 of the previous event's exact bytes.
// A deleted event shows as a gap, an altered one as a hash mismatch at its
// successor. A deletion of a node's newest events cannot be seen in the
// chain itself; compare Last with the node's own count.
//
// A ChainVerifier is not safe for concurrent use.
type ChainVerifier struct {
	// HeadTrimmed says the stream's oldest events were removed by its
	// retention limits, so a chain may start after node_seq 1.
	HeadTrimmed bool

	nodes    map[string]*nodeState
	problems []Problem
}

type nodeState struct {
	NodeChain
	lastHash [sha256.Size]byte
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
	sum := sha256.Sum256(data)
	n := v.nodes[e.NodeID]
	if n == nil {
		n = &nodeState{NodeChain: NodeChain{NodeID: e.NodeID, First: e.NodeSeq}}
		v.nodes[e.NodeID] = n
		switch {
		case e.NodeSeq == 1 && e.PrevEventSHA256 != zeroHash:
			v.report(ProblemFirstPrev, e.NodeID, 1, streamSeq, "first event's prev_event_sha256 is not 64 zeros")
		case e.NodeSeq > 1 && !v.HeadTrimmed:
			v.report(ProblemHead, e.NodeID, e.NodeSeq, streamSeq, fmt.Sprintf("chain starts at node_seq %d: events 1..%d missing", e.NodeSeq, e.NodeSeq-1))
		}
	} else {
		switch {
		case e.NodeSeq <= n.Last:
			v.report(ProblemDuplicate, e.NodeID, e.NodeSeq, streamSeq, fmt.Sprintf("node_seq %d after %d", e.NodeSeq, n.Last))
			return
		case e.NodeSeq > n.Last+1:
			v.report(ProblemGap, e.NodeID, e.NodeSeq, streamSeq, fmt.Sprintf("node_seq %d..%d missing", n.Last+1, e.NodeSeq-1))
		case e.PrevEventSHA256 != hex.EncodeToString(n.lastHash[:]):
			v.report(ProblemAltered, e.NodeID, e.NodeSeq, streamSeq, fmt.Sprintf("prev_event_sha256 does not match event node_seq %d: it or this event was altered", n.Last))
		}
	}
	n.Last, n.lastHash = e.NodeSeq, sum
	n.Events++
}

func (v *ChainVerifier) report(kind, node string, seq, streamSeq uint64, detail string) {
	v.problems = append(v.problems, Problem{Kind: kind, NodeID: node, NodeSeq: seq, StreamSeq: streamSeq, Detail: detail})
}

// Problems returns what was found so far, in stream order.
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
