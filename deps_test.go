package tpcluster_test

import (
	"os"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

const module = "github.com/tpcluster/tpcluster"

func in(name string) string { return module + "/internal/" + name }

// Paths the rows below deny or allow more than once.
const (
	natsGo     = "github.com/nats-io/nats.go"
	natsServer = "github.com/nats-io/nats-server/"
	anyNATS    = "github.com/nats-io/"
	otelAPI    = "go.opentelemetry.io/otel/"
	otelSDK    = "go.opentelemetry.io/otel/sdk"
	otel       = "go.opentelemetry.io/otel"
	jcs        = "github.com/gowebpki/jcs"
	voi        = "github.com/oasisprotocol/curve25519-voi"
	uuid       = "github.com/google/uuid"
	gonumPlot  = "gonum.org/v1/plot"
	goJose     = "github.com/go-jose/go-jose/v4"
	zitadel    = "github.com/zitadel/"
)

// Reasons the rows below give more than once.
var (
	noHTTP     = deptest.Rule{Path: "net/http", Why: "HTTP is internal/proxy's job"}
	noSlog     = deptest.Rule{Path: "log/slog", Why: "it returns errors and results; adapters log (STYLE §7)"}
	noNATS     = deptest.Rule{Path: anyNATS, Why: "NATS belongs to the adapters (ledger, audit, bundlekv, natsx)"}
	noServer   = deptest.Rule{Path: natsServer, Why: "it is a NATS client; servers are internal/natsx's job"}
	noSDK      = deptest.Rule{Path: otelSDK, Why: "packages use the OTel API with a provider from config, never the SDK (STYLE §8)"}
	noPlot     = deptest.Rule{Path: "gonum.org/", Why: "plotting is loadtest/chart's job; the shipped binaries stay small"}
	noCore     = deptest.Rule{Path: in("core"), Why: "core depends on it, or it must not know the pipeline"}
	noZitadel  = deptest.Rule{Path: zitadel, Why: "the OAuth server is the egress tests' counterpart (internal/egress/oauthtest); the shipped binaries never serve OAuth"}
	stdlibOnly = []string{}
	// bundleDeps is what internal/bundle reaches: a pure package that
	// imports bundle must be allowed all of it.
	bundleDeps = []string{in("signerclass"), in("keyfile"), in("atomicfile"), in("jsontree"), jcs}
)

// layers is STYLE §1's table for every package of the module: what each
// may import, transitively for pure packages and directly for adapters and
// commands. Test support (TestOnly) is refused to production code
// everywhere. TestLayers fails for a package without a row.
var layers = map[string]deptest.Layer{
	module: {Allow: stdlibOnly},

	// Commands build components and run them: any internal package.
	// The plotting library stays out of every binary we ship: Pure makes
	// the rule hold for everything a command reaches; Allow nil allows the rest.
	module + "/cmd/bundlepub": {Pure: true, Deny: []deptest.Rule{noPlot, noZitadel}},
	module + "/cmd/demoapi":   {Pure: true, Deny: []deptest.Rule{noPlot, noZitadel}},
	module + "/cmd/tpaudit":   {Pure: true, Deny: []deptest.Rule{noPlot, noZitadel}},
	module + "/cmd/tpcurl":    {Pure: true, Deny: []deptest.Rule{noPlot, noZitadel}},
	module + "/cmd/tpload":    {Pure: true, Deny: []deptest.Rule{noPlot, noZitadel}},
	module + "/cmd/tpnats":    {Pure: true, Deny: []deptest.Rule{noPlot, noZitadel}},
	module + "/cmd/verifierd": {Pure: true, Deny: []deptest.Rule{noPlot, noZitadel}},
	// The bench's chart renderer: reads tpload reports, writes SVG.
	module + "/loadtest/chart": {Allow: []string{gonumPlot, in("loadgen")}},

	// Pure packages: the rule holds for everything they reach.
	in("reason"):      {Pure: true, Allow: stdlibOnly},
	in("signerclass"): {Pure: true, Allow: stdlibOnly},
	in("jsontree"):    {Pure: true, Allow: stdlibOnly},
	in("retry"):       {Pure: true, Allow: stdlibOnly},
	in("atomicfile"):  {Pure: true, Allow: stdlibOnly},
	in("cliflag"):     {Pure: true, Allow: stdlibOnly},
	in("keyfile"): {Pure: true, Allow: []string{in("atomicfile")}, Deny: []deptest.Rule{
		{Path: "net/http", Why: "key files are local; an HTTP stack has no place in a key parser"},
		noSlog,
	}},
	in("transcript"): {Pure: true, Allow: stdlibOnly, Deny: []deptest.Rule{
		{Path: "net/http", Why: "transcript takes a plain header map; internal/proxy owns net/http"},
		noSlog,
	}},
	in("passport"): {Pure: true, Allow: []string{in("signerclass")}, Deny: []deptest.Rule{
		noHTTP, noSlog,
		{Path: "github.com/go-jose/", Why: "go-jose is the tests' differential oracle, not the parser"},
		{Path: "encoding/json", Why: "the hot path has its own allocation-free JSON reader"},
	}},
	in("edverify"): {Pure: true, Allow: []string{voi}, Deny: []deptest.Rule{
		noHTTP, noSlog,
	}},
	in("bundle"): {Pure: true, Allow: bundleDeps, Deny: []deptest.Rule{
		{Path: "net/http", Why: "documents arrive as bytes; fetching them is internal/bundlekv's job"},
		noSlog,
	}},
	in("bundleedit"): {Pure: true, Allow: append([]string{in("bundle")}, bundleDeps...), Deny: []deptest.Rule{
		{Path: "net/http", Why: "documents are edited offline; nothing here talks to a network"},
		noSlog,
	}},
	in("assertion"): {Pure: true, Allow: append([]string{in("bundle")}, bundleDeps...), Deny: []deptest.Rule{
		{Path: "net/http", Why: "it signs bytes; serving the JWKS is internal/proxy's job"},
		noSlog,
	}},
	module + "/backendjwt": {Pure: true, Allow: []string{"github.com/go-jose/go-jose/v4"}, Deny: []deptest.Rule{
		{Path: module + "/internal/", Why: "upstreams import it: it must not pull in the verifier"},
		noNATS,
	}},
	in("signer"): {Pure: true, Allow: []string{in("transcript"), in("passport")}, Deny: []deptest.Rule{
		{Path: in("core"), Why: "the caller side must not share code with the verifier pipeline it is used to test"},
	}},
	in("core"): {Pure: true, Allow: append([]string{in("bundle"), in("edverify"), in("passport"), in("reason"), in("transcript"), voi}, bundleDeps...), Deny: []deptest.Rule{
		{Path: "net/http", Why: "core decides; internal/proxy speaks HTTP"},
		{Path: "log/slog", Why: "core reports through Decision.Err; adapters log"},
		{Path: anyNATS, Why: "the ledger reaches core through the Ledger interface"},
		{Path: otel, Why: "internal/proxy wraps Decide in a span"},
		{Path: "google.golang.org/grpc", Why: "core decides; internal/extauthz speaks gRPC to Envoy"},
	}},
	in("readiness"): {Pure: true, Deny: []deptest.Rule{
		{Path: "net/http", Why: "proxy serves readyz; readiness only answers it"},
		{Path: anyNATS, Why: "NATS reaches readiness as a Check"},
	}},
	in("loadgen"): {Pure: true, Deny: []deptest.Rule{
		{Path: in("core"), Why: "a load generator that shares the verifier's code could share its bugs"},
		{Path: in("proxy"), Why: "a load generator that shares the verifier's code could share its bugs"},
		{Path: anyNATS, Why: "the generator has nothing to do with NATS"},
	}},

	// Adapters: the rule holds for their own imports (nats.go itself
	// imports net/http for websockets).
	// The NATS floor: raw JetStream pairs for tpload nats-floor, on
	// loadgen's schedule and figures.
	in("natsfloor"): {Allow: []string{natsGo, uuid, in("loadgen")}, Deny: []deptest.Rule{
		{Path: in("ledger"), Why: "the floor is measured against the ledger; sharing its code would hide the difference"},
		{Path: in("audit"), Why: "the floor is measured against the audit publisher; sharing its code would hide the difference"},
		noServer, noCore,
	}},
	// natsx also owns the credential flags every command shares (ClientAuth).
	in("natsx"): {Allow: []string{"github.com/nats-io/", in("cliflag")}, Deny: []deptest.Rule{noCore}},
	// natsauth writes NATS security sets (jwt, nkeys) and provisions the
	// streams of ledger, audit and bundlekv as admin.
	in("natsauth"): {Allow: []string{"github.com/nats-io/jwt/", "github.com/nats-io/nkeys", natsGo, in("ledger"), in("audit"), in("bundlekv")}, Deny: []deptest.Rule{
		noHTTP, noServer, noSDK,
		{Path: in("core"), Why: "it sets NATS up; deciding is the pipeline's job"},
	}},
	in("ledger"): {Allow: []string{natsGo, otelAPI, in("core"), in("natsx"), in("retry")}, Deny: []deptest.Rule{
		{Path: "net/http", Why: "it knows keys and TTLs, not requests; HTTP is internal/proxy's job"},
		noServer, noSDK,
	}},
	in("audit"): {Allow: []string{natsGo, otelAPI, uuid, in("reason"), in("natsx"), in("retry")}, Deny: []deptest.Rule{
		{Path: in("core"), Why: "verifierd maps decisions to events; audit must not know the pipeline"},
		noHTTP, noServer, noSDK,
	}},
	in("bundlekv"): {Allow: []string{natsGo, otelAPI, in("bundle"), in("reason"), in("audit"), in("natsx"), in("retry"), in("atomicfile")}, Deny: []deptest.Rule{
		{Path: in("core"), Why: "it serves verified documents as bundle.Snapshot; core must not be its dependency"},
		noHTTP, noServer, noSDK,
	}},
	in("nodeaudit"): {Allow: []string{natsGo, in("audit"), in("bundlekv"), in("core"), in("proxy"), in("reason"), in("retry")}, Deny: []deptest.Rule{
		{Path: "net/http", Why: "it maps proxy.Record values to events; HTTP stays in internal/proxy"},
		noServer, noSDK,
	}},
	in("bundlefile"): {Allow: []string{in("bundle")}, Deny: []deptest.Rule{noHTTP, noNATS, noCore}},
	// egress obtains provider OAuth tokens (docs/OAUTH-EGRESS.md): x/oauth2
	// for the standard grant, go-jose for client assertions.
	in("egress"): {Allow: []string{"golang.org/x/oauth2", "golang.org/x/sync/singleflight", goJose, otelAPI, in("bundle"), in("signerclass")}, Deny: []deptest.Rule{
		noNATS, noCore, noZitadel, noSDK,
	}},
	// extauthz is Envoy's face: the ext_authz gRPC types, a gRPC server,
	// and proxy's gateway path, which decides.
	in("extauthz"): {Allow: []string{"github.com/envoyproxy/go-control-plane/", "google.golang.org/grpc", "google.golang.org/genproto/googleapis/rpc/", in("core"), in("proxy"), in("reason")}, Deny: []deptest.Rule{
		{Path: anyNATS, Why: "NATS belongs to ledger, audit and bundlekv; extauthz reaches them through proxy"},
	}},
	in("proxy"): {Allow: []string{otelAPI, uuid, in("core"), in("reason"), in("audit"), in("assertion"), in("egress")}, Deny: []deptest.Rule{
		{Path: anyNATS, Why: "NATS belongs to ledger, audit and bundlekv; proxy reaches them through core and the Record hook"},
		{Path: "google.golang.org/grpc", Why: "proxy speaks HTTP; the gRPC gateway is internal/extauthz, which calls proxy"},
	}},
	in("telemetry"): {Allow: []string{otelAPI, "github.com/prometheus/"}, Deny: []deptest.Rule{noNATS, noCore}},
	in("demo"): {Allow: []string{module + "/backendjwt", in("bundle"), in("keyfile"), in("atomicfile"), in("signer"), in("transcript")}, Deny: []deptest.Rule{
		{Path: in("core"), Why: "the demo world is the caller's side and the upstream; the verifier is what it demonstrates"},
		noNATS,
	}},

	// Test support, and packages made only of tests.
	in("egress/oauthtest"): {TestOnly: true, Allow: []string{zitadel, goJose}},
	in("natsx/natstest"):   {TestOnly: true, Allow: []string{"github.com/nats-io/", in("natsx"), in("testport")}},
	in("proxy/proxytest"):  {TestOnly: true, Allow: []string{in("bundle"), in("core"), in("ledger"), in("natsx/natstest"), in("signer")}},
	in("testport"):         {TestOnly: true, Allow: stdlibOnly},
	in("conformance"):      {TestOnly: true, Allow: stdlibOnly},
	in("deptest"):          {TestOnly: true, Allow: stdlibOnly},
	in("testwait"):         {TestOnly: true, Allow: stdlibOnly},
	in("testlog"):          {TestOnly: true, Allow: stdlibOnly},
	module + "/e2e":        {TestOnly: true, Allow: stdlibOnly},
	module + "/deploy":     {TestOnly: true, Allow: stdlibOnly},
}

// TestLayers checks the whole module's imports against layers, with one
// `go list -deps -json ./...`, and that README's package table has a row for
// every package outside cmd/ (the commands have their own table).
func TestLayers(t *testing.T) {
	pkgs, err := deptest.List(".", "./...")
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, p := range pkgs {
		if !p.DepOnly {
			ours = append(ours, p.ImportPath)
		}
	}
	if len(ours) < 2 {
		t.Fatalf("go list ./... named %d packages; the check would pass vacuously", len(ours))
	}
	for _, v := range deptest.Check(module, pkgs, layers) {
		t.Error(v)
	}

	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range ours {
		rel, ok := strings.CutPrefix(path, module+"/")
		if !ok || strings.HasPrefix(rel, "cmd/") {
			continue
		}
		if !strings.Contains(string(readme), "\n| `"+rel+"` |") {
			t.Errorf("README.md's package table has no row for %s", rel)
		}
	}
}
