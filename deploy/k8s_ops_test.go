package deploy

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

// Manifests that survive real operations. Static, like
// the rest of k8s_test.go: there is no cluster here.

// bytesOf parses a Kubernetes memory quantity (Mi, Gi) or a GOMEMLIMIT
// value (MiB, GiB) into bytes.
func bytesOf(t *testing.T, v string) float64 {
	t.Helper()
	units := []struct {
		suffix string
		mult   float64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil {
				t.Fatalf("memory value %q: %v", v, err)
			}
			return f * u.mult
		}
	}
	t.Fatalf("memory value %q: want a Ki/Mi/Gi or KiB/MiB/GiB suffix", v)
	return 0
}

// TestManifestMemoryHeadroom: every Go container (our image) sets
// GOMEMLIMIT to 80-90 % of its memory limit. At 100 % the runtime only
// collects hard once the kernel is about to kill the container.
func TestManifestMemoryHeadroom(t *testing.T) {
	for _, o := range render(t) {
		ps, ok := o.pod()
		if !ok {
			continue
		}
		for _, c := range ps.Containers {
			if !strings.HasPrefix(c.Image, "tpcluster") {
				continue
			}
			where := fmt.Sprintf("%s %s container %s", o.Kind, o.Metadata.Name, c.Name)
			v, literal := c.env("GOMEMLIMIT")
			if !literal || v == "" {
				t.Errorf("%s: GOMEMLIMIT must be a literal value below the memory limit", where)
				continue
			}
			limit := c.Resources.Limits["memory"]
			ratio := bytesOf(t, v) / bytesOf(t, limit)
			if ratio < 0.80 || ratio > 0.90 {
				t.Errorf("%s: GOMEMLIMIT %s is %.0f %% of the %s limit, want 80-90 %%", where, v, ratio*100, limit)
			}
		}
	}
}

// TestManifestAuditSpoolPersistent: verifierd's data dir (the audit spool
// and the bundle cache) is a volume claim template, so an evicted pod's
// successor finds the unpublished events; scaling down keeps the volumes.
func TestManifestAuditSpoolPersistent(t *testing.T) {
	v := find(t, render(t), "StatefulSet", "tpcluster-verifierd")
	c := v.Spec.Template.Spec.Containers[0]
	dataDir, _ := c.env("TPCLUSTER_DATA_DIR")
	if spool, ok := c.env("TPCLUSTER_AUDIT_SPOOL_DIR"); ok && spool != "" && !strings.HasPrefix(spool, dataDir+"/") {
		t.Errorf("TPCLUSTER_AUDIT_SPOOL_DIR %s is outside the data dir %s", spool, dataDir)
	}
	var mounted string
	for _, m := range c.VolumeMounts {
		if m.MountPath == dataDir {
			mounted = m.Name
		}
	}
	if dataDir == "" || mounted == "" {
		t.Fatalf("verifierd mounts nothing at TPCLUSTER_DATA_DIR %q", dataDir)
	}
	claimed := slices.ContainsFunc(v.Spec.VolumeClaimTemplates, func(vc struct{ Metadata struct{ Name string } }) bool {
		return vc.Metadata.Name == mounted
	})
	if !claimed {
		t.Errorf("verifierd's data dir (volume %s) is not a volumeClaimTemplate: the spool dies with the pod", mounted)
	}
	for _, vol := range v.Spec.Template.Spec.Volumes {
		if vol.Name == mounted {
			t.Errorf("verifierd's data dir volume %s is a pod volume, not a claim", mounted)
		}
	}
	if v.Spec.ServiceName == "" {
		t.Error("verifierd StatefulSet has no serviceName")
	} else if hs := find(t, render(t), "Service", v.Spec.ServiceName); hs.Spec.ClusterIP != "None" {
		t.Errorf("verifierd serviceName %s is not headless", v.Spec.ServiceName)
	}
}

// pinned matches an image reference with a digest or an exact version tag
// (1.37.0, v2.11.4, 0.1.0-rc.1); "latest", "dev", "1.37" or no tag move.
var pinned = regexp.MustCompile(`(@sha256:[0-9a-f]{64}$)|(:v?\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$)`)

// TestManifestImagesPinned: every container, init containers included,
// runs a pinned image: a restarted pod runs what its siblings run.
func TestManifestImagesPinned(t *testing.T) {
	for _, o := range render(t) {
		ps, ok := o.pod()
		if !ok {
			continue
		}
		for _, c := range slices.Concat(ps.InitContainers, ps.Containers) {
			if !pinned.MatchString(c.Image) {
				t.Errorf("%s %s container %s: image %q is not pinned (want an exact version tag or a digest)", o.Kind, o.Metadata.Name, c.Name, c.Image)
			}
		}
	}
}

// TestManifestProbes: every long-running container has a readiness and a
// liveness probe, each naming a path and a port the container declares.
func TestManifestProbes(t *testing.T) {
	for _, o := range render(t) {
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" {
			continue
		}
		for _, c := range o.Spec.Template.Spec.Containers {
			where := fmt.Sprintf("%s %s container %s", o.Kind, o.Metadata.Name, c.Name)
			for name, p := range map[string]*probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				// NATS keeps its unauthenticated monitoring on the pod's
				// loopback (issue 12): its probes run `tpnats probe` there.
				if p != nil && p.Exec != nil && len(p.Exec.Command) > 3 && path.Base(p.Exec.Command[0]) == "tpnats" &&
					p.Exec.Command[1] == "probe" && strings.HasPrefix(p.Exec.Command[3], "http://127.0.0.1:") {
					continue
				}
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path == "" {
					t.Errorf("%s: no %s probe (httpGet with a path)", where, name)
					continue
				}
				port := fmt.Sprint(p.HTTPGet.Port)
				declared := slices.ContainsFunc(c.Ports, func(cp struct {
					Name          string
					ContainerPort int
				}) bool {
					return cp.Name == port || strconv.Itoa(cp.ContainerPort) == port
				})
				if !declared {
					t.Errorf("%s: %s probe port %s is not a declared container port", where, name, port)
				}
			}
		}
	}
}

// TestManifestNATSURLs: every client of NATS (verifierd, bundlepub, the
// audit export) is given every server of the NATS StatefulSet, by its
// stable name: one Service URL leaves a client nothing to fall back on
// when it resolves to a server that is going away.
func TestManifestNATSURLs(t *testing.T) {
	objs := render(t)
	nats := find(t, objs, "StatefulSet", "tpcluster-nats")
	var want []string
	for i := range *nats.Spec.Replicas {
		// TLS (issue 12): the server certificate names these hosts.
		want = append(want, fmt.Sprintf("tls://%s-%d.%s:4222", nats.Metadata.Name, i, nats.Spec.ServiceName))
	}
	clients := 0
	for _, o := range objs {
		ps, ok := o.pod()
		if !ok {
			continue
		}
		for _, c := range ps.Containers {
			v, ok := c.env("TPCLUSTER_NATS_URL")
			if !ok {
				continue
			}
			clients++
			got := strings.Split(v, ",")
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s %s container %s: TPCLUSTER_NATS_URL = %s, want every server: %s", o.Kind, o.Metadata.Name, c.Name, v, strings.Join(want, ","))
			}
		}
	}
	if clients < 3 {
		t.Errorf("%d containers set TPCLUSTER_NATS_URL, want verifierd, bundlepub and the audit export", clients)
	}
}

// TestManifestAuditExport: a CronJob runs tpaudit export as OCSF through a
// durable consumer, one run at a time, onto a persistent volume.
func TestManifestAuditExport(t *testing.T) {
	objs := render(t)
	cj := find(t, objs, "CronJob", "tpcluster-audit-export")
	if cj.Spec.ConcurrencyPolicy != "Forbid" {
		t.Errorf("audit export concurrencyPolicy = %q, want Forbid (two runs would split the events)", cj.Spec.ConcurrencyPolicy)
	}
	ps, _ := cj.pod()
	if len(ps.Containers) != 1 {
		t.Fatalf("audit export has %d containers, want 1", len(ps.Containers))
	}
	c := ps.Containers[0]
	if len(c.Command) < 2 || filepath.Base(c.Command[0]) != "tpaudit" || c.Command[1] != "export" {
		t.Errorf("audit export command = %q, want tpaudit export", c.Command)
	}
	for name, want := range map[string]string{"TPCLUSTER_FORMAT": "ocsf", "TPCLUSTER_DURABLE": ""} {
		v, _ := c.env(name)
		if v == "" || (want != "" && v != want) {
			t.Errorf("audit export %s = %q, want %s", name, v, cmpOr(want, "a durable name"))
		}
	}
	out, _ := c.env("TPCLUSTER_OUT")
	onClaim := false
	for _, m := range c.VolumeMounts {
		if !strings.HasPrefix(out, m.MountPath+"/") {
			continue
		}
		for _, vol := range ps.Volumes {
			if vol.Name == m.Name && vol.PersistentVolumeClaim != nil {
				find(t, objs, "PersistentVolumeClaim", vol.PersistentVolumeClaim.ClaimName)
				onClaim = true
			}
		}
	}
	if !onClaim {
		t.Errorf("audit export writes %q, which is not on a persistent volume claim", out)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestOperationsCommands reads the Kubernetes command sequence of
// docs/OPERATIONS.md and checks that it runs as written against the
// rendered manifests: each cd and path resolves from where the previous
// line left the shell, the namespace is the kustomization's, every
// ConfigMap and Secret it creates is one a workload mounts, with every key
// the workloads read, and every one they mount is created; the image it
// sets is the kustomization's.
func TestOperationsCommands(t *testing.T) {
	root := conformance.ModuleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### On Kubernetes: `deploy/k8s`")
	if !ok {
		t.Fatal(`docs/OPERATIONS.md has no "### On Kubernetes: ` + "`deploy/k8s`" + `" section`)
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("the Kubernetes section has no sh block")
	}
	objs := render(t)
	namespace := find(t, objs, "Namespace", "tpcluster").Metadata.Name

	// What the workloads mount: ConfigMap and Secret names.
	mountedCM, mountedSecret := map[string]bool{}, map[string]bool{}
	for _, o := range objs {
		ps, ok := o.pod()
		if !ok {
			continue
		}
		for _, v := range ps.Volumes {
			if v.ConfigMap != nil && !strings.HasPrefix(v.ConfigMap.Name, "tpcluster-nats-config") {
				mountedCM[v.ConfigMap.Name] = true
			}
			if v.Secret != nil {
				mountedSecret[v.Secret.SecretName] = true
			}
		}
	}
	// The keys each is read under: the file names the containers' env
	// points into its mount.
	keysRead := map[string][]string{}
	for _, o := range objs {
		ps, ok := o.pod()
		if !ok {
			continue
		}
		mountOf := map[string]string{} // mount path -> ConfigMap or Secret name
		for _, c := range slices.Concat(ps.InitContainers, ps.Containers) {
			for _, m := range c.VolumeMounts {
				for _, v := range ps.Volumes {
					switch {
					case v.Name != m.Name:
					case v.ConfigMap != nil:
						mountOf[m.MountPath] = v.ConfigMap.Name
					case v.Secret != nil:
						mountOf[m.MountPath] = v.Secret.SecretName
					}
				}
			}
		}
		for _, c := range slices.Concat(ps.InitContainers, ps.Containers) {
			var values []string
			for _, e := range c.Env {
				values = append(values, strings.Split(e.Value, ",")...)
			}
			values = append(values, strings.Fields(strings.Join(slices.Concat(c.Command, c.Args), " "))...)
			for _, v := range values {
				for dir, name := range mountOf {
					if key, ok := strings.CutPrefix(v, dir+"/"); ok && !strings.Contains(key, "/") && !slices.Contains(keysRead[name], key) {
						keysRead[name] = append(keysRead[name], key)
					}
				}
			}
		}
	}

	cwd := root
	created := map[string][]string{}
	lineRe := regexp.MustCompile(`^\(?\s*`)
	for raw := range strings.Lines(block) {
		line, _, _ := strings.Cut(strings.TrimSpace(raw), "#")
		line = strings.TrimSpace(lineRe.ReplaceAllString(line, ""))
		if line == "" {
			continue
		}
		subshell := strings.HasPrefix(strings.TrimSpace(raw), "(")
		lineCwd := cwd
		for cmd := range strings.SplitSeq(strings.TrimSuffix(line, ")"), "&&") {
			f := strings.Fields(cmd)
			if len(f) == 0 {
				continue
			}
			switch {
			case f[0] == "cd":
				lineCwd = filepath.Join(lineCwd, f[1])
				if fi, err := os.Stat(lineCwd); err != nil || !fi.IsDir() {
					t.Errorf("%q: cd %s: no such directory from there", line, f[1])
				}
			case f[0] == "kustomize" && len(f) >= 5 && f[1] == "edit" && f[2] == "set" && f[3] == "image":
				if _, err := os.Stat(filepath.Join(lineCwd, "kustomization.yaml")); err != nil {
					t.Errorf("%q: kustomize edit runs where there is no kustomization.yaml", line)
				}
				name, _, _ := strings.Cut(f[4], "=")
				kust, _ := os.ReadFile(filepath.Join(root, "deploy", "k8s", "kustomization.yaml"))
				if !strings.Contains(string(kust), "- name: "+name+"\n") {
					t.Errorf("%q: kustomization.yaml has no image %s", line, name)
				}
			case f[0] == "kubectl":
				checkKubectl(t, line, f[1:], lineCwd, namespace, created)
			}
		}
		if !subshell {
			cwd = lineCwd
		}
	}
	for name := range mountedCM {
		keys, ok := created["configmap/"+name]
		if !ok {
			t.Errorf("OPERATIONS never creates ConfigMap %s, which the workloads mount", name)
		}
		for _, k := range keysRead[name] {
			if ok && !slices.Contains(keys, k) {
				t.Errorf("OPERATIONS creates ConfigMap %s without key %s, which a workload reads", name, k)
			}
		}
	}
	for name := range mountedSecret {
		keys, ok := created["secret/"+name]
		if !ok {
			t.Errorf("OPERATIONS never creates Secret %s, which the workloads mount", name)
		}
		for _, k := range keysRead[name] {
			if ok && !slices.Contains(keys, k) {
				t.Errorf("OPERATIONS creates Secret %s without key %s, which a workload reads", name, k)
			}
		}
	}
	for what := range created {
		kind, name, _ := strings.Cut(what, "/")
		if (kind == "configmap" && !mountedCM[name]) || (kind == "secret" && !mountedSecret[name]) {
			t.Errorf("OPERATIONS creates %s, which no workload mounts", what)
		}
	}
	t.Logf("checked against the rendered manifests: %d ConfigMaps and Secrets, keys %v", len(created), created)
}

// checkKubectl checks one kubectl command of OPERATIONS: its namespace,
// the files it names (relative to cwd), and records what it creates.
func checkKubectl(t *testing.T, line string, args []string, cwd, namespace string, created map[string][]string) {
	t.Helper()
	ns := ""
	var rest []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-n" && i+1 < len(args):
			ns = args[i+1]
			i++
		case strings.HasPrefix(args[i], "--namespace="):
			ns = strings.TrimPrefix(args[i], "--namespace=")
		default:
			rest = append(rest, args[i])
		}
	}
	if ns != "" && ns != namespace {
		t.Errorf("%q: namespace %s, the manifests use %s", line, ns, namespace)
	}
	if len(rest) == 0 {
		return
	}
	switch {
	case rest[0] == "apply":
		for i, a := range rest {
			if (a == "-k" || a == "-f") && i+1 < len(rest) {
				if _, err := os.Stat(filepath.Join(cwd, rest[i+1])); err != nil {
					t.Errorf("%q: %s %s does not exist from %s", line, a, rest[i+1], cwd)
				}
			}
		}
	case rest[0] == "create" && len(rest) >= 3:
		var kind, name string
		var flags []string
		switch {
		case rest[1] == "configmap":
			kind, name, flags = "configmap", rest[2], rest[3:]
		case rest[1] == "secret" && len(rest) >= 4 && rest[2] == "generic":
			kind, name, flags = "secret", rest[3], rest[4:]
		case rest[1] == "namespace":
			if rest[2] != namespace {
				t.Errorf("%q: creates namespace %s, the manifests use %s", line, rest[2], namespace)
			}
			return
		default:
			return
		}
		if ns == "" {
			t.Errorf("%q: no -n %s: it would land in the current namespace", line, namespace)
		}
		var keys []string
		for _, fl := range flags {
			spec, ok := strings.CutPrefix(fl, "--from-file=")
			if !ok {
				continue
			}
			key, _, _ := strings.Cut(spec, "=")
			keys = append(keys, filepath.Base(key))
		}
		created[kind+"/"+name] = keys
	}
}
