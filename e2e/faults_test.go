package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
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

// The fault suite (issue 13 item 6, docs/RELIABILITY.md): three real
// nats-servers (built from go.mod) in a cluster, three real verifierd nodes
// with R3 ledger and audit stream, an upstream that logs every request it
// receives (the ground truth for allows), and steady load that sends each
// signed request to all three nodes at once. Each fault is injected under
// that load; the suite then counts double allows at the upstream, allows
// while no quorum could confirm a consume, audit events expected, found and
// duplicated, runs tpaudit verify, and records readyz transitions and the
// seconds to recover.
//
// The short set runs in the normal test command; TPCLUSTER_FAULTS=full runs
// every fault.

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
	ports := testport.Free(t, 6) // three route ports, three monitoring ports
	// Each node signs its audit trail with a key the trust material lists.
	fc := &faultCluster{w: newWorld(t, "fault-0", "fault-1", "fault-2"), up: newUpstream(t)}
	for i := range 3 {
		var routes []string
		for j := range 3 {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[j]))
			}
		}
		name := fmt.Sprintf("S-%d", i+1)
		fc.names = append(fc.names, name)
		fc.monURLs = append(fc.monURLs, fmt.Sprintf("http://127.0.0.1:%d", ports[3+i]))
		fc.servers = append(fc.servers, natstest.StartExternal(t,
			"-n", name, "--cluster_name", "FAULTS",
			"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", ports[i]),
			"--routes", strings.Join(routes, ","),
			"-m", strconv.Itoa(ports[3+i])))
	}
	var urls []string
	for _, s := range fc.servers {
		urls = append(urls, s.ClientURL())
	}
	for i := range 3 {
		fc.nodes = append(fc.nodes, startVerifierd(t, fc.w, true,
			"--upstream", fc.up.URL, "--nats-url", strings.Join(urls, ","),
			"--ledger-replicas", "3", "--audit-replicas", "3", "--bundle-replicas", "3",
			"--node-id", fmt.Sprintf("fault-%d", i)))
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
		st, err := js.Stream(ctx, "KV_TRUSTPLANE_REPLAY")
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
		if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN.KV_TRUSTPLANE_REPLAY", []byte(req), 3*time.Second); err != nil {
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

// fault is one injected failure: inject breaks something and returns the
// restore step, called hold later; doubt says whether no quorum can confirm a consume between
// inject and restore, so that any allow then would be an allow on doubt.
type fault struct {
	name   string
	doubt  bool
	hold   time.Duration // between inject and restore
	inject func(t *testing.T, fc *faultCluster) (restore func())
}

var faults = []fault{
	{"kill -9 ledger leader", false, 12 * time.Second, func(t *testing.T, fc *faultCluster) func() {
		i := fc.ledgerLeader(t)
		fc.kill9(t, i)
		return func() { fc.servers[i].Start() }
	}},
	{"kill -9 two servers", true, 4 * time.Second, func(t *testing.T, fc *faultCluster) func() {
		i := fc.ledgerLeader(t)
		j := (i + 1) % 3
		fc.kill9(t, i)
		fc.kill9(t, j)
		return func() { fc.servers[i].Start(); fc.servers[j].Start() }
	}},
	// A partition that leaves the ledger leader alone, without network
	// namespaces: its peers are frozen, so it still serves its clients and
	// still calls itself leader, but no write reaches a quorum (issue 13:
	// readyz said 200 for the whole of such a partition).
	{"leader cut off (SIGSTOP both followers)", true, 6 * time.Second, func(t *testing.T, fc *faultCluster) func() {
		// The leader is moved to the server most nodes use, so that they
		// talk to a leader that still calls itself one.
		l := fc.busiest(t)
		fc.moveLedgerLeader(t, l)
		t.Logf("ledger leader %s; verifierd connections per server: %v", fc.names[l], fc.connections(t))
		var pids []int
		for j := range 3 {
			if j == l {
				continue
			}
			pid := fc.servers[j].PID()
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatalf("SIGSTOP %s: %v", fc.names[j], err)
			}
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
			pids = append(pids, pid)
		}
		return func() {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
	}},
	{"kill -9 follower", false, 4 * time.Second, func(t *testing.T, fc *faultCluster) func() {
		i := (fc.ledgerLeader(t) + 1) % 3
		fc.kill9(t, i)
		return func() { fc.servers[i].Start() }
	}},
	{"kill -9 all three", true, 4 * time.Second, func(t *testing.T, fc *faultCluster) func() {
		for i := range 3 {
			fc.kill9(t, i)
		}
		return func() {
			for i := range 3 {
				fc.servers[i].Start()
			}
		}
	}},
	{"SIGSTOP the nodes' server", false, 4 * time.Second, func(t *testing.T, fc *faultCluster) func() {
		i := fc.busiest(t)
		pid := fc.servers[i].PID()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP %s: %v", fc.names[i], err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
		return func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	}},
	{"kill -9 a verifierd", false, 4 * time.Second, func(t *testing.T, fc *faultCluster) func() {
		n := fc.nodes[1]
		// Kill it while it holds a request: poll the load's count.
		deadline := time.Now().Add(10 * time.Second)
		for fc.inflight[1].Load() == 0 && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		if err := n.cmd.Process.Kill(); err != nil {
			t.Fatalf("kill -9 verifierd: %v", err)
		}
		<-n.exited
		return func() {
			// Same flags, same data dir: the spool is sent at start.
			listen := strings.TrimPrefix(n.URL, "http://")
			fc.nodes[1] = spawnVerifierd(t, listen, n.cmd.Args[1:], []string{"TPCLUSTER_NODE_ID="})
			fc.nodes[1].waitUp(t, false)
		}
	}},
}

// shortFaults are run by the normal test command.
var shortFaults = map[string]bool{
	"kill -9 ledger leader":                   true,
	"kill -9 two servers":                     true,
	"leader cut off (SIGSTOP both followers)": true,
}

// faultResult is one row of docs/RELIABILITY.md's table.
type faultResult struct {
	name                      string
	requests, allows          int
	doubleAllows, doubtAllows int
	readyz                    []transition
	readyIn, allowIn          time.Duration // from restore
	answers                   map[string]int
}

// TestFaults: each fault under load; see the comment at the top of the file.
func TestFaults(t *testing.T) {
	full := os.Getenv("TPCLUSTER_FAULTS") == "full"
	fc := startFaultCluster(t)
	var results []faultResult
	for _, f := range faults {
		if !full && !shortFaults[f.name] {
			continue
		}
		fc.allReady(t, "every node ready before "+f.name)
		results = append(results, runFault(t, fc, f))
	}
	checkFaultAudit(t, fc)
	requireWhole(t, fc.w, fc.url())
	for _, r := range results {
		t.Logf("| %s | %d | %d | %d | %d | %s | %.1f | %.1f | %v |", r.name, r.requests, r.allows,
			r.doubleAllows, r.doubtAllows, readyzSummary(r.readyz), r.readyIn.Seconds(), r.allowIn.Seconds(), r.answers)
	}
}

func runFault(t *testing.T, fc *faultCluster, f fault) faultResult {
	t.Helper()
	var (
		injectedAt time.Time
		startMu    sync.Mutex
	)
	// Until the fault is injected, offsets are negative: time until a
	// point one hour ahead.
	startOf := func() time.Time { startMu.Lock(); defer startMu.Unlock(); return injectedAt }
	startMu.Lock()
	injectedAt = time.Now().Add(time.Hour)
	startMu.Unlock()
	stopLoad, stopWatch := make(chan struct{}), make(chan struct{})
	var loadWG sync.WaitGroup
	loadWG.Go(func() { fc.load(t, f.name, stopLoad) })
	watched := fc.watchReadyz(stopWatch, startOf)

	time.Sleep(time.Second) // steady load before the fault
	startMu.Lock()
	injectedAt = time.Now()
	startMu.Unlock()
	restore := f.inject(t, fc)
	doubtFrom := time.Now()
	time.Sleep(f.hold)
	doubtTo := time.Now()
	restore()
	restoredAt := time.Now()
	fc.allReady(t, "every node ready after "+f.name)
	readyIn := time.Since(restoredAt)
	// Load until an allow came back from every node, then a second more.
	var allowIn time.Duration
	testwait.Until(t, 60*time.Second, "an allow from every node after "+f.name, func() error {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		got := map[int]time.Time{}
		for _, a := range fc.answers {
			if a.fault == f.name && a.status == 200 && a.sent.After(restoredAt) {
				if _, ok := got[a.node]; !ok {
					got[a.node] = a.done
				}
			}
		}
		if len(got) < len(fc.urls) {
			return fmt.Errorf("allows from %d nodes", len(got))
		}
		for _, at := range got {
			allowIn = max(allowIn, at.Sub(restoredAt))
		}
		return nil
	})
	time.Sleep(time.Second)
	close(stopLoad)
	loadWG.Wait()
	close(stopWatch)
	r := faultResult{name: f.name, readyz: watched(), readyIn: readyIn, allowIn: allowIn, answers: map[string]int{}}

	// Ground truth: what reached the upstream, per request tag.
	prefix := "/v1/orders/" + strings.ReplaceAll(f.name, " ", "_") + "-"
	atUpstream := map[string]int{}
	fc.up.mu.Lock()
	for _, s := range fc.up.reqs {
		if tag, ok := strings.CutPrefix(s.RequestURI, prefix); ok {
			atUpstream[tag]++
		}
	}
	fc.up.mu.Unlock()
	fc.mu.Lock()
	tags := map[string]int{}
	inFlight := 0 // sent before the fault was in place, never answered
	for _, a := range fc.answers {
		if a.fault != f.name {
			continue
		}
		if a.status == 0 && a.sent.Before(doubtFrom) {
			inFlight++
		}
		r.requests++
		key := a.reason
		if a.status == 0 {
			key = "no answer"
		}
		r.answers[key]++
		if a.status == 200 {
			r.allows++
			tags[a.tag]++
			if f.doubt && a.sent.After(doubtFrom) && a.done.Before(doubtTo) {
				r.doubtAllows++
				t.Errorf("%s: request %s allowed by node %d while no quorum could confirm it", f.name, a.tag, a.node)
			}
		}
	}
	fc.mu.Unlock()
	for tag, n := range atUpstream {
		if n > 1 {
			r.doubleAllows++
			t.Errorf("%s: request %s reached the upstream %d times", f.name, tag, n)
		}
	}
	for tag, n := range tags {
		if n > 1 {
			t.Errorf("%s: request %s allowed by %d nodes", f.name, tag, n)
		}
	}
	t.Logf("%s: %d requests, %d allows, %d at the upstream, %d double allows, %d allows during doubt, %d in flight at the fault left unanswered; readyz %s; all ready %.1f s and an allow from every node %.1f s after the restore; answers %v",
		f.name, r.requests, r.allows, len(atUpstream), r.doubleAllows, r.doubtAllows, inFlight, readyzSummary(r.readyz), readyIn.Seconds(), allowIn.Seconds(), r.answers)
	if f.doubt && !sawUnready(r.readyz) {
		t.Errorf("%s: no node's readyz left 200 while quorum was lost", f.name)
	}
	if f.doubt {
		// A node that cannot write the ledger says so by name while the
		// fault lasts (another check, such as audit_stream, may say 503
		// first: both are true).
		named := map[int]bool{}
		for _, tr := range r.readyz {
			if tr.at >= 0 && tr.at <= f.hold && tr.status == 503 && tr.ledgerBad {
				named[tr.node] = true
			}
		}
		for ni := range fc.urls {
			if !named[ni] {
				t.Errorf("%s: node %d's readyz never named the ledger check failing during the fault", f.name, ni)
			}
		}
	}
	return r
}

func sawUnready(ts []transition) bool {
	for _, tr := range ts {
		if tr.status != 200 && tr.at >= 0 {
			return true
		}
	}
	return false
}

// readyzSummary lists each node's readyz status before the fault and its
// transitions after, in seconds since the fault was injected.
func readyzSummary(ts []transition) string {
	by := map[int][]string{}
	before := map[int]string{}
	last := map[int]int{}
	for _, tr := range ts {
		if st, ok := last[tr.node]; ok && st == tr.status {
			continue // only the ledger flag changed
		}
		last[tr.node] = tr.status
		s := strconv.Itoa(tr.status)
		if tr.status == 0 {
			s = "down"
		}
		if tr.at < 0 {
			before[tr.node] = s
			continue
		}
		by[tr.node] = append(by[tr.node], fmt.Sprintf("%s@%.1fs", s, tr.at.Seconds()))
	}
	var out []string
	for n := range 3 {
		out = append(out, strings.TrimSpace(fmt.Sprintf("n%d: %s %s", n, before[n], strings.Join(by[n], " "))))
	}
	return strings.Join(out, "; ")
}

// checkFaultAudit: every answered decision (but audit_unavailable, which
// may go unrecorded) has exactly one event in the stream; none has two.
// Requests left unanswered by a killed node may have one event or none.
func checkFaultAudit(t *testing.T, fc *faultCluster) {
	t.Helper()
	fc.mu.Lock()
	answered := map[string]faultAnswer{}
	expected := 0
	for _, a := range fc.answers {
		if a.requestID == "" || a.reason == "audit_unavailable" {
			continue
		}
		answered[a.requestID] = a
		expected++
	}
	fc.mu.Unlock()
	var msgs []auditMsg
	var found, dups int
	testwait.Until(t, 120*time.Second, "every answered decision's audit event", func() error {
		var err error
		if msgs, err = readAuditErr(t.Context(), fc.url()); err != nil {
			return err
		}
		seen := map[string]int{}
		for _, m := range msgs {
			if m.ev.RequestID != "" {
				seen[m.ev.RequestID]++
			}
		}
		found, dups = 0, 0
		for id := range answered {
			if seen[id] > 0 {
				found++
			}
			if seen[id] > 1 {
				dups++
			}
		}
		if found < expected {
			return fmt.Errorf("%d of %d events found", found, expected)
		}
		return nil
	})
	byFault := map[string][3]int{}
	seen := map[string]int{}
	extra := 0
	for _, m := range msgs {
		if id := m.ev.RequestID; id != "" {
			seen[id]++
			if _, ok := answered[id]; !ok {
				extra++
			}
		}
	}
	for id, a := range answered {
		c := byFault[a.fault]
		c[0]++
		if seen[id] > 0 {
			c[1]++
		}
		if seen[id] > 1 {
			c[2]++
		}
		byFault[a.fault] = c
	}
	names := make([]string, 0, len(byFault))
	for n := range byFault {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := byFault[n]
		t.Logf("audit %s: %d expected, %d found, %d duplicated", n, c[0], c[1], c[2])
	}
	t.Logf("audit: %d expected, %d found, %d duplicated, %d events for requests that got no answer (in flight on a killed node)", expected, found, dups, extra)
	if found != expected || dups != 0 {
		t.Errorf("audit: %d expected, %d found, %d duplicated; want all found, none duplicated", expected, found, dups)
	}
}
