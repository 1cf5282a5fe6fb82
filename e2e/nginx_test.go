package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/conformance"
	"github.com/tpcluster/tpcluster/internal/testport"
)

// startNginx runs nginx with the shipped deploy/nginx auth_request config,
// its listen address and upstreams pointed at this test's processes.
func startNginx(t *testing.T, verifier, app string) string {
	t.Helper()
	return startShippedNginx(t, "tpcluster-auth-request.conf", map[string]string{
		"server 127.0.0.1:8081;": "server " + verifier + ";",
		"server 127.0.0.1:9000;": "server " + app + ";",
	}, "listen 127.0.0.1:8080;")
}

// startShippedNginx runs nginx with deploy/nginx/<name> as shipped, but for
// the replacements (each must occur) and the listen directive, which gets
// a free port. It returns the listener's base URL.
func startShippedNginx(t *testing.T, name string, repl map[string]string, listenDirective string) string {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join(conformance.ModuleRoot(t), "deploy", "nginx", name))
	if err != nil {
		t.Fatal(err)
	}
	listen := testport.Addrs(t, 1)[0]
	conf := string(shipped)
	repl[listenDirective] = "listen " + listen + ";"
	for old, repl := range repl {
		if !strings.Contains(conf, old) {
			t.Fatalf("shipped nginx config lacks %q", old)
		}
		conf = strings.Replace(conf, old, repl, 1)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tpcluster.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    include %[1]s/tpcluster.conf;
}
`, dir)
	if os.Geteuid() == 0 {
		main = "user root;\n" + main // workers must reach the temp dirs of this test
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // runs after the process stopped
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", log)
		}
	})
	// SIGQUIT: nginx's graceful stop.
	p := startProc(t, "nginx", frontDoorBinary(t, "nginx", "/usr/sbin/nginx", "nginx-light"), []string{"-p", dir, "-c", filepath.Join(dir, "nginx.conf"),
		"-e", filepath.Join(dir, "error.log"), "-g", "daemon off;"}, nil, syscall.SIGQUIT)
	base := "http://" + listen
	p.waitHTTP(t, 20*time.Second, base+"/_tp/none", true)
	return base
}

// TestNginxAuthRequest puts a real nginx with the shipped config in front of
// verifierd check mode: allowed GET and POST reach the app; a replay and
// tampering reach the caller with the real status and the SPEC §6 body.
func TestNginxAuthRequest(t *testing.T) {
	w := newWorld(t)
	up, _, gw := behindFrontDoor(t, w, startNginx)
	c := &http.Client{}

	get := w.signed(t, "GET", gw+"/v1/orders/ord_1?b=2&a=1", "orders.get", nil)
	if a := send(t, c, get); a.status != 200 {
		t.Fatalf("GET through nginx = %d %s", a.status, a.body)
	}
	got := up.last(t)
	if got.RequestURI != "/v1/orders/ord_1?b=2&a=1" {
		t.Errorf("app target = %q", got.RequestURI)
	}
	checkContext(t, got.Header, "orders.get")

	body := []byte(`{"order_id":"ord_7"}`)
	post := w.signed(t, "POST", gw+"/v1/gw/orders", "orders.gateway-create", body, "Content-Type", "application/json")
	if a := send(t, c, post); a.status != 200 {
		t.Fatalf("POST through nginx = %d %s", a.status, a.body)
	}
	if got := up.last(t); string(got.Body) != string(body) {
		t.Errorf("app body = %q, want %q", got.Body, body)
	}

	checkDenials(t, c, up, []denial{
		{"replay", clone(t, get, nil), 409, "jti_replay"},
		{"path tamper", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_2", "orders.get", nil)
			r.URL.Path = "/v1/orders/ord_3"
			return r
		}(), 401, "request_binding_mismatch"},
		{"query tamper", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_2?a=1", "orders.get", nil)
			r.URL.RawQuery = "a=2"
			return r
		}(), 401, "request_binding_mismatch"},
		{"no passport", func() *http.Request { r, _ := http.NewRequest("GET", gw+"/v1/orders/ord_2", nil); return r }(), 401, "passport_missing"},
	}, nil)
}
