package e2e

// The fault suite's cluster (faults_test.go): its processes, its load, and
// what it watches.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// faultCluster is the suite's world.
type faultCluster struct {
	w       *world
	up      *upstream
	servers []*natstest.External
	names   []string // server names, S-1..S-3
	monURLs []string // monitoring endpoints
	nodes   []*node  // replaced by a restart; read by the test goroutine only
	urls    []string // the nodes' base URLs, which a restart keeps

	inflight [3]atomic.Int32 // requests sent to each node and not yet answered
	lab      *netLab         // the servers' namespaces, or nil (loopback)
	stalled  int             // the ledger leader a fault stalled or cut off, or -1
	// ledgerStream is the stream whose leader the suite moves, watches
	// and stalls: the ledger's, or with --ledger-shards its shard 0.
	ledgerStream string

	mu      sync.Mutex
	answers []faultAnswer // guarded by mu
}

// faultAnswer is one request sent to one node during a fault.
type faultAnswer struct {
	fault      string
	tag        string // the request's path tag, shared by its copies
	node       int
	status     int // 0: no answer (transport error)
	reason     string
	requestID  string
	sent, done time.Time
}

func startFaultCluster(t *testing.T) *faultCluster {
	t.Helper()
	return startFaultClusterOn(t, nil, nil)
}

// startFaultClusterOn starts the suite's cluster; with a lab, each server
// in its own network namespace (netns_test.go), reached through the lab's
// forwarders, so that a fault can cut a server's link. extra flags go to
// every verifierd.
func startFaultClusterOn(t *testing.T, lab *netLab, extra []string) *faultCluster {
	t.Helper()
	ports := testport.Free(t, 9) // three route ports, three monitoring ports, three client ports
	// Each node signs its audit trail with a key the trust material lists.
	fc := &faultCluster{w: newWorld(t, "fault-0", "fault-1", "fault-2"), up: newUpstream(t), lab: lab, stalled: -1,
		ledgerStream: "KV_TRUSTPLANE_REPLAY"}
	for i, f := range extra {
		if f == "--ledger-shards" && i+1 < len(extra) && extra[i+1] != "1" {
			fc.ledgerStream = "KV_TRUSTPLANE_REPLAY_s0"
		}
	}
	host := func(i int) string {
		if lab != nil {
			return lab.addrs[i]
		}
		return "127.0.0.1"
	}
	for i := range 3 {
		var routes []string
		for j := range 3 {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://%s:%d", host(j), ports[j]))
			}
		}
		name := fmt.Sprintf("S-%d", i+1)
		fc.names = append(fc.names, name)
		fc.monURLs = append(fc.monURLs, fmt.Sprintf("http://127.0.0.1:%d", ports[3+i]))
		args := []string{"-n", name, "--cluster_name", "FAULTS",
			"--cluster", fmt.Sprintf("nats://%s:%d", host(i), ports[i]),
			"--routes", strings.Join(routes, ","),
			"-m", strconv.Itoa(ports[3+i])}
		var place natstest.ExternalNet
		if lab != nil {
			// Clients know the servers by their forwarded loopback ports
			// only: the bridge addresses are unreachable from the host.
			args = append(args, "--no_advertise")
			place = natstest.ExternalNet{Wrap: lab.exec(i), Host: host(i), Port: ports[6+i], Dial: lab.dial}
			lab.forward(t, ports[6+i], net.JoinHostPort(host(i), strconv.Itoa(ports[6+i])))
			lab.forward(t, ports[3+i], net.JoinHostPort(host(i), strconv.Itoa(ports[3+i])))
		}
		fc.servers = append(fc.servers, natstest.StartExternalNet(t, place, args...))
	}
	var urls []string
	for _, s := range fc.servers {
		urls = append(urls, s.ClientURL())
	}
	for i := range 3 {
		args := append([]string{"--upstream", fc.up.URL, "--nats-url", strings.Join(urls, ","),
			"--ledger-replicas", "3", "--audit-replicas", "3", "--bundle-replicas", "3",
			"--node-id", fmt.Sprintf("fault-%d", i)}, extra...)
		fc.nodes = append(fc.nodes, startVerifierd(t, fc.w, true, args...))
		fc.urls = append(fc.urls, fc.nodes[i].URL)
	}
	return fc
}

func (fc *faultCluster) url() string {
	for _, s := range fc.servers {
		if s.PID() != 0 {
			return s.ClientURL()
		}
	}
	return fc.servers[0].ClientURL()
}

// load sends signed requests, each to every node at once, one batch at a
// time, until stop is closed. Bounded: one batch in flight.
func (fc *faultCluster) load(t *testing.T, fault string, stop <-chan struct{}) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer c.CloseIdleConnections()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		tag := fmt.Sprintf("%s-%d", strings.ReplaceAll(fault, " ", "_"), i)
		req := fc.w.signed(t, "GET", "http://orders.e2e/v1/orders/"+tag, "orders.get", nil)
		var wg sync.WaitGroup
		for ni, u := range fc.urls {
			r := clone(t, req, nil)
			r.URL.Host = strings.TrimPrefix(u, "http://")
			r.Host = "orders.e2e"
			wg.Go(func() {
				a := faultAnswer{fault: fault, tag: tag, node: ni, sent: time.Now()}
				fc.inflight[ni].Add(1)
				resp, err := c.Do(r)
				fc.inflight[ni].Add(-1)
				if err == nil {
					var body struct{ Reason string }
					_ = json.NewDecoder(resp.Body).Decode(&body)
					resp.Body.Close()
					a.status, a.reason, a.requestID = resp.StatusCode, body.Reason, resp.Header.Get("X-Request-Id")
					if a.status == 200 {
						a.reason = "allowed"
					}
				}
				a.done = time.Now()
				fc.mu.Lock()
				fc.answers = append(fc.answers, a)
				fc.mu.Unlock()
			})
		}
		wg.Wait()
		time.Sleep(10 * time.Millisecond)
	}
}

// transition is a change of one node's readyz status.
type transition struct {
	node   int
	at     time.Duration // since the fault was injected
	status int           // 0: no answer
	body   string        // the readyz body
	// ledgerBad says the body names the ledger check as failing; a
	// transition is also recorded when only this changes.
	ledgerBad bool
}

// watchReadyz polls every node's readyz every 100 ms until stop is closed
// and returns the transitions, relative to *start once it is set.
func (fc *faultCluster) watchReadyz(stop <-chan struct{}, start func() time.Time) func() []transition {
	var mu sync.Mutex
	var out []transition
	var wg sync.WaitGroup
	c := &http.Client{Timeout: time.Second}
	for ni, u := range fc.urls {
		url := u + "/_tp/readyz"
		wg.Go(func() {
			last, lastBad := -1, false
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				st, body := 0, ""
				if resp, err := c.Get(url); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					st, body = resp.StatusCode, string(b)
				}
				bad := strings.Contains(body, `"ledger":"unavailable"`)
				if st != last || bad != lastBad {
					last, lastBad = st, bad
					mu.Lock()
					out = append(out, transition{ni, time.Since(start()), st, body, bad})
					mu.Unlock()
				}
			}
		})
	}
	return func() []transition {
		wg.Wait()
		return out
	}
}

// allReady waits until every node's readyz says 200 and returns how long
// that took.
func (fc *faultCluster) allReady(t *testing.T, what string) time.Duration {
	t.Helper()
	return testwait.Until(t, 120*time.Second, what, func() error {
		for _, u := range fc.urls {
			resp, err := http.Get(u + "/_tp/readyz")
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s readyz %d %s", u, resp.StatusCode, body)
			}
		}
		return nil
	})
}

// ledgerLeader returns the index of the server leading the ledger stream.
func (fc *faultCluster) ledgerLeader(t *testing.T) int {
	t.Helper()
	var leader int
	testwait.Until(t, 30*time.Second, "the ledger stream's leader", func() error {
		nc, err := nats.Connect(fc.url(), nats.Timeout(2*time.Second))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, fc.ledgerStream)
		if err != nil {
			return err
		}
		name := st.CachedInfo().Cluster.Leader
		for i, n := range fc.names {
			if n == name {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("leader %q", name)
	})
	return leader
}

// moveLedgerLeader makes server to the ledger stream's leader: a leader
// stepdown naming it as the preferred successor (JetStream API), repeated
// until it leads.
func (fc *faultCluster) moveLedgerLeader(t *testing.T, to int) {
	t.Helper()
	testwait.Until(t, 60*time.Second, "ledger leader on "+fc.names[to], func() error {
		if l := fc.ledgerLeader(t); l == to {
			return nil
		}
		nc, err := nats.Connect(fc.url(), nats.Timeout(2*time.Second))
		if err != nil {
			return err
		}
		defer nc.Close()
		req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, fc.names[to])
		if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+fc.ledgerStream, []byte(req), 3*time.Second); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
		return fmt.Errorf("leader not moved yet")
	})
}

// connections returns how many verifierd connections each server holds,
// from its monitoring endpoint (-1 if it does not answer).
func (fc *faultCluster) connections(t *testing.T) []int {
	t.Helper()
	out := make([]int, len(fc.monURLs))
	c := &http.Client{Timeout: 2 * time.Second}
	for i, u := range fc.monURLs {
		out[i] = -1
		resp, err := c.Get(u + "/connz")
		if err != nil {
			continue
		}
		var cz struct {
			Connections []struct{ Name string } `json:"connections"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&cz)
		resp.Body.Close()
		out[i] = 0
		for _, c := range cz.Connections {
			if strings.HasPrefix(c.Name, "verifierd ") {
				out[i]++
			}
		}
	}
	return out
}

// busiest returns the server most verifierd connections use.
func (fc *faultCluster) busiest(t *testing.T) int {
	t.Helper()
	conns := fc.connections(t)
	best := 0
	for i, k := range conns {
		if k > conns[best] {
			best = i
		}
	}
	t.Logf("server %s holds %d of 3 verifierd connections", fc.names[best], conns[best])
	return best
}

func (fc *faultCluster) kill9(t *testing.T, i int) {
	t.Helper()
	if pid := fc.servers[i].PID(); pid != 0 {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %s: %v", fc.names[i], err)
		}
	}
	fc.servers[i].Stop() // reaps it; returns at once
}

// watchElection subscribes, on a connection to each server but the
// stalled one, to the ledger stream's leader-elected advisory, and returns
// a function that waits for stop and gives the time of the first election
// of a server other than the stalled one (zero if none). The time is the
// advisory's own, stamped by the new leader before it takes its first
// write (nats-server: processStreamLeaderChange sends the advisory, then
// setLeader), on the same host clock as the test's: no allow can come
// before it.
func (fc *faultCluster) watchElection(stop <-chan struct{}, stalled int) func() time.Time {
	var (
		mu    sync.Mutex
		first time.Time // guarded by mu
		conns []*nats.Conn
	)
	subject := "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED." + fc.ledgerStream
	for i, s := range fc.servers {
		if i == stalled {
			continue
		}
		nc, err := nats.Connect(s.ClientURL(), nats.Timeout(time.Second))
		if err != nil {
			continue
		}
		conns = append(conns, nc)
		_, _ = nc.Subscribe(subject, func(m *nats.Msg) {
			var adv struct {
				Leader string    `json:"leader"`
				Time   time.Time `json:"timestamp"`
			}
			if json.Unmarshal(m.Data, &adv) != nil || adv.Leader == "" || adv.Leader == fc.names[stalled] {
				return
			}
			mu.Lock()
			if first.IsZero() || adv.Time.Before(first) {
				first = adv.Time
			}
			mu.Unlock()
		})
		_ = nc.Flush()
	}
	return func() time.Time {
		<-stop
		for _, nc := range conns {
			nc.Close()
		}
		mu.Lock()
		defer mu.Unlock()
		return first
	}
}
