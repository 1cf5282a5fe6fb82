//go:build !auditfuzz

package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// fleetNode is one running node of a test fleet: a spool, a signing
// publisher and its key.
type fleetNode struct {
	id    string
	key   ed25519.PrivateKey
	spool *Spool
	pub   *Publisher
	stop  func()
}

// startNode runs a node that signs with key and checkpoints every 50ms.
func startNode(t testing.TB, nc *nats.Conn, id string, key ed25519.PrivateKey) *fleetNode {
	t.Helper()
	s := openSpool(t, SpoolConfig{Dir: t.TempDir(), NodeID: id})
	p := newPublisher(t, s, PublisherConfig{Conn: nc, SignKey: key, CheckpointInterval: 50 * time.Millisecond})
	return &fleetNode{id: id, key: key, spool: s, pub: p, stop: runPublisher(t, p)}
}

// waitCheckpoint waits until a checkpoint of node vouching for node_seq
// seq (or later) is in the stream.
func waitCheckpoint(t testing.TB, js jetstream.JetStream, stream, node string, seq uint64) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		for _, m := range readStream(t, js, stream) {
			if !IsCheckpointSubject(m.subject) {
				continue
			}
			if c, err := DecodeCheckpoint(m.data); err == nil && c.NodeID == node && c.NodeSeq >= seq {
				t.Logf("checkpoint of %s at node_seq %d in the stream after %s", node, c.NodeSeq, time.Since(start).Round(time.Millisecond))
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %s at node_seq %d after 30s", node, seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fleet is two active nodes, node-a and node-b, each with 10 events
// published and checkpointed, then stopped (their last checkpoint
// published).
type fleet struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	members []Member
	stream  jetstream.Stream
}

func newFleet(t *testing.T, sc StreamConfig) *fleet {
	t.Helper()
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	js := natstest.JetStream(t, nc)
	f := &fleet{js: js, nc: nc}
	unlockedStream(t, js, sc)
	for _, id := range []string{"node-a", "node-b"} {
		n := startNode(t, nc, id, newAuditKey(t))
		appendN(t, n.spool, 0, 10)
		flush(t, n.pub)
		waitCheckpoint(t, js, DefaultStream, id, 10)
		n.stop()
		f.members = append(f.members, memberOf(id, n.key, true))
	}
	var err error
	if f.stream, err = js.Stream(t.Context(), DefaultStream); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fleet) verify(t testing.TB, cfg VerifyConfig) *Report {
	t.Helper()
	if cfg.Members == nil {
		cfg.Members = f.members
	}
	r, err := VerifyStream(t.Context(), f.js, cfg)
	if err != nil {
		t.Fatalf("VerifyStream: %v", err)
	}
	for _, p := range r.Problems {
		t.Logf("PROBLEM %s", p)
	}
	return r
}

// seqOf returns the stream sequence of node's event node_seq.
func (f *fleet) seqOf(t testing.TB, node string, nodeSeq uint64) uint64 {
	t.Helper()
	for _, m := range readStream(t, f.js, DefaultStream) {
		if IsCheckpointSubject(m.subject) {
			continue
		}
		if e, err := Decode(m.data); err == nil && e.NodeID == node && e.NodeSeq == nodeSeq {
			return m.seq
		}
	}
	t.Fatalf("%s node_seq %d not in the stream", node, nodeSeq)
	return 0
}

// wantProblem fails unless r has a problem of kind about node whose detail
// contains detail.
func wantProblem(t testing.TB, r *Report, kind, node, detail string) {
	t.Helper()
	for _, p := range r.Problems {
		if p.Kind == kind && p.NodeID == node && strings.Contains(p.Detail, detail) {
			return
		}
	}
	t.Errorf("no %s problem of node %q saying %q among %v", kind, node, detail, r.Problems)
}

func wantWhole(t testing.TB, r *Report) {
	t.Helper()
	if len(r.Problems) != 0 {
		t.Errorf("VerifyStream of an untouched stream: %v, want no problems", r.Problems)
	}
}

// TestVerifyStreamTampering attacks a real stream the way a client with
// write access to NATS can and checks that VerifyStream names
// the node and the gap each time.
func TestVerifyStreamTampering(t *testing.T) {
	t.Run("untouched", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		r := f.verify(t, VerifyConfig{})
		wantWhole(t, r)
		for _, n := range r.Nodes {
			if n.Events != 10 || n.Last != 10 || n.CheckpointSeq != 10 || !n.Member {
				t.Errorf("node %+v, want 10 events, checkpointed at 10, a member", n)
			}
		}
	})
	t.Run("forged node", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		// A whole, chained, signed history of a node nobody listed.
		x := startNode(t, f.nc, "node-x", newAuditKey(t))
		appendN(t, x.spool, 0, 5)
		flush(t, x.pub)
		x.stop()
		wantProblem(t, f.verify(t, VerifyConfig{}), ProblemUnknownNode, "node-x", "not a fleet member")
	})
	t.Run("member forged with another key", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		// Events claiming to be node-a, chained but signed by a key the
		// fleet does not list for it: a new chain from node_seq 1.
		s := openSpool(t, SpoolConfig{Dir: t.TempDir(), NodeID: "node-a"})
		p := newPublisher(t, s, PublisherConfig{Conn: f.nc, SignKey: newAuditKey(t)})
		stop := runPublisher(t, p)
		appendN(t, s, 100, 3)
		flush(t, p)
		stop()
		r := f.verify(t, VerifyConfig{})
		wantProblem(t, r, ProblemSignature, "node-a", "not signed by the node's audit key")
		wantProblem(t, r, ProblemDuplicate, "node-a", "stored again")
	})
	t.Run("unsigned", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		s := openSpool(t, SpoolConfig{Dir: t.TempDir(), NodeID: "node-b"})
		p := newPublisher(t, s, PublisherConfig{Conn: f.nc})
		stop := runPublisher(t, p)
		appendN(t, s, 100, 1)
		flush(t, p)
		stop()
		wantProblem(t, f.verify(t, VerifyConfig{}), ProblemSignature, "node-b", "not signed")
	})
	t.Run("unsigned history before the keys", func(t *testing.T) {
		// A node that ran without its key, then with it: --unsigned-before
		// accepts the old part only.
		srv := natstest.Server(t)
		nc := natstest.Connect(t, srv.ClientURL())
		js := natstest.JetStream(t, nc)
		unlockedStream(t, js, StreamConfig{})
		dir, key := t.TempDir(), newAuditKey(t)
		s := openSpool(t, SpoolConfig{Dir: dir, NodeID: "node-a"})
		p := newPublisher(t, s, PublisherConfig{Conn: nc})
		stop := runPublisher(t, p)
		appendN(t, s, 0, 5)
		flush(t, p)
		stop()
		p = newPublisher(t, s, PublisherConfig{Conn: nc, SignKey: key, CheckpointInterval: 50 * time.Millisecond})
		stop = runPublisher(t, p)
		appendN(t, s, 5, 5)
		flush(t, p)
		waitCheckpoint(t, js, DefaultStream, "node-a", 10)
		stop()
		members := []Member{memberOf("node-a", key, true)}
		verify := func(before uint64) *Report {
			r, err := VerifyStream(t.Context(), js, VerifyConfig{Members: members, UnsignedBefore: before})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		wantProblem(t, verify(0), ProblemSignature, "node-a", "not signed")
		wantWhole(t, verify(6)) // stream seq 1..5: the unsigned events
		wantProblem(t, verify(5), ProblemSignature, "node-a", "not signed")
	})
	t.Run("head purged", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		if err := f.stream.DeleteMsg(t.Context(), f.seqOf(t, "node-a", 10)); err != nil {
			t.Fatal(err)
		}
		r := f.verify(t, VerifyConfig{})
		wantProblem(t, r, ProblemTruncated, "node-a", "node_seq 10..10 missing after the chain's last event")
	})
	t.Run("head and its checkpoints purged", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		// Delete node-a's newest event and every checkpoint vouching
		// for it: the stream's own state shows the deletions.
		for _, m := range readStream(t, f.js, DefaultStream) {
			c, err := DecodeCheckpoint(m.data)
			if IsCheckpointSubject(m.subject) && err == nil && c.NodeID == "node-a" && c.NodeSeq == 10 {
				if err := f.stream.DeleteMsg(t.Context(), m.seq); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := f.stream.DeleteMsg(t.Context(), f.seqOf(t, "node-a", 10)); err != nil {
			t.Fatal(err)
		}
		wantProblem(t, f.verify(t, VerifyConfig{}), ProblemDeleted, "", "retention removes only the oldest")
	})
	t.Run("middle deleted", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		if err := f.stream.DeleteMsg(t.Context(), f.seqOf(t, "node-b", 4)); err != nil {
			t.Fatal(err)
		}
		r := f.verify(t, VerifyConfig{})
		wantProblem(t, r, ProblemGap, "node-b", "node_seq 4..4 missing")
		wantProblem(t, r, ProblemDeleted, "", "1 messages deleted")
	})
	t.Run("one byte changed", func(t *testing.T) {
		// A stored message cannot be edited in place: the attacker
		// deletes it and stores a changed copy with its signature.
		f := newFleet(t, StreamConfig{})
		seq := f.seqOf(t, "node-a", 10) // the newest: no successor's chain link covers it
		raw, err := f.stream.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		changed := []byte(strings.Replace(string(raw.Data), `"req-9"`, `"req-8"`, 1))
		if string(changed) == string(raw.Data) {
			t.Fatal("test bug: nothing changed")
		}
		if err := f.stream.DeleteMsg(t.Context(), seq); err != nil {
			t.Fatal(err)
		}
		// Without its Nats-Msg-Id, which the duplicate window would drop.
		hdr := nats.Header{SignatureHeader: raw.Header[SignatureHeader]}
		if _, err := f.js.PublishMsg(t.Context(), &nats.Msg{Subject: raw.Subject, Data: changed, Header: hdr}); err != nil {
			t.Fatal(err)
		}
		r := f.verify(t, VerifyConfig{})
		wantProblem(t, r, ProblemSignature, "node-a", "forged or changed")
		wantProblem(t, r, ProblemAltered, "node-a", "differs from what the node's checkpoint")
	})
	t.Run("stream purged", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		if err := f.stream.Purge(t.Context()); err != nil {
			t.Fatal(err)
		}
		r := f.verify(t, VerifyConfig{})
		wantProblem(t, r, ProblemPurged, "", "stream empty")
		wantProblem(t, r, ProblemCheckpoint, "node-a", "without a checkpoint")
		wantProblem(t, r, ProblemCheckpoint, "node-b", "without a checkpoint")
	})
	t.Run("prefix purged", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		if err := f.stream.Purge(t.Context(), jetstream.WithPurgeSequence(f.seqOf(t, "node-b", 1)+3)); err != nil {
			t.Fatal(err)
		}
		r := f.verify(t, VerifyConfig{})
		wantProblem(t, r, ProblemPurged, "", "not by retention")
		// node-a's whole trail was in the prefix; node-b lost its first 3.
		wantProblem(t, r, ProblemCheckpoint, "node-a", "without a checkpoint")
		wantProblem(t, r, ProblemHead, "node-b", "events 1..3 missing")
	})
	t.Run("recreated stream", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		if err := f.js.DeleteStream(t.Context(), DefaultStream); err != nil {
			t.Fatal(err)
		}
		unlockedStream(t, f.js, StreamConfig{})
		r := f.verify(t, VerifyConfig{})
		wantProblem(t, r, ProblemCheckpoint, "node-a", "without a checkpoint")
	})
	t.Run("stale checkpoint", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		later := func() time.Time { return time.Now().Add(time.Hour) }
		r := f.verify(t, VerifyConfig{CheckpointMaxAge: 10 * time.Minute, Now: later})
		wantProblem(t, r, ProblemCheckpoint, "node-a", "more than 10m0s ago")
		wantWhole(t, f.verify(t, VerifyConfig{CheckpointMaxAge: 10 * time.Minute}))
	})
	t.Run("retired node without checkpoints", func(t *testing.T) {
		f := newFleet(t, StreamConfig{})
		old := memberOf("node-old", newAuditKey(t), false)
		wantWhole(t, f.verify(t, VerifyConfig{Members: append(f.members, old)}))
	})
}

// TestVerifyStreamRetention: a stream trimmed by its age or size limit
// passes, with nodes still checkpointing; the same loss by a purge fails.
func TestVerifyStreamRetention(t *testing.T) {
	t.Run("by age", func(t *testing.T) {
		srv := natstest.Server(t)
		nc := natstest.Connect(t, srv.ClientURL())
		js := natstest.JetStream(t, nc)
		// A 3s stream. Its duplicate window must not exceed max_age, and
		// the Publisher refuses a window under 2 minutes, so this node's
		// events and checkpoints are signed and published here, as the
		// Publisher would (hand-built, on a real server).
		cfg := StreamConfig{MaxAge: 3 * time.Second}.withDefaults().jetstream()
		cfg.Duplicates = time.Second
		cfg.DenyDelete, cfg.DenyPurge = false, false // the control below purges
		if _, err := js.CreateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
		key := newAuditKey(t)
		n := newHandNode(t, js, key, chainOf(t, "node-a", 15))
		n.publish(t, 10)
		// The node stays up, checkpointing its head every 50ms, while its
		// events age out.
		start := time.Now()
		st, _ := js.Stream(t.Context(), DefaultStream)
		waitEventsGone(t, js, "node-a")
		t.Logf("node-a's 10 events aged out after %s", time.Since(start).Round(time.Millisecond))
		members := []Member{memberOf("node-a", key, true)}
		r, err := VerifyStream(t.Context(), js, VerifyConfig{Members: members, RetentionSlack: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		wantWhole(t, r)
		if !r.Retention.HeadTrimmed {
			t.Errorf("Retention = %+v, want HeadTrimmed", r.Retention)
		}
		t.Logf("retention: %s", r.Retention.Why)
		// Later events: the chain starts at 11, explained by age.
		n.publish(t, 15)
		waitCheckpoint(t, js, DefaultStream, "node-a", 15)
		if r, err = VerifyStream(t.Context(), js, VerifyConfig{Members: members, RetentionSlack: time.Second}); err != nil {
			t.Fatal(err)
		}
		wantWhole(t, r)
		// Control: the same stream with its young prefix purged fails.
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Purge(t.Context(), jetstream.WithPurgeSequence(info.State.LastSeq-2)); err != nil {
			t.Fatal(err)
		}
		n.stop()
		if r, err = VerifyStream(t.Context(), js, VerifyConfig{Members: members, RetentionSlack: time.Second}); err != nil {
			t.Fatal(err)
		}
		if len(r.Problems) == 0 {
			t.Errorf("a purged young prefix passed as age retention: %+v, stream %+v", r.Retention, info.State)
		}
		for _, p := range r.Problems {
			t.Logf("after a purge: PROBLEM %s", p)
		}
	})
	t.Run("by size", func(t *testing.T) {
		srv := natstest.Server(t)
		nc := natstest.Connect(t, srv.ClientURL())
		js := natstest.JetStream(t, nc)
		unlockedStream(t, js, StreamConfig{MaxBytes: 256 << 10})
		n := startNode(t, nc, "node-a", newAuditKey(t))
		appendN(t, n.spool, 0, 1000)
		flush(t, n.pub)
		waitCheckpoint(t, js, DefaultStream, "node-a", 1000)
		n.stop()
		st, _ := js.Stream(t.Context(), DefaultStream)
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.FirstSeq == 1 {
			t.Fatalf("stream not trimmed by size: %+v", info.State)
		}
		t.Logf("size retention: stream seq %d..%d, %d bytes of %d", info.State.FirstSeq, info.State.LastSeq, info.State.Bytes, info.Config.MaxBytes)
		members := []Member{memberOf("node-a", n.key, true)}
		r, err := VerifyStream(t.Context(), js, VerifyConfig{Members: members})
		if err != nil {
			t.Fatal(err)
		}
		wantWhole(t, r)
		t.Logf("retention: %s", r.Retention.Why)
		// Control: the same loss below the size limit is a purge.
		if err := st.Purge(t.Context(), jetstream.WithPurgeKeep(20)); err != nil {
			t.Fatal(err)
		}
		if r, err = VerifyStream(t.Context(), js, VerifyConfig{Members: members}); err != nil {
			t.Fatal(err)
		}
		wantProblem(t, r, ProblemPurged, "", "not by retention")
		wantProblem(t, r, ProblemHead, "node-a", "missing")
	})
}

// unlockedStream creates the audit stream as sc says, but with deletes and
// purges allowed: what an attacker with the admin role, or with the
// servers' storage, has; detection must not depend on the locks.
func unlockedStream(t testing.TB, js jetstream.JetStream, sc StreamConfig) {
	t.Helper()
	cfg := sc.withDefaults().jetstream()
	cfg.DenyDelete, cfg.DenyPurge = false, false
	if _, err := js.CreateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
}

// handNode publishes a node's chained events and checkpoints by hand,
// signed as the Publisher signs them, for streams the Publisher refuses
// (a duplicate window under 2 minutes). A goroutine checkpoints the head
// every 50ms until stop.
type handNode struct {
	js     jetstream.JetStream
	key    ed25519.PrivateKey
	events [][]byte
	mu     sync.Mutex
	head   int       // events published; guarded by mu
	headAt time.Time // when the last was; guarded by mu
	stop   func()
}

func newHandNode(t *testing.T, js jetstream.JetStream, key ed25519.PrivateKey, events [][]byte) *handNode {
	t.Helper()
	n := &handNode{js: js, key: key, events: events}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n.mu.Lock()
			head, at := n.head, n.headAt
			n.mu.Unlock()
			if head == 0 {
				continue
			}
			c := Checkpoint{Version: CheckpointVersion, NodeID: "node-a", NodeSeq: uint64(head), HeadSHA256: sha(n.events[head-1]),
				HeadAt: Timestamp(at), IssuedAt: Timestamp(time.Now())}
			data, _ := json.Marshal(c)
			msg := &nats.Msg{Subject: CheckpointSubject("", "node-a"), Data: data,
				Header: nats.Header{SignatureHeader: []string{signCheckpoint(key, data)}}}
			if _, err := js.PublishMsg(ctx, msg); err != nil && ctx.Err() == nil {
				t.Errorf("checkpoint: %v", err)
			}
		}
	})
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(n.stop)
	return n
}

// publish sends the events up to node_seq upTo, signed.
func (n *handNode) publish(t *testing.T, upTo int) {
	t.Helper()
	n.mu.Lock()
	from := n.head
	n.mu.Unlock()
	for i := from; i < upTo; i++ {
		msg := &nats.Msg{Subject: SubjectPrefix + "deny.passport_missing", Data: n.events[i],
			Header: nats.Header{SignatureHeader: []string{signEvent(n.key, n.events[i])}}}
		if _, err := n.js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
		n.mu.Lock()
		n.head, n.headAt = i+1, time.Now()
		n.mu.Unlock()
	}
}

// waitEventsGone waits until no event of node is left in the stream.
func waitEventsGone(t testing.TB, js jetstream.JetStream, node string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		left := 0
		for _, m := range readStream(t, js, DefaultStream) {
			if e, err := Decode(m.data); err == nil && !IsCheckpointSubject(m.subject) && e.NodeID == node {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("%d events of %s still in the stream after 60s", left, node))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
