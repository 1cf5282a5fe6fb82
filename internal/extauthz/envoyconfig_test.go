package extauthz

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// The packages whose types the config's typed_config Anys name: imported
// so that protojson's registry resolves each of them.
var (
	_ = routerv3.Router{}
	_ = upstreamhttpv3.HttpProtocolOptions{}
)

// deployGRPCAddr is the address deploy/envoy/envoy.yaml sends checks to,
// and docs/ENVOY.md starts verifierd with.
const deployGRPCAddr = "127.0.0.1:9191"

// envoySettings are the ext_authz filter settings that shape a
// CheckRequest; the tests build their CheckRequests from them.
type envoySettings struct {
	withBody        bool  // with_request_body present
	maxRequestBytes int64 // with_request_body.max_request_bytes
	allowPartial    bool  // with_request_body.allow_partial_message
	packAsBytes     bool  // with_request_body.pack_as_bytes
	encodeRaw       bool  // encode_raw_headers
}

// repoRoot is the module root, found from this file.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// shippedConfig parses deploy/envoy/envoy.yaml into the go-control-plane
// bootstrap proto, strictly (unknown fields and unresolvable Anys fail),
// validates it with the generated rules, and returns it with the
// ext_authz filter of its one listener.
func shippedConfig(t testing.TB) (*bootstrapv3.Bootstrap, *extauthzv3.ExtAuthz) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "envoy", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("envoy.yaml does not parse as a bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	ls := b.GetStaticResources().GetListeners()
	if len(ls) != 1 {
		t.Fatalf("envoy.yaml has %d listeners, want 1", len(ls))
	}
	var hcm hcmv3.HttpConnectionManager
	fs := ls[0].GetFilterChains()
	if len(fs) != 1 || len(fs[0].GetFilters()) != 1 {
		t.Fatal("envoy.yaml: want one filter chain with one filter")
	}
	if err := fs[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatalf("envoy.yaml: the listener's filter is not an http_connection_manager: %v", err)
	}
	if err := hcm.ValidateAll(); err != nil {
		t.Fatalf("envoy.yaml http_connection_manager: %v", err)
	}
	var az *extauthzv3.ExtAuthz
	filters := hcm.GetHttpFilters()
	for i, f := range filters {
		var x extauthzv3.ExtAuthz
		if f.GetTypedConfig().MessageIs(&x) {
			if err := f.GetTypedConfig().UnmarshalTo(&x); err != nil {
				t.Fatal(err)
			}
			if err := x.ValidateAll(); err != nil {
				t.Fatalf("envoy.yaml ext_authz: %v", err)
			}
			if i == len(filters)-1 {
				t.Fatal("envoy.yaml: ext_authz is the last http filter; the router must follow it")
			}
			az = &x
		}
		var r routerv3.Router
		if f.GetTypedConfig().MessageIs(&r) && i != len(filters)-1 {
			t.Fatal("envoy.yaml: the router is not the last http filter")
		}
	}
	if az == nil {
		t.Fatal("envoy.yaml has no ext_authz http filter")
	}
	// The path must reach verifierd and the app unchanged.
	if hcm.GetNormalizePath().GetValue() || hcm.GetMergeSlashes() ||
		hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_KEEP_UNCHANGED {
		t.Error("envoy.yaml rewrites paths (normalize_path, merge_slashes, path_with_escaped_slashes_action): the app would read another path than the one verified")
	}
	if !hcm.GetUseRemoteAddress().GetValue() {
		t.Error("envoy.yaml: use_remote_address off: X-Forwarded-For and -Proto would be the caller's, and verifierd leaves them to Envoy")
	}
	return &b, az
}

// settingsOf reads the CheckRequest-shaping settings of an ext_authz filter.
func settingsOf(az *extauthzv3.ExtAuthz) envoySettings {
	s := envoySettings{encodeRaw: az.GetEncodeRawHeaders()}
	if wb := az.GetWithRequestBody(); wb != nil {
		s.withBody = true
		s.maxRequestBytes = int64(wb.GetMaxRequestBytes())
		s.allowPartial = wb.GetAllowPartialMessage()
		s.packAsBytes = wb.GetPackAsBytes()
	}
	return s
}

// shippedSettings is settingsOf the shipped config.
func shippedSettings(t testing.TB) envoySettings {
	t.Helper()
	_, az := shippedConfig(t)
	return settingsOf(az)
}

// TestShippedEnvoyConfig: deploy/envoy/envoy.yaml is a complete bootstrap
// (every typed_config resolves, the generated validation rules pass), its
// ext_authz filter has what verifierd relies on (raw body, raw headers,
// fail closed, a body limit equal to the default --max-body-bytes) and
// sends its checks over gRPC to the address the docs start verifierd on.
func TestShippedEnvoyConfig(t *testing.T) {
	b, az := shippedConfig(t)
	s := settingsOf(az)
	if !s.withBody || !s.packAsBytes || !s.encodeRaw {
		t.Errorf("ext_authz settings = %+v; want with_request_body with pack_as_bytes, and encode_raw_headers", s)
	}
	if s.maxRequestBytes != 1<<20 {
		t.Errorf("max_request_bytes = %d, want 1048576 (verifierd's default --max-body-bytes)", s.maxRequestBytes)
	}
	if az.GetFailureModeAllow() {
		t.Error("failure_mode_allow: Envoy would allow requests verifierd never saw")
	}
	if !az.GetValidateMutations() {
		t.Error("validate_mutations off: a context header value that is not a valid field would be set as it is")
	}
	if az.GetClearRouteCache() {
		t.Error("clear_route_cache: the context headers verifierd sets could re-route the request")
	}
	cluster := az.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if cluster == "" {
		t.Fatal("ext_authz does not use envoy_grpc: want the gRPC service on verifierd's --grpc-listen")
	}
	var target *clusterv3.Cluster
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == cluster {
			target = c
		}
	}
	if target == nil {
		t.Fatalf("no cluster %q", cluster)
	}
	var eps []string
	for _, le := range target.GetLoadAssignment().GetEndpoints() {
		for _, ep := range le.GetLbEndpoints() {
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			eps = append(eps, sa.GetAddress()+":"+strconv.FormatUint(uint64(sa.GetPortValue()), 10))
		}
	}
	if len(eps) != 1 || eps[0] != deployGRPCAddr {
		t.Errorf("cluster %s endpoints = %v, want [%s]", cluster, eps, deployGRPCAddr)
	}
	var po upstreamhttpv3.HttpProtocolOptions
	opts := target.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if opts == nil || opts.UnmarshalTo(&po) != nil || po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster %s does not speak HTTP/2: gRPC needs it", cluster)
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "ENVOY.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "--grpc-listen "+deployGRPCAddr) {
		t.Errorf("docs/ENVOY.md does not start verifierd with --grpc-listen %s, the address envoy.yaml uses", deployGRPCAddr)
	}
}
