package loadgen

import (
	"strings"
	"testing"
	"time"
)

// sample builds a server's monitoring answer as natsUsage reads it.
func sample(name string, in, out, api, apiErr int64, sync time.Duration, always bool, streams map[string]int64, conns map[uint64][2]int64, connNames map[uint64]string) serverSample {
	var s serverSample
	s.varz.ServerName = name
	s.varz.InMsgs, s.varz.OutMsgs, s.varz.InBytes, s.varz.OutBytes = in, out, in*100, out*50
	s.varz.JetStream.Config.SyncInterval, s.varz.JetStream.Config.SyncAlways = sync, always
	s.jsz.API.Total, s.jsz.API.Errors = api, apiErr
	s.jsz.AccountDetails = make([]struct {
		Streams []jszStream `json:"stream_detail"`
	}, 1)
	for n, last := range streams {
		st := jszStream{Name: n}
		st.Config = &struct {
			Replicas int `json:"num_replicas"`
		}{3}
		st.Cluster = &struct {
			Leader string `json:"leader"`
		}{"S-1"}
		st.State.LastSeq = last
		s.jsz.AccountDetails[0].Streams = append(s.jsz.AccountDetails[0].Streams, st)
	}
	for cid, c := range conns {
		s.connz.Connections = append(s.connz.Connections, connzConn{cid, connNames[cid], c[0], c[1]})
	}
	return s
}

func TestNATSUsage(t *testing.T) {
	names := map[uint64]string{1: "verifierd local-1", 2: "verifierd local-2", 3: "tpload-floor-1"}
	before := &natsSample{servers: []serverSample{
		sample("S-1", 100, 90, 10, 1, 0, true, map[string]int64{"KV_A": 50, "AUDIT": 7}, map[uint64][2]int64{1: {10, 10}}, names),
		// A follower a little behind: the stream's last sequence is the highest.
		sample("S-2", 200, 180, 20, 0, 0, true, map[string]int64{"KV_A": 49, "AUDIT": 7}, map[uint64][2]int64{2: {5, 5}}, names),
	}}
	after := &natsSample{servers: []serverSample{
		sample("S-1", 1100, 1090, 12, 1, 0, true, map[string]int64{"KV_A": 150, "AUDIT": 107}, map[uint64][2]int64{1: {110, 110}, 3: {40, 40}}, names),
		sample("S-2", 1200, 1180, 20, 0, 0, true, map[string]int64{"KV_A": 150, "AUDIT": 106}, map[uint64][2]int64{2: {105, 105}}, names),
	}}
	u, err := natsUsage(before, after)
	if err != nil {
		t.Fatal(err)
	}
	if u.InMsgs != 2000 || u.OutMsgs != 2000 || u.APITotal != 2 || u.APIErrors != 0 || !u.SyncAlways {
		t.Errorf("usage = in %d out %d api %d/%d sync always %v; want 2000, 2000, 2/0, true", u.InMsgs, u.OutMsgs, u.APITotal, u.APIErrors, u.SyncAlways)
	}
	if s := u.Stream("KV_A"); s == nil || s.Added != 100 || s.Replicas != 3 || s.Leader != "S-1" {
		t.Errorf("stream KV_A = %+v, want 100 added, R3, leader S-1", s)
	}
	if s := u.Stream("AUDIT"); s == nil || s.Added != 100 {
		t.Errorf("stream AUDIT = %+v, want 100 added", s)
	}
	if got := u.ClientMsgsPerOp("verifierd", 100); got != 2 {
		t.Errorf("verifierd msgs per op = %v, want 2 (100 + 100 over 100 ops)", got)
	}
	if got := u.ClientMsgsPerOp("tpload-floor", 100); got != 0.4 {
		t.Errorf("a connection new since the first sample: %v per op, want 0.4 (counted from zero)", got)
	}
	in, _, inB, _, api := u.PerOp(1000)
	if in != 2 || inB != 200 || api != 0.002 {
		t.Errorf("PerOp(1000) = in %v, bytes in %v, api %v; want 2, 200, 0.002", in, inB, api)
	}
	var b strings.Builder
	writeNATS(&b, u, 100)
	for _, want := range []string{"2 servers (S-1,S-2), sync_interval always", "KV_A", "R3, leader S-1, 100 messages added (1.000 per op)", "verifierd local-1"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, b.String())
		}
	}

	t.Run("servers disagree on sync", func(t *testing.T) {
		a := &natsSample{servers: []serverSample{after.servers[0], sample("S-2", 1, 1, 1, 0, 2*time.Minute, false, nil, nil, nil)}}
		if _, err := natsUsage(before, a); err == nil || !strings.Contains(err.Error(), "disagree on sync_interval") {
			t.Errorf("natsUsage = %v, want the disagreement named", err)
		}
	})
	t.Run("another server", func(t *testing.T) {
		a := &natsSample{servers: []serverSample{sample("S-9", 1, 1, 1, 0, 0, true, nil, nil, nil), after.servers[1]}}
		if _, err := natsUsage(before, a); err == nil || !strings.Contains(err.Error(), `was "S-1", now "S-9"`) {
			t.Errorf("natsUsage = %v, want the changed server named", err)
		}
	})
}
