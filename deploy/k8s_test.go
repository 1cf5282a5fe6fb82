package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/tpcluster/tpcluster/internal/conformance"
	"github.com/tpcluster/tpcluster/internal/natsauth"
)

// The manifests and the Dockerfile are validated statically: there is no
// container engine or cluster here.

// object is one rendered Kubernetes object, decoded from JSON into the few
// fields the checks read.
type object struct {
	Kind     string
	Metadata struct {
		Name   string
		Labels map[string]string
	}
	Spec struct {
		Replicas    *int
		ServiceName string
		ClusterIP   string `json:"clusterIP"`
		Selector    json.RawMessage
		Template    struct {
			Metadata struct{ Labels map[string]string }
			Spec     podSpec
		}
		VolumeClaimTemplates []struct{ Metadata struct{ Name string } }
		ScaleTargetRef       struct{ Kind, Name string }
		MinReplicas          *int
		JobTemplate          struct { // CronJob
			Spec struct {
				Template struct {
					Metadata struct{ Labels map[string]string }
					Spec     podSpec
				}
			}
		}
		ConcurrencyPolicy string
	}
}

// pod returns the pod template of a workload (Deployment, StatefulSet,
// Job, CronJob) and whether o is one.
func (o object) pod() (podSpec, bool) {
	switch o.Kind {
	case "Deployment", "StatefulSet", "Job":
		return o.Spec.Template.Spec, true
	case "CronJob":
		return o.Spec.JobTemplate.Spec.Template.Spec, true
	}
	return podSpec{}, false
}

// env returns the literal value of variable name in c.
func (c container) env(name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, len(e.ValueFrom) == 0
		}
	}
	return "", false
}

type podSpec struct {
	SecurityContext struct {
		RunAsNonRoot *bool
		RunAsUser    *int64
	}
	InitContainers []container
	Containers     []container
	Volumes        []struct {
		Name                  string
		ConfigMap             *struct{ Name string } `json:"configMap"`
		Secret                *struct{ SecretName string }
		EmptyDir              *struct{}                   `json:"emptyDir"`
		PersistentVolumeClaim *struct{ ClaimName string } `json:"persistentVolumeClaim"`
	}
}

type probe struct {
	HTTPGet *struct {
		Path string
		Port any
	} `json:"httpGet"`
	Exec *struct{ Command []string }
}

type container struct {
	Name    string
	Image   string
	Command []string
	Args    []string
	Env     []struct {
		Name      string
		Value     string
		ValueFrom json.RawMessage `json:"valueFrom"`
	}
	Ports []struct {
		Name          string
		ContainerPort int
	}
	ReadinessProbe, LivenessProbe, StartupProbe *probe
	Resources                                   struct {
		Requests map[string]string
		Limits   map[string]string
	}
	SecurityContext *struct {
		RunAsNonRoot             *bool
		ReadOnlyRootFilesystem   *bool
		AllowPrivilegeEscalation *bool
	}
	VolumeMounts []struct{ Name, MountPath string }
}

// render builds deploy/k8s with the kustomize library, as `kubectl
// kustomize deploy/k8s` does.
func render(t *testing.T) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(conformance.ModuleRoot(t), "deploy", "k8s"))
	if err != nil {
		t.Fatalf("kustomize deploy/k8s: %v", err)
	}
	var objs []object
	for _, r := range rm.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var o object
		if err := json.Unmarshal(b, &o); err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		objs = append(objs, o)
	}
	return objs
}

func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("rendered manifests have no %s %s", kind, name)
	return object{}
}

// TestKustomizeRenders: kubectl, where installed, renders the same objects
// as the library.
func TestKustomizeRenders(t *testing.T) {
	objs := render(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Logf("kubectl not installed; rendered with the kustomize library only (%d objects)", len(objs))
		return
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(conformance.ModuleRoot(t), "deploy", "k8s")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/k8s: %v\n%s", err, out)
	}
	if n := len(regexp.MustCompile(`(?m)^kind: `).FindAll(out, -1)); n != len(objs) {
		t.Errorf("kubectl kustomize rendered %d objects, the library %d", n, len(objs))
	}
}

// TestManifestShape checks the workloads a Kubernetes deployment needs.
func TestManifestShape(t *testing.T) {
	objs := render(t)

	v := find(t, objs, "StatefulSet", "tpcluster-verifierd")
	find(t, objs, "Service", "tpcluster-verifierd")
	find(t, objs, "PodDisruptionBudget", "tpcluster-verifierd")
	hpa := find(t, objs, "HorizontalPodAutoscaler", "tpcluster-verifierd")
	if hpa.Spec.ScaleTargetRef.Kind != "StatefulSet" || hpa.Spec.ScaleTargetRef.Name != v.Metadata.Name {
		t.Errorf("HPA scales %s %s", hpa.Spec.ScaleTargetRef.Kind, hpa.Spec.ScaleTargetRef.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		t.Error("HPA minReplicas must keep at least two verifiers")
	}
	vc := v.Spec.Template.Spec.Containers[0]
	probePath := func(p *probe) string {
		if p == nil || p.HTTPGet == nil {
			return "(no httpGet probe)"
		}
		return p.HTTPGet.Path
	}
	if got := probePath(vc.ReadinessProbe); got != "/_tp/readyz" {
		t.Errorf("verifierd readiness probe = %s, want httpGet /_tp/readyz", got)
	}
	if got := probePath(vc.LivenessProbe); got != "/_tp/healthz" {
		t.Errorf("verifierd liveness probe = %s, want httpGet /_tp/healthz", got)
	}

	nats := find(t, objs, "StatefulSet", "tpcluster-nats")
	if nats.Spec.Replicas == nil || *nats.Spec.Replicas != 3 {
		t.Errorf("NATS StatefulSet replicas = %v, want 3", nats.Spec.Replicas)
	}
	if len(nats.Spec.VolumeClaimTemplates) == 0 {
		t.Error("NATS StatefulSet has no persistent volume claim template")
	}
	if hs := find(t, objs, "Service", nats.Spec.ServiceName); hs.Spec.ClusterIP != "None" {
		t.Errorf("NATS serviceName %s is not headless", nats.Spec.ServiceName)
	}

	bp := find(t, objs, "Deployment", "tpcluster-bundlepub")
	bc := bp.Spec.Template.Spec.Containers[0]
	if len(bc.Command) < 2 || path.Base(bc.Command[0]) != "bundlepub" || bc.Command[1] != "publish" {
		t.Errorf("bundlepub command = %q, want bundlepub publish", bc.Command)
	}
	envs := map[string]string{}
	for _, e := range bc.Env {
		envs[e.Name] = e.Value
	}
	if envs["TPCLUSTER_BEACON_KEY"] == "" {
		t.Error("bundlepub publishes no beacons: TPCLUSTER_BEACON_KEY unset")
	}
	usesSecret := false
	for _, vol := range bp.Spec.Template.Spec.Volumes {
		usesSecret = usesSecret || vol.Secret != nil
	}
	if !usesSecret {
		t.Error("bundlepub takes its beacon key from no Secret")
	}
}

// TestManifestSecurity: every pod runs non-root, every container with a
// read-only root file system, no privilege escalation and resources set.
func TestManifestSecurity(t *testing.T) {
	for _, o := range render(t) {
		ps, ok := o.pod()
		if !ok {
			continue
		}
		podNonRoot := ps.SecurityContext.RunAsNonRoot != nil && *ps.SecurityContext.RunAsNonRoot
		if !podNonRoot {
			t.Errorf("%s %s: pod securityContext.runAsNonRoot not true", o.Kind, o.Metadata.Name)
		}
		if u := ps.SecurityContext.RunAsUser; u == nil || *u == 0 {
			t.Errorf("%s %s: pod securityContext.runAsUser must be a non-zero uid", o.Kind, o.Metadata.Name)
		}
		for _, c := range slices.Concat(ps.InitContainers, ps.Containers) {
			where := fmt.Sprintf("%s %s container %s", o.Kind, o.Metadata.Name, c.Name)
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("%s: no securityContext", where)
				continue
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("%s: readOnlyRootFilesystem not true", where)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("%s: allowPrivilegeEscalation not false", where)
			case !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot):
				t.Errorf("%s: runAsNonRoot not true", where)
			}
			if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
				t.Errorf("%s: resources must set cpu and memory requests and a memory limit", where)
			}
			volumes := map[string]bool{}
			for _, vol := range ps.Volumes {
				volumes[vol.Name] = true
			}
			for _, vc := range o.Spec.VolumeClaimTemplates {
				volumes[vc.Metadata.Name] = true
			}
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s: mounts undeclared volume %s", where, m.Name)
				}
			}
		}
	}
}

// TestManifestFlags: every flag and TPCLUSTER_* variable the manifests pass
// to our binaries exists in that binary (or subcommand), with a value of
// the flag's type, and every binary a manifest runs is one the image holds.
func TestManifestFlags(t *testing.T) {
	objs := render(t)
	image := readDockerfile(t)
	for _, o := range objs {
		ps, ok := o.pod()
		if !ok {
			continue
		}
		for _, c := range ps.Containers {
			if !strings.HasPrefix(c.Image, "tpcluster") {
				continue
			}
			where := fmt.Sprintf("%s %s container %s", o.Kind, o.Metadata.Name, c.Name)
			argv := slices.Concat(c.Command, c.Args)
			if len(c.Command) == 0 {
				argv = slices.Concat(image.entrypoint, c.Args)
			}
			if len(argv) == 0 {
				t.Errorf("%s: runs nothing", where)
				continue
			}
			if !slices.Contains(image.binaries, argv[0]) {
				t.Errorf("%s: runs %s, which the Dockerfile does not put in the image (%q)", where, argv[0], image.binaries)
				continue
			}
			bin := path.Base(argv[0])
			args := argv[1:]
			var sub []string
			if (bin == "bundlepub" || bin == "tpaudit" || bin == "tpnats") && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
				sub, args = args[:1], args[1:]
			}
			flags := flagsOf(t, bin, sub...)
			for i := 0; i < len(args); i++ {
				name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
				if !strings.HasPrefix(args[i], "-") {
					t.Errorf("%s: unexpected argument %q", where, args[i])
					continue
				}
				typ, ok := flags[name]
				if !ok {
					t.Errorf("%s: %s %s has no flag -%s", where, bin, strings.Join(sub, " "), name)
					continue
				}
				if !hasValue && typ != "bool" && i+1 < len(args) {
					i++
					value, hasValue = args[i], true
				}
				if hasValue {
					checkValue(t, where, "-"+name, typ, value)
				}
			}
			for _, e := range c.Env {
				if !strings.HasPrefix(e.Name, "TPCLUSTER_") {
					if bin != "nats-server" && e.Name != "GOMEMLIMIT" {
						t.Errorf("%s: variable %s is read by none of our binaries", where, e.Name)
					}
					continue
				}
				name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(e.Name, "TPCLUSTER_")), "_", "-")
				typ, ok := flags[name]
				if !ok {
					t.Errorf("%s: %s %s has no flag -%s for %s", where, bin, strings.Join(sub, " "), name, e.Name)
					continue
				}
				if len(e.ValueFrom) == 0 {
					checkValue(t, where, e.Name, typ, e.Value)
				}
			}
		}
	}
}

func checkValue(t *testing.T, where, name, typ, value string) {
	t.Helper()
	var err error
	switch typ {
	case "duration":
		_, err = time.ParseDuration(value)
	case "int", "int64", "uint", "uint64":
		_, err = strconv.ParseInt(value, 10, 64)
	case "bool":
		_, err = strconv.ParseBool(value)
	}
	if err != nil {
		t.Errorf("%s: %s=%q is not a %s", where, name, value, typ)
	}
}

var binaries = struct {
	once sync.Once
	dir  string
	err  error
}{}

// builtBinary builds verifierd, bundlepub, tpaudit, tpnats and nats-server once per test
// process and returns the path of name.
func builtBinary(t *testing.T, name string) string {
	t.Helper()
	binaries.once.Do(func() {
		binaries.dir, binaries.err = os.MkdirTemp("", "tpcluster-deploy-bin-")
		if binaries.err != nil {
			return
		}
		for _, pkg := range []string{"./cmd/verifierd", "./cmd/bundlepub", "./cmd/tpaudit", "./cmd/tpnats", "github.com/nats-io/nats-server/v2"} {
			cmd := exec.Command("go", "build", "-o", binaries.dir+string(os.PathSeparator), pkg)
			cmd.Dir = conformance.ModuleRoot(t)
			if out, err := cmd.CombinedOutput(); err != nil {
				binaries.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return filepath.Join(binaries.dir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// flagLine matches a flag in Go's flag.PrintDefaults output: "  -name type".
var flagLine = regexp.MustCompile(`(?m)^  -([a-z0-9][a-z0-9-]*)(?: ([a-z0-9]+))?`)

// flagsOf parses `bin [sub] -h` into flag name → type ("bool" when the
// help names no type; "value" for lists).
func flagsOf(t *testing.T, bin string, sub ...string) map[string]string {
	t.Helper()
	if bin == "nats-server" {
		return natsServerFlags(t)
	}
	cmd := exec.Command(builtBinary(t, bin), append(sub, "-h")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no TPCLUSTER_* from the test's environment
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s -h: %v\n%s", bin, strings.Join(sub, " "), err, out)
	}
	flags := map[string]string{}
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		typ := m[2]
		if typ == "" {
			typ = "bool"
		}
		flags[m[1]] = typ
	}
	if len(flags) == 0 {
		t.Fatalf("%s %s -h lists no flags:\n%s", bin, strings.Join(sub, " "), out)
	}
	return flags
}

// natsServerFlags lists the long options nats-server's help names.
func natsServerFlags(t *testing.T) map[string]string {
	t.Helper()
	out, _ := exec.Command(builtBinary(t, "nats-server"), "--help").CombinedOutput()
	flags := map[string]string{}
	for _, m := range regexp.MustCompile(`--([a-z][a-z_-]*)( <[a-z_]+>)?`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = "string"
		if m[2] == "" {
			flags[m[1]] = "bool"
		}
	}
	if len(flags) == 0 {
		t.Fatalf("nats-server --help lists no options:\n%s", out)
	}
	return flags
}

// TestNATSConfigs: both NATS configurations load in the nats-server that
// go.mod requires, and the Kubernetes routes name the StatefulSet's pods.
func TestNATSConfigs(t *testing.T) {
	root := conformance.ModuleRoot(t)
	bin := builtBinary(t, "nats-server")
	for _, tc := range []struct {
		file string
		env  []string
	}{
		{"deploy/nats/local.conf", []string{
			"TP_NATS_NAME=n1", "TP_NATS_CLIENT=127.0.0.1:4222", "TP_NATS_MONITOR=127.0.0.1:8222",
			"TP_NATS_CLUSTER=127.0.0.1:6222", `TP_NATS_ROUTES=["nats-route://127.0.0.1:6223","nats-route://127.0.0.1:6224"]`,
			"TP_NATS_STORE=" + t.TempDir(),
		}},
		{"deploy/k8s/nats.conf", []string{"POD_NAME=tpcluster-nats-0"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			file := filepath.Join(root, tc.file)
			if tc.file == "deploy/k8s/nats.conf" {
				file = k8sNATSConf(t, file)
			}
			cmd := exec.Command(bin, "-c", file, "-t")
			cmd.Env = tc.env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("nats-server -t: %v\n%s", err, out)
			}
		})
	}

	nats := find(t, render(t), "StatefulSet", "tpcluster-nats")
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range *nats.Spec.Replicas {
		route := fmt.Sprintf("nats-route://%s-%d.%s:6222", nats.Metadata.Name, i, nats.Spec.ServiceName)
		if !strings.Contains(string(conf), route) {
			t.Errorf("deploy/k8s/nats.conf lacks the route %s", route)
		}
	}
}

// k8sNATSConf lays deploy/k8s/nats.conf out as the pod sees it: the file
// in conf/, a `tpnats init` set in auth/ (the Secret), its /etc/nats/auth
// paths pointed there. It returns the copy's path.
func k8sNATSConf(t *testing.T, file string) string {
	t.Helper()
	conf, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := natsauth.Generate(natsauth.Options{Dir: filepath.Join(dir, "auth")}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "/etc/nats/auth/") {
		t.Fatalf("%s names no file of the Secret mounted at /etc/nats/auth", file)
	}
	text := strings.ReplaceAll(string(conf), "/etc/nats/auth/", filepath.Join(dir, "auth")+"/")
	out := filepath.Join(dir, "conf", "nats.conf")
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// podLabels returns the labels of o's pod template (nil for no workload).
func (o object) podLabels() map[string]string {
	if o.Kind == "CronJob" {
		return o.Spec.JobTemplate.Spec.Template.Metadata.Labels
	}
	return o.Spec.Template.Metadata.Labels
}

// image is what the Dockerfile puts in the runtime image.
type image struct {
	entrypoint []string
	binaries   []string // absolute paths
}

// readDockerfile checks the Dockerfile statically and returns what its
// runtime image holds: multi-stage, a Go builder matching go.mod, static
// binaries (CGO_ENABLED=0) of packages that exist, a minimal base, a
// non-root user, an entrypoint naming one of our commands.
func readDockerfile(t *testing.T) image {
	t.Helper()
	root := conformance.ModuleRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`\\\n`).ReplaceAllString(string(b), " ") // join continued lines
	var froms, users []string
	var img image
	built := map[string]bool{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			froms = append(froms, strings.Fields(rest)[0])
		case "USER":
			users = append(users, rest)
		case "RUN":
			for _, m := range regexp.MustCompile(`-o /out/\S* ((?:\./cmd/\S+ ?)+)`).FindAllStringSubmatch(rest, -1) {
				for pkg := range strings.FieldsSeq(m[1]) {
					if _, err := os.Stat(filepath.Join(root, pkg, "main.go")); err != nil {
						t.Errorf("Dockerfile builds %s, which has no main.go", pkg)
					}
					built[path.Base(pkg)] = true
				}
			}
			if strings.Contains(rest, "-o /out/nats-server github.com/nats-io/nats-server/v2") {
				built["nats-server"] = true
			}
		case "COPY":
			if f := strings.Fields(rest); len(f) > 2 && f[0] == "--from=build" {
				dst := f[len(f)-1]
				for _, src := range f[1 : len(f)-1] {
					name := path.Base(src)
					if !built[name] {
						t.Errorf("Dockerfile copies %s, which it does not build", src)
					}
					img.binaries = append(img.binaries, path.Join(dst, name))
				}
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &img.entrypoint); err != nil || len(img.entrypoint) == 0 {
				t.Errorf("ENTRYPOINT %s: want the exec (JSON array) form", rest)
			}
		}
	}
	if !strings.Contains(text, "CGO_ENABLED=0") {
		t.Error("Dockerfile does not build with CGO_ENABLED=0 (static binaries)")
	}
	if len(froms) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a runtime stage", len(froms))
	}
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	if !strings.HasPrefix(froms[0], "golang:"+string(goVer[1])) {
		t.Errorf("build stage %s does not match go.mod's go %s", froms[0], goVer[1])
	}
	final := froms[len(froms)-1]
	if final != "scratch" && !(strings.HasPrefix(final, "gcr.io/distroless/static") && strings.HasSuffix(final, ":nonroot")) {
		t.Errorf("runtime base %s: want scratch or gcr.io/distroless/static...:nonroot", final)
	}
	if len(users) == 0 {
		t.Error("Dockerfile sets no USER")
	} else if u := users[len(users)-1]; u == "root" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root:") {
		t.Errorf("final USER %s is root", u)
	}
	if len(img.entrypoint) > 0 {
		ep := img.entrypoint[0]
		if _, err := os.Stat(filepath.Join(root, "cmd", path.Base(ep))); err != nil {
			t.Errorf("ENTRYPOINT %s names no command under cmd/", ep)
		}
		if !slices.Contains(img.binaries, ep) {
			t.Errorf("ENTRYPOINT %s is not copied into the image", ep)
		}
	}

	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**/*.key", ".git"} {
		if !slices.Contains(strings.Fields(string(ignore)), want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
	return img
}

// TestDockerfile runs the static checks on their own, so a failure names
// the Dockerfile even when no manifest uses the image.
func TestDockerfile(t *testing.T) {
	img := readDockerfile(t)
	for _, want := range []string{"/usr/local/bin/verifierd", "/usr/local/bin/bundlepub", "/usr/local/bin/tpaudit", "/usr/local/bin/nats-server"} {
		if !slices.Contains(img.binaries, want) {
			t.Errorf("image lacks %s (deploy/k8s runs it)", want)
		}
	}
}
