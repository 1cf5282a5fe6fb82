package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
)

// chainHead is an event of the node's chain as the publisher sent it.
type chainHead struct {
	seq uint64            // node_seq
	sum [sha256.Size]byte // SHA-256 of its exact bytes
	at  int64             // appended_at, Unix ns
}

// checkpointer is the Publisher's checkpoint state, owned by Run's
// goroutine: the newest acknowledged event of this node's chain and what
// the last published checkpoint said.
type checkpointer struct {
	head     chainHead // newest acknowledged; seq 0 while none
	lastSeq  uint64    // node_seq of the last published checkpoint
	lastTime time.Time // when it was published, zero if never
}

// acked records pm as acknowledged by JetStream. Events arrive in node_seq
// order (the publisher sends in order and resends from the first failure).
func (c *checkpointer) acked(pm *pending) {
	if pm.own && pm.head.seq > c.head.seq {
		c.head = pm.head
	}
}

// maybe publishes a checkpoint when CheckpointInterval has passed since the
// last one. A node with nothing new republishes its head: the checkpoint
// then says the node is alive and its chain ends there.
func (c *checkpointer) maybe(ctx context.Context, p *Publisher) {
	if p.cfg.SignKey == nil || c.head.seq == 0 || time.Since(c.lastTime) < p.cfg.CheckpointInterval {
		return
	}
	c.publish(ctx, p)
}

// wait returns how long an idle Run may sleep: at most limit, and no
// later than the next checkpoint is due.
func (c *checkpointer) wait(p *Publisher, limit time.Duration) time.Duration {
	if p.cfg.SignKey == nil || c.head.seq == 0 {
		return limit
	}
	return max(min(limit, p.cfg.CheckpointInterval-time.Since(c.lastTime)), time.Millisecond)
}

// final publishes a checkpoint when Run ends, if the head moved since the
// last one. It runs after ctx is done, so it has its own bound.
func (c *checkpointer) final(ctx context.Context, p *Publisher) {
	if p.cfg.SignKey == nil || c.head.seq == 0 || c.head.seq == c.lastSeq {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.AckTimeout)
	defer cancel()
	c.publish(fctx, p)
}

func (c *checkpointer) publish(ctx context.Context, p *Publisher) {
	now := time.Now()
	cp := Checkpoint{
		Version:    CheckpointVersion,
		NodeID:     p.spool.cfg.NodeID,
		Region:     p.spool.cfg.Region,
		NodeSeq:    c.head.seq,
		HeadSHA256: hex.EncodeToString(c.head.sum[:]),
		HeadAt:     Timestamp(time.Unix(0, c.head.at)),
		IssuedAt:   Timestamp(now),
	}
	data, err := json.Marshal(cp)
	if err != nil {
		p.log.Error("audit checkpoint not encoded", "err", err)
		return
	}
	msg := &nats.Msg{
		Subject: CheckpointSubject(cp.Region, cp.NodeID),
		Data:    data,
		Header:  nats.Header{SignatureHeader: []string{signCheckpoint(p.cfg.SignKey, data)}},
	}
	pctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	if _, err := p.js.PublishMsg(pctx, msg); err != nil {
		// Retried within checkpointRetry, not a whole interval later:
		// until one lands the previous checkpoint stands (or none does, for
		// a node whose first one failed in an outage), and tpaudit verify
		// calls an active node without a checkpoint a removed trail.
		c.lastTime = now.Add(min(checkpointRetry, p.cfg.CheckpointInterval) - p.cfg.CheckpointInterval)
		p.log.Warn("audit checkpoint not published; retried shortly", "err", err, "node_seq", cp.NodeSeq)
		return
	}
	c.lastTime = now
	c.lastSeq = cp.NodeSeq
}

// checkpointRetry is how soon a checkpoint that could not be published is
// tried again.
const checkpointRetry = time.Second
