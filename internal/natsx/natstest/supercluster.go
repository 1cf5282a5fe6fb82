package natstest

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tpcluster/tpcluster/internal/testport"
)

// Region is one cluster of a supercluster, named after its region.
type Region struct {
	Name    string
	Servers []*server.Server
}

// URLs returns the client URLs of the region's servers.
func (r Region) URLs() []string { return URLs(r.Servers) }

// SuperCluster starts one JetStream cluster of n servers per region name,
// all on loopback, joined by gateways into one supercluster with one
// JetStream domain. Every gateway connection goes through a LatencyProxy
// delaying each byte by wan one way: each server's gateway advertises its
// proxy's address, so the clusters can reach each other only through the
// proxies (gossip would otherwise hand out the direct addresses). It
// returns once a JetStream meta leader answers.
func SuperCluster(t testing.TB, wan time.Duration, n int, regions ...string) []Region {
	t.Helper()
	if n < 1 || len(regions) < 2 {
		t.Fatalf("natstest.SuperCluster: need n >= 1 and at least two regions")
	}
	type member struct {
		clusterPort, gatewayPort int
		proxy                    *LatencyProxy
	}
	members := make(map[string][]member, len(regions))
	for _, r := range regions {
		ports := testport.Free(t, 2*n)
		for i := range n {
			m := member{clusterPort: ports[2*i], gatewayPort: ports[2*i+1]}
			m.proxy = NewLatencyProxy(t, fmt.Sprintf("127.0.0.1:%d", m.gatewayPort), wan)
			members[r] = append(members[r], m)
		}
	}
	out := make([]Region, 0, len(regions))
	var all []*server.Server
	for _, r := range regions {
		var routes []*url.URL
		for _, m := range members[r] {
			routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", m.clusterPort)})
		}
		var remotes []*server.RemoteGatewayOpts
		for _, o := range regions {
			if o == r {
				continue
			}
			rg := &server.RemoteGatewayOpts{Name: o}
			for _, m := range members[o] {
				rg.URLs = append(rg.URLs, &url.URL{Scheme: "nats", Host: m.proxy.Addr()})
			}
			remotes = append(remotes, rg)
		}
		reg := Region{Name: r}
		for i, m := range members[r] {
			s := run(t, &server.Options{
				ServerName: fmt.Sprintf("%s-%d", r, i+1),
				Host:       "127.0.0.1",
				Port:       server.RANDOM_PORT,
				JetStream:  true,
				StoreDir:   t.TempDir(),
				NoLog:      true,
				NoSigs:     true,
				Cluster:    server.ClusterOpts{Name: r, Host: "127.0.0.1", Port: m.clusterPort},
				Routes:     routes,
				Gateway: server.GatewayOpts{
					Name:      r,
					Host:      "127.0.0.1",
					Port:      m.gatewayPort,
					Advertise: m.proxy.Addr(),
					Gateways:  remotes,
				},
			})
			reg.Servers = append(reg.Servers, s)
		}
		out = append(out, reg)
		all = append(all, reg.Servers...)
	}
	WaitForMetaLeader(t, all)
	return out
}
