package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
)

// errNotCommitted means the stream leader holds no message for the key.
var errNotCommitted = errors.New("key not committed")

// Polling bounds of confirmReplay while the leader does not hold the key
// yet: a competing write in flight commits within a Raft round trip.
const (
	confirmMinWait = 5 * time.Millisecond
	confirmMaxWait = 100 * time.Millisecond
)

// confirmReplay decides what a create refused with 10164 (wrong last
// sequence, constant) means. The leader refuses so when a write to the same
// subject is still in flight: a competing create, which will most likely
// commit (a real replay), or a proposal a deposed leader still remembers
// and which will never commit (in one failover test 244 jtis were denied 409 that way,
// then allowed later). Only the committed state tells them apart, so the
// key is read from the stream leader until it is there (a replay) or ctx
// ends; then nobody can tell, and the answer is unavailable (a 503 the
// caller retries with a new signature), never a replay.
//
// A refusal with 10071 needs no confirmation: the server compared against
// its store, and a stream's store holds only committed messages.
func (l *Ledger) confirmReplay(ctx context.Context, key string, refusal error) error {
	subject := l.subjectPrefix + key
	wait := confirmMinWait
	for {
		err := l.leaderHas(ctx, subject)
		if err == nil {
			return fmt.Errorf("ledger: consume %s: %w (confirmed by the stream leader): %w", key, core.ErrReplay, refusal)
		}
		if !errors.Is(err, errNotCommitted) {
			return fmt.Errorf("ledger: consume %s: %w: refused (%w) and the leader read failed: %w", key, core.ErrLedgerUnavailable, refusal, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("ledger: consume %s: %w: refused (%w) but the key is not committed: %w", key, core.ErrLedgerUnavailable, refusal, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, confirmMaxWait)
	}
}

// msgGetRequest and msgGetResponse are the JetStream API's STREAM.MSG.GET
// exchange, as much of it as leaderHas reads.
type msgGetRequest struct {
	LastFor string `json:"last_by_subj"`
}

type msgGetResponse struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Message *struct {
		Sequence uint64 `json:"seq"`
	} `json:"message,omitempty"`
}

// leaderHas reports whether the stream leader holds a message on subject:
// nil if so, errNotCommitted if not, another error if it cannot tell.
//
// It is not stream.GetLastMsgForSubject: KV streams allow direct gets,
// which nats.go then uses, and a direct get is answered by any replica,
// one that is behind included. $JS.API.STREAM.MSG.GET is answered by the
// stream leader only, from its store, which holds committed messages only.
// A marker left where a key expired counts as held: Consume treats it as a
// replay (see consume).
func (l *Ledger) leaderHas(ctx context.Context, subject string) error {
	req, err := json.Marshal(msgGetRequest{LastFor: subject})
	if err != nil {
		return err
	}
	msg, err := l.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+kvStreamPrefix+l.bucket, req)
	if err != nil {
		return fmt.Errorf("leader read: %w", err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("leader read: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return errNotCommitted
	case resp.Error != nil:
		return fmt.Errorf("leader read: %w", resp.Error)
	case resp.Message == nil || resp.Message.Sequence == 0:
		return errors.New("leader read: answer without a message")
	}
	return nil
}
