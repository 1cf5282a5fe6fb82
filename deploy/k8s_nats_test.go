package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

// networkPolicy holds the fields of a NetworkPolicy the checks read.
type networkPolicy struct {
	Kind     string
	Metadata struct{ Name string }
	Spec     struct {
		PodSelector selector
		PolicyTypes []string
		Ingress     []struct {
			From []struct {
				PodSelector       *selector
				NamespaceSelector json.RawMessage
				IPBlock           json.RawMessage `json:"ipBlock"`
			}
			Ports []struct{ Port any }
		}
	}
}

type selector struct {
	MatchLabels      map[string]string
	MatchExpressions []struct {
		Key, Operator string
		Values        []string
	}
}

// admits returns the app.kubernetes.io/name values s selects, or nil if it
// selects by anything else.
func (s selector) admits() []string {
	var names []string
	for k, v := range s.MatchLabels {
		if k != "app.kubernetes.io/name" {
			return nil
		}
		names = append(names, v)
	}
	for _, e := range s.MatchExpressions {
		if e.Key != "app.kubernetes.io/name" || e.Operator != "In" {
			return nil
		}
		names = append(names, e.Values...)
	}
	return names
}

func renderPolicies(t *testing.T) []networkPolicy {
	t.Helper()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(conformance.ModuleRoot(t), "deploy", "k8s"))
	if err != nil {
		t.Fatal(err)
	}
	var out []networkPolicy
	for _, r := range rm.Resources() {
		if r.GetKind() != "NetworkPolicy" {
			continue
		}
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var p networkPolicy
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestNATSLockedDown (issue 12): NATS takes clients on 4222 only from
// tpcluster's pods and routes on 6222 only from NATS pods; monitoring is on
// the pod's loopback; every client of NATS talks TLS with a role
// credential.
func TestNATSLockedDown(t *testing.T) {
	objs := render(t)
	nats := find(t, objs, "StatefulSet", "tpcluster-nats")
	natsName := nats.Spec.Template.Metadata.Labels["app.kubernetes.io/name"]

	// Which pods are ours: every workload's pod label, plus the audit
	// readers' pods the policy documents.
	ours := map[string]bool{"tpcluster-audit": true}
	for _, o := range objs {
		if _, ok := o.pod(); ok {
			ours[o.podLabels()["app.kubernetes.io/name"]] = true
		}
	}

	var policy *networkPolicy
	for _, p := range renderPolicies(t) {
		if slices.Equal(p.Spec.PodSelector.admits(), []string{natsName}) {
			policy = &p
		}
	}
	if policy == nil {
		t.Fatalf("no NetworkPolicy selects the NATS pods (%s)", natsName)
	}
	if !slices.Contains(policy.Spec.PolicyTypes, "Ingress") {
		t.Errorf("NetworkPolicy %s: policyTypes %v lacks Ingress", policy.Metadata.Name, policy.Spec.PolicyTypes)
	}
	admitted := map[string][]string{} // port → pod names
	for i, rule := range policy.Spec.Ingress {
		if len(rule.From) == 0 || len(rule.Ports) == 0 {
			t.Errorf("NetworkPolicy %s rule %d admits every source or every port", policy.Metadata.Name, i)
			continue
		}
		for _, f := range rule.From {
			if f.PodSelector == nil || len(f.NamespaceSelector) > 0 || len(f.IPBlock) > 0 {
				t.Errorf("NetworkPolicy %s rule %d admits more than pods of this namespace", policy.Metadata.Name, i)
				continue
			}
			names := f.PodSelector.admits()
			if names == nil {
				t.Errorf("NetworkPolicy %s rule %d selects pods by other than app.kubernetes.io/name", policy.Metadata.Name, i)
			}
			for _, p := range rule.Ports {
				port, _ := json.Marshal(p.Port)
				admitted[string(port)] = append(admitted[string(port)], names...)
			}
		}
	}
	for port, names := range admitted {
		switch port {
		case "4222":
			for _, n := range names {
				if !ours[n] {
					t.Errorf("NATS client port admits pods %s, which are not tpcluster's", n)
				}
			}
		case "6222":
			if !slices.Equal(slices.Compact(names), []string{natsName}) {
				t.Errorf("NATS route port admits %v, want the NATS pods only", names)
			}
		default:
			t.Errorf("NetworkPolicy admits port %s to NATS; want 4222 and 6222 only", port)
		}
	}
	if len(admitted["4222"]) == 0 || len(admitted["6222"]) == 0 {
		t.Errorf("NetworkPolicy admits %v; want clients on 4222 and routes on 6222", admitted)
	}

	// Monitoring: loopback in nats.conf, no port, no httpGet probe.
	conf, err := os.ReadFile(filepath.Join(conformance.ModuleRoot(t), "deploy", "k8s", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^\s*(http|https|http_port|https_port|monitor_port)\s*:\s*(\S+)`).FindAllStringSubmatch(string(conf), -1); len(m) != 1 || !strings.HasPrefix(m[0][2], "127.0.0.1:") {
		t.Errorf("nats.conf monitoring listeners %q: want one, on 127.0.0.1", m)
	}
	for _, want := range []string{"include ../auth/auth.conf", "tls {"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("nats.conf lacks %q (accounts and TLS from the tpcluster-nats-server Secret)", want)
		}
	}
	for _, c := range nats.Spec.Template.Spec.Containers {
		for _, p := range []*probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if p != nil && p.HTTPGet != nil {
				t.Errorf("NATS container %s: an httpGet probe needs the monitoring port off loopback", c.Name)
			}
		}
		for _, p := range c.Ports {
			if p.ContainerPort == 8222 {
				t.Errorf("NATS container %s exposes the monitoring port 8222", c.Name)
			}
		}
	}

	// Every client of NATS: TLS, a role credential, the CA.
	clients := 0
	for _, o := range objs {
		ps, ok := o.pod()
		if !ok {
			continue
		}
		for _, c := range ps.Containers {
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			url, ok := env["TPCLUSTER_NATS_URL"]
			if !ok {
				continue
			}
			clients++
			where := o.Kind + " " + o.Metadata.Name
			if !strings.HasPrefix(url, "tls://") {
				t.Errorf("%s: TPCLUSTER_NATS_URL=%s, want tls://", where, url)
			}
			if !strings.HasSuffix(env["TPCLUSTER_NATS_CREDS"], ".creds") || !strings.HasSuffix(env["TPCLUSTER_NATS_CA"], "ca.pem") {
				t.Errorf("%s: TPCLUSTER_NATS_CREDS=%q TPCLUSTER_NATS_CA=%q, want a role's creds file and the CA", where, env["TPCLUSTER_NATS_CREDS"], env["TPCLUSTER_NATS_CA"])
			}
			if name := o.podLabels()["app.kubernetes.io/name"]; !slices.Contains(admitted["4222"], name) {
				t.Errorf("%s: its pods (%s) are not admitted to NATS by the NetworkPolicy", where, name)
			}
		}
	}
	if clients < 4 {
		t.Errorf("%d NATS clients in the manifests, want verifierd, bundlepub, the setup Job and the audit export", clients)
	}
}
