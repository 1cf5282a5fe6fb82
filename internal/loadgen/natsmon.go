package loadgen

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// NATSUsage is what the nats-servers did during a run, from their
// monitoring endpoints (/varz and /jsz) read before and after it: the
// messages and JetStream API requests they handled, summed over the
// servers, and the streams that ran, so a report says what it measured
// (replicas, durability) rather than what a script meant to start.
type NATSUsage struct {
	Servers []string `json:"servers"` // server names, in monitor URL order
	// SyncAlways is the servers' jetstream sync_interval: always; SyncInterval
	// their background fsync interval otherwise. Every server must agree.
	SyncAlways   bool   `json:"sync_always"`
	SyncInterval string `json:"sync_interval,omitempty"`
	// Deltas over the run, summed over the servers. In and out messages
	// count client and route traffic alike: replication is part of the
	// cost.
	InMsgs    int64 `json:"in_msgs"`
	OutMsgs   int64 `json:"out_msgs"`
	InBytes   int64 `json:"in_bytes"`
	OutBytes  int64 `json:"out_bytes"`
	APITotal  int64 `json:"js_api_total"`
	APIErrors int64 `json:"js_api_errors"`
	// Streams are the account streams the servers held, by name.
	Streams []StreamUsage `json:"streams"`
	// Clients are the client connections by name (/connz), their
	// messages summed over the servers: what each client asked of NATS.
	Clients []ClientUsage `json:"clients"`
}

// ClientUsage is what the client connections of one name sent and
// received during a run.
type ClientUsage struct {
	Name    string `json:"name"`
	InMsgs  int64  `json:"in_msgs"`  // messages the client published
	OutMsgs int64  `json:"out_msgs"` // messages delivered to it (acks, replies)
}

// StreamUsage is one stream during a run.
type StreamUsage struct {
	Name     string `json:"name"`
	Replicas int    `json:"replicas"`
	Leader   string `json:"leader,omitempty"`
	// Added is how far the stream's last sequence moved: the messages it
	// stored during the run (TTLs and limits may have removed some since).
	Added int64 `json:"added"`
}

// PerOp returns the counters divided by n operations (decisions, raw
// pairs): in and out messages, in and out bytes, JetStream API requests.
func (u *NATSUsage) PerOp(n int64) (inMsgs, outMsgs, inBytes, outBytes, api float64) {
	if u == nil || n <= 0 {
		return 0, 0, 0, 0, 0
	}
	f := float64(n)
	return float64(u.InMsgs) / f, float64(u.OutMsgs) / f, float64(u.InBytes) / f, float64(u.OutBytes) / f, float64(u.APITotal) / f
}

// Stream returns the stream called name, or nil.
func (u *NATSUsage) Stream(name string) *StreamUsage {
	if u == nil {
		return nil
	}
	for i := range u.Streams {
		if u.Streams[i].Name == name {
			return &u.Streams[i]
		}
	}
	return nil
}

// natsSample is one reading of every server's monitoring endpoints.
type natsSample struct {
	servers []serverSample
}

type serverSample struct {
	varz  varz
	jsz   jsz
	connz connz
}

type connz struct {
	Connections []connzConn `json:"connections"`
}

type connzConn struct {
	CID     uint64 `json:"cid"`
	Name    string `json:"name"`
	InMsgs  int64  `json:"in_msgs"`
	OutMsgs int64  `json:"out_msgs"`
}

// varz and jsz hold the members of nats-server's /varz and /jsz answers
// that a run reads (nats-server: server/monitor.go, Varz and JSInfo).
type varz struct {
	ServerName string `json:"server_name"`
	InMsgs     int64  `json:"in_msgs"`
	OutMsgs    int64  `json:"out_msgs"`
	InBytes    int64  `json:"in_bytes"`
	OutBytes   int64  `json:"out_bytes"`
	JetStream  struct {
		Config struct {
			SyncInterval time.Duration `json:"sync_interval"`
			SyncAlways   bool          `json:"sync_always"`
		} `json:"config"`
	} `json:"jetstream"`
}

type jsz struct {
	API struct {
		Total  int64 `json:"total"`
		Errors int64 `json:"errors"`
	} `json:"api"`
	AccountDetails []struct {
		Streams []jszStream `json:"stream_detail"`
	} `json:"account_details"`
}

type jszStream struct {
	Name    string `json:"name"`
	Cluster *struct {
		Leader string `json:"leader"`
	} `json:"cluster"`
	Config *struct {
		Replicas int `json:"num_replicas"`
	} `json:"config"`
	State struct {
		LastSeq int64 `json:"last_seq"`
	} `json:"state"`
}

// monitorTimeout bounds one monitoring request.
const monitorTimeout = 5 * time.Second

// sampleNATS reads /varz and /jsz of every monitor base URL
// (http://127.0.0.1:8222). Loopback only, like every target.
func sampleNATS(ctx context.Context, urls []string) (*natsSample, error) {
	c := &http.Client{Timeout: monitorTimeout}
	s := &natsSample{}
	for _, u := range urls {
		base, err := CheckTarget(u)
		if err != nil {
			return nil, fmt.Errorf("nats monitor: %w", err)
		}
		var ss serverSample
		if err := getJSON(ctx, c, base+"/varz", &ss.varz); err != nil {
			return nil, err
		}
		if err := getJSON(ctx, c, base+"/jsz?accounts=true&streams=true&config=true", &ss.jsz); err != nil {
			return nil, err
		}
		if err := getJSON(ctx, c, base+"/connz?limit=1024", &ss.connz); err != nil {
			return nil, err
		}
		s.servers = append(s.servers, ss)
	}
	return s, nil
}

func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("nats monitor %s: %w", url, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("nats monitor: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("nats monitor %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("nats monitor %s: %w", url, err)
	}
	return nil
}

// natsUsage is what happened between two samples of the same servers.
func natsUsage(before, after *natsSample) (*NATSUsage, error) {
	if len(before.servers) != len(after.servers) {
		return nil, errors.New("nats monitor: samples of different server sets")
	}
	u := &NATSUsage{}
	streams := map[string]*StreamUsage{}
	clients := map[string]*ClientUsage{}
	lastBefore := map[string]int64{}
	var syncs []string
	for i, a := range after.servers {
		b := before.servers[i]
		if a.varz.ServerName != b.varz.ServerName {
			return nil, fmt.Errorf("nats monitor: server %d was %q, now %q", i, b.varz.ServerName, a.varz.ServerName)
		}
		u.Servers = append(u.Servers, a.varz.ServerName)
		u.InMsgs += a.varz.InMsgs - b.varz.InMsgs
		u.OutMsgs += a.varz.OutMsgs - b.varz.OutMsgs
		u.InBytes += a.varz.InBytes - b.varz.InBytes
		u.OutBytes += a.varz.OutBytes - b.varz.OutBytes
		u.APITotal += a.jsz.API.Total - b.jsz.API.Total
		u.APIErrors += a.jsz.API.Errors - b.jsz.API.Errors
		jc := a.varz.JetStream.Config
		sync := jc.SyncInterval.String()
		if jc.SyncAlways {
			sync = "always"
		}
		syncs = append(syncs, sync)
		// A connection is known by its server and cid; one that is new
		// counts from zero.
		type counts struct{ in, out int64 }
		was := map[uint64]counts{}
		for _, cn := range b.connz.Connections {
			was[cn.CID] = counts{cn.InMsgs, cn.OutMsgs}
		}
		for _, cn := range a.connz.Connections {
			cu := clients[cn.Name]
			if cu == nil {
				cu = &ClientUsage{Name: cn.Name}
				clients[cn.Name] = cu
			}
			w := was[cn.CID]
			cu.InMsgs += cn.InMsgs - w.in
			cu.OutMsgs += cn.OutMsgs - w.out
		}
		for _, acc := range b.jsz.AccountDetails {
			for _, st := range acc.Streams {
				lastBefore[st.Name] = max(lastBefore[st.Name], st.State.LastSeq)
			}
		}
		for _, acc := range a.jsz.AccountDetails {
			for _, st := range acc.Streams {
				su := streams[st.Name]
				if su == nil {
					su = &StreamUsage{Name: st.Name}
					streams[st.Name] = su
				}
				if st.Config != nil {
					su.Replicas = st.Config.Replicas
				}
				if st.Cluster != nil && st.Cluster.Leader != "" {
					su.Leader = st.Cluster.Leader
				}
				// Each replica reports its own last sequence; a follower
				// may lag by a few. The highest is the stream's.
				su.Added = max(su.Added, st.State.LastSeq)
			}
		}
	}
	slices.Sort(syncs)
	if syncs = slices.Compact(syncs); len(syncs) > 1 {
		return nil, fmt.Errorf("nats monitor: the servers disagree on sync_interval: %s", strings.Join(syncs, ", "))
	}
	if len(syncs) == 1 {
		u.SyncAlways = syncs[0] == "always"
		if !u.SyncAlways {
			u.SyncInterval = syncs[0]
		}
	}
	for name, su := range streams {
		su.Added -= lastBefore[name]
		u.Streams = append(u.Streams, *su)
	}
	slices.SortFunc(u.Streams, func(a, b StreamUsage) int { return cmp.Compare(a.Name, b.Name) })
	for _, cu := range clients {
		u.Clients = append(u.Clients, *cu)
	}
	slices.SortFunc(u.Clients, func(a, b ClientUsage) int { return cmp.Compare(a.Name, b.Name) })
	return u, nil
}

// writeNATS appends the text report's NATS lines.
func writeNATS(b *strings.Builder, u *NATSUsage, ops int64) {
	if u == nil {
		return
	}
	sync := "sync_interval " + u.SyncInterval
	if u.SyncAlways {
		sync = "sync_interval always"
	}
	fmt.Fprintf(b, "  %-11s %d servers (%s), %s\n", "nats", len(u.Servers), strings.Join(u.Servers, ","), sync)
	in, out, inB, outB, api := u.PerOp(ops)
	fmt.Fprintf(b, "  %-11s per op: %.2f msgs in, %.2f out, %.0f bytes in, %.0f out, %.3f JetStream API requests (%d errors)\n",
		"nats", in, out, inB, outB, api, u.APIErrors)
	for _, s := range u.Streams {
		if s.Added == 0 {
			continue
		}
		fmt.Fprintf(b, "  %-11s %-24s R%d, leader %s, %d messages added (%.3f per op)\n",
			"stream", s.Name, s.Replicas, s.Leader, s.Added, float64(s.Added)/float64(max(ops, 1)))
	}
	for _, c := range u.Clients {
		if c.InMsgs == 0 && c.OutMsgs == 0 {
			continue
		}
		fmt.Fprintf(b, "  %-11s %-24s %.3f msgs sent, %.3f received per op\n",
			"client", c.Name, float64(c.InMsgs)/float64(max(ops, 1)), float64(c.OutMsgs)/float64(max(ops, 1)))
	}
}

// ClientMsgsPerOp returns the messages the clients whose name starts with
// prefix sent per op, n ops.
func (u *NATSUsage) ClientMsgsPerOp(prefix string, n int64) float64 {
	if u == nil || n <= 0 {
		return 0
	}
	var in int64
	for _, c := range u.Clients {
		if strings.HasPrefix(c.Name, prefix) {
			in += c.InMsgs
		}
	}
	return float64(in) / float64(n)
}

// sampleNATSIf samples urls, or returns nil if there are none.
func sampleNATSIf(ctx context.Context, urls []string) (*natsSample, error) {
	if len(urls) == 0 {
		return nil, nil
	}
	return sampleNATS(ctx, urls)
}

// natsDelta samples urls again and returns the usage since before; nil if
// there are no urls. The sample is taken even if ctx ended (the run was
// interrupted), bounded by its own timeout.
func natsDelta(ctx context.Context, urls []string, before *natsSample) (*NATSUsage, error) {
	if len(urls) == 0 || before == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*monitorTimeout)
	defer cancel()
	after, err := sampleNATS(ctx, urls)
	if err != nil {
		return nil, err
	}
	return natsUsage(before, after)
}

// ConnectionServers finds, through the servers' monitoring endpoints, the
// client connections whose name starts with prefix ("verifierd": every
// verifier node names its connection "verifierd <node id>") and returns,
// for each, the client URL of the server it is connected to
// (nats://host:port, from /varz), in monitor order. A floor run connects
// like them, so that its publishes cross the same routes to the stream
// leaders as the verifiers' did. It is an error if none is found.
func ConnectionServers(ctx context.Context, monitors []string, prefix string) ([]string, error) {
	c := &http.Client{Timeout: monitorTimeout}
	var out []string
	for _, m := range monitors {
		base, err := CheckTarget(m)
		if err != nil {
			return nil, fmt.Errorf("nats monitor: %w", err)
		}
		var v struct {
			Host string `json:"host"`
			Port int    `json:"port"`
		}
		if err := getJSON(ctx, c, base+"/varz", &v); err != nil {
			return nil, err
		}
		var cz struct {
			Connections []struct {
				Name string `json:"name"`
			} `json:"connections"`
		}
		if err := getJSON(ctx, c, base+"/connz?limit=1024", &cz); err != nil {
			return nil, err
		}
		for _, conn := range cz.Connections {
			if strings.HasPrefix(conn.Name, prefix) {
				out = append(out, fmt.Sprintf("nats://%s:%d", v.Host, v.Port))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("nats monitor: no connection named %s* on %s", prefix, strings.Join(monitors, ","))
	}
	return out, nil
}
