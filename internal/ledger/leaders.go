package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// stepDownSubject is the JetStream API subject that asks a stream's leader
// to step down, here with a preferred successor (nats-server 2.11 and
// later; a stream's create refuses Placement.Preferred, so spreading
// leaders is a step-down after creation).
const stepDownSubject = "$JS.API.STREAM.LEADER.STEPDOWN."

// Leaders returns the server that leads each shard's stream, current
// layout first, as Buckets orders them; "" where the stream has no leader
// now. For tests, benchmarks and operators.
func (s *Sharded) Leaders(ctx context.Context) ([]string, error) {
	out := make([]string, len(s.all))
	for i, l := range s.all {
		info, err := l.stream.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("ledger: leader of bucket %s: %w", l.bucket, err)
		}
		if info.Cluster != nil {
			out[i] = info.Cluster.Leader
		}
	}
	return out, nil
}

// SpreadLeaders asks each shard's stream leader to step down in favour of
// the peer that leads the fewest other shards, so that the shards' writes
// land on as many servers as there are. The choice depends only
// on the streams' peers, taken in name order, so nodes that all run it at
// start agree and make no extra elections: a shard already led by its
// chosen peer is left alone. Replicated shards only; the step-downs are
// asked, not awaited (Leaders shows the result). It reports every shard it
// could not move; the ledger works either way, only less spread.
func (s *Sharded) SpreadLeaders(ctx context.Context) error {
	load := map[string]int{}
	var errs []error
	for _, l := range s.current {
		info, err := l.stream.Info(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("bucket %s: %w", l.bucket, err))
			continue
		}
		ci := info.Cluster
		if ci == nil || len(ci.Replicas) == 0 {
			continue // R1: its one server leads
		}
		peers := []string{}
		if ci.Leader != "" {
			peers = append(peers, ci.Leader)
		}
		for _, p := range ci.Replicas {
			if !p.Offline {
				peers = append(peers, p.Name)
			}
		}
		slices.Sort(peers)
		want := peers[0]
		for _, p := range peers[1:] {
			if load[p] < load[want] {
				want = p
			}
		}
		load[want]++
		if ci.Leader == want {
			continue
		}
		if err := l.stepDown(ctx, want); err != nil {
			errs = append(errs, fmt.Errorf("bucket %s: step down to %s: %w", l.bucket, want, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ledger: spread shard leaders: %w", err)
	}
	return nil
}

// stepDown asks the bucket's stream leader to hand over to server.
func (l *Ledger) stepDown(ctx context.Context, server string) error {
	req, err := json.Marshal(map[string]any{"placement": map[string]string{"preferred": server}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	msg, err := l.js.Conn().RequestWithContext(ctx, stepDownSubject+kvStreamPrefix+l.bucket, req)
	if err != nil {
		return err
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("refused: %s (code %d, error code %d)", resp.Error.Description, resp.Error.Code, resp.Error.ErrCode)
	}
	if !resp.Success {
		return errors.New("not acknowledged")
	}
	return nil
}
