package bundlekv

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tpcluster/tpcluster/internal/bundle"
)

// Status is one node's answer on StatusSubject: which pair it decides with
// and how old its view is, so an operator sees whether the fleet converged
// (bundlepub status).
type Status struct {
	NodeID         string   `json:"node_id"`
	Loaded         bool     `json:"loaded"` // false: no pair yet, every request is denied bundle_policy_missing
	PolicySequence int64    `json:"policy_sequence"`
	PolicySHA256   string   `json:"policy_sha256"`
	TrustSequence  int64    `json:"trust_sequence"`
	TrustSHA256    string   `json:"trust_sha256"`
	ViewAgeSeconds float64  `json:"view_age_seconds"`
	StaleClasses   []string `json:"stale_classes"` // freshness classes with a stale route (SPEC §8.3)
}

// Status returns this node's status now.
func (w *Watcher) Status() Status {
	st := Status{NodeID: w.cfg.NodeID, StaleClasses: []string{}}
	s := w.snap.Load()
	if s == nil {
		return st
	}
	age := w.cfg.Now().Sub(s.ViewTime)
	st.Loaded = true
	st.PolicySequence, st.PolicySHA256 = s.Policy.Sequence, s.Policy.SHA256
	st.TrustSequence, st.TrustSHA256 = s.Trust.Sequence, s.Trust.SHA256
	st.ViewAgeSeconds = age.Seconds()
	st.StaleClasses = staleClasses(s.Policy, age, w.cfg.RealtimeWindow)
	return st
}

// staleClasses lists, once each, the freshness classes with a stale route.
func staleClasses(p *bundle.Policy, age, realtime time.Duration) []string {
	out := []string{}
	for _, r := range p.Routes {
		if r.CheckFresh(age, realtime) != bundle.FreshOK && !slices.Contains(out, r.FreshnessName) {
			out = append(out, r.FreshnessName)
		}
	}
	return out
}

// serveStatus answers status requests until ctx is done. The replies come
// from this goroutine, not a nats.go callback, so Run owns and waits for it.
func (w *Watcher) serveStatus(ctx context.Context) {
	nc := w.cfg.JetStream.Conn()
	ch := make(chan *nats.Msg, 64) // a burst beyond this is dropped by nats.go, and the asker times out
	sub, err := nc.ChanSubscribe(StatusSubject, ch)
	if err != nil {
		w.log.Error("status responder not started", "subject", StatusSubject, "err", err)
		return
	}
	defer sub.Unsubscribe()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-ch:
			b, err := json.Marshal(w.Status())
			if err == nil {
				err = m.Respond(b)
			}
			if err != nil {
				w.log.Debug("status reply not sent", "err", err)
			}
		}
	}
}

// GatherStatus asks every node on StatusSubject and collects the replies
// that arrive until ctx is done, sorted by node id. ctx must have a
// deadline: it is how long replies are gathered.
// Replies that do not decode are skipped and counted in malformed. An error
// means the request could not be sent.
func GatherStatus(ctx context.Context, nc *nats.Conn) (replies []Status, malformed int, err error) {
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, 0, fmt.Errorf("bundlekv: status: subscribe: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(StatusSubject, inbox, nil); err != nil {
		return nil, 0, fmt.Errorf("bundlekv: status: request: %w", err)
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		return nil, 0, fmt.Errorf("bundlekv: status: request: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			slices.SortFunc(replies, func(a, b Status) int { return strings.Compare(a.NodeID, b.NodeID) })
			return replies, malformed, nil
		case m := <-ch:
			var st Status
			if json.Unmarshal(m.Data, &st) != nil {
				malformed++
				continue
			}
			replies = append(replies, st)
		}
	}
}
