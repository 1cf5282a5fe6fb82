package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/egress"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/proxy"
)

// Config is verifierd's whole configuration, from flags and TPCLUSTER_*
// variables (SPEC §10.1).
type Config struct {
	Listen              string
	Upstream            string
	RouteID             string
	AudienceOverride    string
	NodeID              string
	NATSURL             string
	NATSListen          string
	NATSAuth            natsx.ClientAuth // --nats-creds, --nats-ca, --nats-cert, --nats-key
	DataDir             string
	TrustMaterial       string
	PolicyBundle        string
	BundlePublicKeys    cliflag.List
	BeaconPublicKeys    cliflag.List
	BundleReplicas      int
	BundleReconcile     time.Duration
	DevAllowUnsigned    bool
	ClockSkew           time.Duration
	MaxPassportLifetime time.Duration
	RealtimeWindow      time.Duration
	MaxBodyBytes        int64
	MaxBodyMemoryBytes  int64
	TrustedProxies      cliflag.List
	ExternalScheme      string
	ForwardProofHeaders bool
	IgnoreHeaders       cliflag.List
	MaxHeaderCandidates int
	LedgerBucket        string
	LedgerReplicas      int
	LedgerShards        int
	LedgerShardsPrev    int
	LedgerTimeout       time.Duration
	LedgerSync          string
	ReloadInterval      time.Duration
	ShutdownTimeout     time.Duration
	ShutdownDelay       time.Duration
	ReadHeaderTimeout   time.Duration
	ReadTimeout         time.Duration
	WriteTimeout        time.Duration
	IdleTimeout         time.Duration
	MaxHeaderBytes      int
	LogLevel            string
	LogFormat           string
	Demo                bool
	Region              string
	PprofListen         string
	GRPCListen          string

	// Audit (SPEC §9).
	AuditSpoolDir      string
	AuditSpoolMaxBytes int64
	AuditSyncInterval  time.Duration
	AuditStream        string
	AuditReplicas      int
	AuditMaxAge        time.Duration
	AuditMaxBytes      int64
	AuditWindow        int
	AuditFlushTimeout  time.Duration
	// AuditKey is the node's audit private key file (docs/AUDIT.md).
	AuditKey                string
	AuditCheckpointInterval time.Duration
	// ReadyMaxAuditPending is how many audit events may await JetStream's
	// acknowledgement before readyz says 503.
	ReadyMaxAuditPending int64

	// AssertionKey is this node's backend assertion key files (the first
	// signs unless the trust material lists another of them active: a
	// rotation needs no restart), AssertionIssuer the fleet's issuer name,
	// AssertionPublicKeys the fleet's other assertion keys for the JWKS
	// (docs/BACKEND-JWT.md). AssertionKeyDir, instead of AssertionKey, is
	// a directory whose NAME.key files are the node's keys, re-read when a
	// trust material is applied and on SIGHUP: a rotation with no restart.
	AssertionKey        cliflag.List
	AssertionKeyDir     string
	AssertionIssuer     string
	AssertionPublicKeys cliflag.List

	// EgressSecret and EgressKey name, per provider id (PROVIDER=FILE),
	// the client secret and private_key_jwt key files of the OAuth egress
	// tier; EgressTimeout bounds one token request (docs/OAUTH-EGRESS.md).
	EgressSecret  cliflag.List
	EgressKey     cliflag.List
	EgressTimeout time.Duration

	// Derived by Validate.
	trustedProxies []netip.Prefix
	upstreamURL    *url.URL
}

// parseConfig reads args and the environment. It returns flag.ErrHelp for
// -h.
func parseConfig(args []string, lookup func(string) (string, bool), out io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("verifierd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Listen, "listen", ":8081", "HTTP listen address")
	fs.StringVar(&c.Upstream, "upstream", "", "proxy mode: forward allowed requests to this URL (empty: check mode only)")
	fs.StringVar(&c.RouteID, "route-id", "", "pin every request of this listener to one route")
	fs.StringVar(&c.AudienceOverride, "audience-override", "", "the audience every route expects, in place of the bundle's")
	fs.StringVar(&c.NodeID, "node-id", "", "node id in audit events and the ledger (default <hostname>:<listen port>)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "join an existing NATS cluster (comma list); empty starts an embedded server")
	fs.StringVar(&c.NATSListen, "nats-listen", "127.0.0.1:4222", "embedded NATS client listener (loopback only; clients need the credentials in <data-dir>/nats-auth)")
	c.NATSAuth.RegisterFlags(fs)
	fs.StringVar(&c.DataDir, "data-dir", "./data", "embedded NATS storage and local state")
	fs.StringVar(&c.TrustMaterial, "trust-material", "", "trust material file (file mode)")
	fs.StringVar(&c.PolicyBundle, "policy-bundle", "", "policy bundle file (file mode)")
	fs.Var(&c.BundlePublicKeys, "bundle-public-key", "accepted bundle-signing public key file (repeatable)")
	fs.Var(&c.BeaconPublicKeys, "beacon-public-key", "NATS mode: accepted freshness beacon public key file (repeatable)")
	fs.IntVar(&c.BundleReplicas, "bundle-replicas", 1, "NATS mode: bundle bucket replicas if this node creates it (3 in a cluster)")
	fs.DurationVar(&c.BundleReconcile, "bundle-reconcile-interval", 10*time.Second, "NATS mode: how often each bundle key is read directly besides the watch (at most 30s)")
	fs.BoolVar(&c.DevAllowUnsigned, "dev-allow-unsigned-bundles", false, "DEVELOPMENT ONLY: load unsigned bundles")
	fs.DurationVar(&c.ClockSkew, "clock-skew", 30*time.Second, "accepted passport clock skew")
	fs.DurationVar(&c.MaxPassportLifetime, "max-passport-lifetime", 900*time.Second, "longest accepted exp - iat")
	fs.DurationVar(&c.RealtimeWindow, "realtime-window", 5*time.Second, "how old a realtime route's policy view may be")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 1<<20, "largest accepted request body")
	fs.Int64Var(&c.MaxBodyMemoryBytes, "max-body-memory-bytes", proxy.DefaultMaxBodyMemoryBytes,
		"request body bytes buffered at once across all requests; beyond it requests get 503 verifier_overloaded")
	fs.Var(&c.TrustedProxies, "trusted-proxies", "CIDRs whose X-Forwarded-* are honoured and who may call /_tp/check (default 127.0.0.1/32,::1/128)")
	fs.StringVar(&c.ExternalScheme, "external-scheme", "", "scheme of every request (plain listener behind a TLS terminator)")
	fs.BoolVar(&c.ForwardProofHeaders, "forward-proof-headers", false, "forward Authorization and the proof headers upstream")
	fs.Var(&c.IgnoreHeaders, "ignore-headers", "header names never taken as covered (repeatable)")
	fs.IntVar(&c.MaxHeaderCandidates, "max-header-candidates", 256, "bound of the covered-header search")
	fs.StringVar(&c.LedgerBucket, "ledger-bucket", "TRUSTPLANE_REPLAY", "replay ledger KV bucket")
	fs.IntVar(&c.LedgerReplicas, "ledger-replicas", 1, "replay ledger replicas (3 in a cluster)")
	fs.IntVar(&c.LedgerShards, "ledger-shards", 1, "replay ledger buckets, each with its own stream leader: <bucket> for 1, <bucket>_s0.. otherwise (docs/LEDGER-SHARDS.md)")
	fs.IntVar(&c.LedgerShardsPrev, "ledger-shards-previous", 0, "during a reshard, the --ledger-shards the fleet is leaving: consumes write into both layouts (docs/LEDGER-SHARDS.md); 0 outside one")
	fs.DurationVar(&c.LedgerTimeout, "ledger-timeout", 2*time.Second, "bound of one ledger write")
	// An acknowledged ledger write or audit event must survive
	// an OS crash or power loss (docs/OPERATIONS.md, "Durability").
	fs.StringVar(&c.LedgerSync, "ledger-sync", "always", "embedded server fsync: always (before each acknowledgement) or default (every 2 minutes)")
	fs.DurationVar(&c.ReloadInterval, "reload-interval", time.Second, "how often bundle files are checked for changes")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "drain deadline on shutdown")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", 0, "on shutdown, keep serving this long with /_tp/readyz answering 503 before the listener closes, so load balancers stop sending first")
	fs.StringVar(&c.AuditSpoolDir, "audit-spool-dir", "", "audit write-ahead log directory (default <data-dir>/audit)")
	fs.Int64Var(&c.AuditSpoolMaxBytes, "audit-spool-max-bytes", 1<<30, "audit spool size limit; when full every request is denied audit_unavailable")
	fs.Int64Var(&c.ReadyMaxAuditPending, "ready-max-audit-pending", 4096, "readyz says 503 (audit_spool) while more audit events than this await the audit stream's acknowledgement")
	fs.DurationVar(&c.AuditSyncInterval, "audit-sync-interval", 20*time.Millisecond, "audit spool fsync batch: an OS crash loses at most this much")
	fs.StringVar(&c.AuditStream, "audit-stream", "TRUSTPLANE_AUDIT", "audit JetStream stream")
	fs.IntVar(&c.AuditReplicas, "audit-replicas", 1, "audit stream replicas (3 in a cluster)")
	fs.DurationVar(&c.AuditMaxAge, "audit-max-age", 30*24*time.Hour, "audit stream retention by age")
	// JetStream reserves a stream's max bytes on every replica's server and
	// refuses the stream if that exceeds max_file_store (audit.DefaultMaxBytes).
	fs.Int64Var(&c.AuditMaxBytes, "audit-max-bytes", audit.DefaultMaxBytes, "audit stream retention by size, reserved on each replica's server: at most half its max_file_store (-1: unlimited)")
	fs.IntVar(&c.AuditWindow, "audit-publish-window", 256, "audit publishes awaiting an acknowledgement at once")
	fs.DurationVar(&c.AuditFlushTimeout, "audit-flush-timeout", 5*time.Second, "on shutdown, how long to wait for the spool to reach NATS before leaving it on disk")
	fs.StringVar(&c.AuditKey, "audit-key", "", "this node's audit private key file (0600, bundlepub keygen): signs every audit event and checkpoint; its public key is listed in the trust material's audit_nodes")
	fs.Var(&c.AssertionKey, "assertion-key", "this node's backend assertion private key file (0600, bundlepub keygen): signs the X-TrustPlane-Assertion of routes with backend_assertion; repeatable during a rotation, the key the trust material lists active signs (docs/BACKEND-JWT.md)")
	fs.StringVar(&c.AssertionKeyDir, "assertion-key-dir", "", "directory whose NAME.key files (0600, bundlepub keygen) are this node's backend assertion keys, re-read when a trust material is applied and on SIGHUP, so a key rotation needs no restart; instead of --assertion-key (docs/BACKEND-JWT.md)")
	fs.StringVar(&c.AssertionIssuer, "assertion-issuer", "", "the fleet's backend assertion issuer (iss); required with --assertion-key or --assertion-key-dir")
	fs.Var(&c.AssertionPublicKeys, "assertion-public-key", "another fleet assertion public key for /_tp/jwks.json: other nodes', next, retired (repeatable; give every node the same list)")
	fs.Var(&c.EgressSecret, "egress-secret", "PROVIDER=FILE: the OAuth client secret (0600 file) for an egress provider with client_secret_basic or client_secret_post (repeatable; docs/OAUTH-EGRESS.md)")
	fs.Var(&c.EgressKey, "egress-key", "PROVIDER=FILE: the PEM PKCS #8 private key (0600 file; RSA, P-256 or Ed25519) for an egress provider with private_key_jwt (repeatable)")
	fs.DurationVar(&c.EgressTimeout, "egress-timeout", egress.DefaultTimeout, "bound of one OAuth token request to an egress provider")
	fs.DurationVar(&c.AuditCheckpointInterval, "audit-checkpoint-interval", 30*time.Second, "how often the node publishes a signed checkpoint of its audit chain head")
	// A slow or huge client must not pin a node: every phase of a
	// request is bounded.
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "bound on reading request headers")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 60*time.Second, "bound on reading a whole request, body included")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 90*time.Second, "bound on writing a response (upstream time included)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 120*time.Second, "how long an idle keep-alive connection stays open")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest accepted request header block")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text (key=value) or json (one JSON object a line)")
	fs.StringVar(&c.GRPCListen, "grpc-listen", "", "serve Envoy ext_authz v3 gRPC (envoy.service.auth.v3.Authorization) on this address; peers must be in --trusted-proxies; empty: off (docs/ENVOY.md)")
	fs.StringVar(&c.PprofListen, "pprof-listen", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); empty: off")
	fs.StringVar(&c.Region, "region", "", "this node's region: applies the policy's audience_regions and names the ledger bucket (docs/MULTI-REGION.md)")
	fs.BoolVar(&c.Demo, "demo", false, "first run: demo keys, bundle and upstream under --data-dir, then a signed request and its replay")
	version := fs.Bool("version", false, "print the version and the commit it was built from, and exit")
	err := cliflag.Parse(fs, args, lookup)
	if errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	if *version {
		fmt.Fprintln(out, cliflag.Version("verifierd"))
		return nil, errVersion
	}
	if fs.NArg() > 0 {
		err = errors.Join(err, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	return c, err
}

// errVersion is parseConfig's answer to --version, which it printed.
var errVersion = errors.New("version printed")

// configure reads and checks the whole configuration before anything
// starts: flags and variables, Validate, then the files it names. It
// returns every problem at once; main exits 2 on any.
func configure(args []string, lookup func(string) (string, bool), out io.Writer) (*Config, error) {
	c, err := parseConfig(args, lookup, out)
	if c == nil {
		return nil, err
	}
	return c, errors.Join(err, c.Validate(), c.checkFiles())
}

// checkFiles reads every file the configuration names, so a missing or
// unreadable key or bundle stops the node before its embedded NATS server
// listens (--demo writes its own later).
func (c *Config) checkFiles() error {
	var errs []error
	for _, k := range []struct {
		name  string
		paths []string
	}{{"bundle-public-key", c.BundlePublicKeys}, {"beacon-public-key", c.BeaconPublicKeys}} {
		for _, p := range k.paths {
			if _, err := keyfile.ReadPublic(p); err != nil {
				errs = append(errs, cliflag.Problem(k.name, p, err.Error()))
			}
		}
	}
	if _, err := c.readEgressCredentials(); err != nil {
		errs = append(errs, err)
	}
	if c.AssertionKeyDir != "" {
		if _, _, err := readAssertionKeyDir(c.AssertionKeyDir); err != nil {
			errs = append(errs, cliflag.Problem("assertion-key-dir", c.AssertionKeyDir, err.Error()))
		}
	}
	if c.AuditKey != "" {
		if _, err := keyfile.ReadPrivate(c.AuditKey); err != nil {
			errs = append(errs, cliflag.Problem("audit-key", c.AuditKey, err.Error()))
		}
	}
	for _, f := range []struct{ name, path string }{{"trust-material", c.TrustMaterial}, {"policy-bundle", c.PolicyBundle}} {
		if f.path == "" {
			continue
		}
		if fh, err := os.Open(f.path); err != nil {
			errs = append(errs, cliflag.Problem(f.name, f.path, "cannot read: "+err.Error()))
		} else {
			fh.Close()
		}
	}
	return errors.Join(errs...)
}

// egressFile is one --egress-secret or --egress-key entry.
type egressFile struct {
	flag, provider, path string
}

// egressFiles splits the PROVIDER=FILE entries of --egress-secret and
// --egress-key, refusing a malformed entry and a provider named twice.
func (c *Config) egressFiles() ([]egressFile, error) {
	var out []egressFile
	var errs []error
	seen := map[string]string{}
	for _, f := range []struct {
		name string
		list cliflag.List
	}{{"egress-secret", c.EgressSecret}, {"egress-key", c.EgressKey}} {
		for _, v := range f.list {
			provider, path, ok := strings.Cut(v, "=")
			if !ok || provider == "" || path == "" {
				errs = append(errs, cliflag.Problem(f.name, v, "want PROVIDER=FILE"))
				continue
			}
			if other, dup := seen[provider]; dup {
				errs = append(errs, cliflag.Problem(f.name, v, "provider "+provider+" already has a credential (--"+other+")"))
				continue
			}
			seen[provider] = f.name
			out = append(out, egressFile{flag: f.name, provider: provider, path: path})
		}
	}
	return out, errors.Join(errs...)
}

// readEgressCredentials reads every --egress-secret and --egress-key file;
// each problem names its flag.
func (c *Config) readEgressCredentials() (map[string]egress.Credential, error) {
	files, err := c.egressFiles()
	if err != nil {
		return nil, nil // Validate reports it
	}
	creds := make(map[string]egress.Credential, len(files))
	var errs []error
	for _, f := range files {
		read := egress.ReadSecret
		if f.flag == "egress-key" {
			read = egress.ReadKey
		}
		cred, err := read(f.path)
		if err != nil {
			errs = append(errs, cliflag.Problem(f.flag, f.provider+"="+f.path, err.Error()))
			continue
		}
		creds[f.provider] = cred
	}
	return creds, errors.Join(errs...)
}

// Validate checks everything once and reports every problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name string, v any, msg string) { errs = append(errs, cliflag.Problem(name, v, msg)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", c.Listen, "want host:port")
	}
	if c.Upstream != "" {
		u, err := url.Parse(c.Upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("upstream", c.Upstream, "want an http:// or https:// URL")
		} else {
			c.upstreamURL = u
		}
	}
	if c.NATSURL == "" {
		if host, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			bad("nats-listen", c.NATSListen, "want host:port")
		} else if !loopbackHost(host) {
			// Issue 12: the embedded server has no TLS; it is the
			// one-binary verifier, not a cluster member.
			bad("nats-listen", c.NATSListen, "the embedded NATS server listens on loopback only; join a TLS cluster with --nats-url")
		}
		if c.NATSAuth.Enabled() {
			bad("nats-creds", c.NATSAuth.CredsFile, "only with --nats-url: the embedded server uses the credentials it writes into --data-dir")
		}
	} else {
		errs = append(errs, c.NATSAuth.Validate(time.Now())...)
	}
	if (c.TrustMaterial == "") != (c.PolicyBundle == "") {
		bad("policy-bundle", c.PolicyBundle, "file mode needs both --trust-material and --policy-bundle")
	}
	// Without files, bundles come from the NATS bucket (SPEC §10.1); --demo
	// names its own files and key later.
	if !c.Demo && len(c.BundlePublicKeys) == 0 && !c.DevAllowUnsigned {
		bad("bundle-public-key", "", "signed bundles need at least one key (or --dev-allow-unsigned-bundles)")
	}
	if len(c.AssertionKey) > 0 && c.AssertionKeyDir != "" {
		// One source of the node's keys: a key named by a flag could not
		// leave without a restart, which the directory exists to avoid.
		bad("assertion-key-dir", c.AssertionKeyDir, "give --assertion-key or --assertion-key-dir, not both")
	}
	if !c.hasAssertionKeys() != (c.AssertionIssuer == "") {
		bad("assertion-issuer", c.AssertionIssuer, "--assertion-issuer goes with --assertion-key or --assertion-key-dir")
	}
	if !c.hasAssertionKeys() && len(c.AssertionPublicKeys) > 0 {
		bad("assertion-public-key", c.AssertionPublicKeys.String(), "needs --assertion-key or --assertion-key-dir")
	}
	if _, err := c.egressFiles(); err != nil {
		errs = append(errs, err)
	}
	if c.EgressTimeout <= 0 || c.EgressTimeout > time.Minute {
		bad("egress-timeout", c.EgressTimeout, "must be positive and at most 1m")
	}
	if c.BundleReconcile <= 0 || c.BundleReconcile > 30*time.Second {
		bad("bundle-reconcile-interval", c.BundleReconcile, "must be positive and at most 30s (SPEC §8.2)")
	}
	if c.BundleReplicas < 1 || c.BundleReplicas > 5 {
		bad("bundle-replicas", c.BundleReplicas, "must be 1 to 5")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"clock-skew", c.ClockSkew}, {"realtime-window", c.RealtimeWindow}, {"reload-interval", c.ReloadInterval}} {
		if d.v <= 0 {
			bad(d.name, d.v, "must be positive")
		}
	}
	if c.MaxPassportLifetime <= 0 {
		bad("max-passport-lifetime", c.MaxPassportLifetime, "must be positive")
	}
	if c.LedgerTimeout <= 0 {
		bad("ledger-timeout", c.LedgerTimeout, "must be positive")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"shutdown-timeout", c.ShutdownTimeout}, {"read-header-timeout", c.ReadHeaderTimeout},
		{"read-timeout", c.ReadTimeout}, {"write-timeout", c.WriteTimeout}, {"idle-timeout", c.IdleTimeout},
	} {
		if d.v <= 0 {
			bad(d.name, d.v, "must be positive")
		}
	}
	if c.ShutdownDelay < 0 {
		bad("shutdown-delay", c.ShutdownDelay, "must not be negative")
	}
	if c.MaxHeaderBytes < 4096 {
		bad("max-header-bytes", c.MaxHeaderBytes, "must be at least 4096")
	}
	if c.MaxBodyBytes <= 0 {
		bad("max-body-bytes", c.MaxBodyBytes, "must be positive")
	}
	if c.MaxBodyMemoryBytes < c.MaxBodyBytes {
		bad("max-body-memory-bytes", c.MaxBodyMemoryBytes, "must be at least --max-body-bytes")
	}
	if c.MaxHeaderCandidates <= 0 || c.MaxHeaderCandidates > 4096 {
		bad("max-header-candidates", c.MaxHeaderCandidates, "must be 1 to 4096")
	}
	if c.LedgerReplicas < 1 || c.LedgerReplicas > 5 {
		bad("ledger-replicas", c.LedgerReplicas, "must be 1 to 5")
	}
	if c.LedgerShards < 1 || c.LedgerShards > ledger.MaxShards {
		bad("ledger-shards", c.LedgerShards, fmt.Sprintf("must be 1 to %d", ledger.MaxShards))
	}
	if c.LedgerShardsPrev < 0 || c.LedgerShardsPrev > ledger.MaxShards {
		bad("ledger-shards-previous", c.LedgerShardsPrev, fmt.Sprintf("must be 0 (no reshard) to %d", ledger.MaxShards))
	} else if c.LedgerShardsPrev == c.LedgerShards {
		bad("ledger-shards-previous", c.LedgerShardsPrev, "equals --ledger-shards: no reshard to make (0 outside one)")
	}
	if c.Region != "" && (c.LedgerShards > 1 || c.LedgerShardsPrev > 0) {
		// A home region's nodes would have to know every other region's
		// shard count; not built.
		bad("ledger-shards", c.LedgerShards, "sharding is not supported together with --region")
	}
	if c.LedgerSync != "default" && c.LedgerSync != "always" {
		bad("ledger-sync", c.LedgerSync, "want default or always")
	}
	if c.ExternalScheme != "" && c.ExternalScheme != "http" && c.ExternalScheme != "https" {
		bad("external-scheme", c.ExternalScheme, "want http or https")
	}
	if c.PprofListen != "" {
		if _, _, err := net.SplitHostPort(c.PprofListen); err != nil {
			bad("pprof-listen", c.PprofListen, "want host:port")
		}
	}
	if c.GRPCListen != "" {
		if _, _, err := net.SplitHostPort(c.GRPCListen); err != nil {
			bad("grpc-listen", c.GRPCListen, "want host:port")
		}
	}
	if c.Region != "" && !bundle.ValidRegion(c.Region) {
		bad("region", c.Region, "want 1 to 32 of [a-z0-9_-], starting with a letter or digit")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("log-level", c.LogLevel, "want debug, info, warn or error")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log-format", c.LogFormat, "want text or json")
	}
	c.trustedProxies = nil
	for _, s := range c.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			bad("trusted-proxies", s, "want a CIDR such as 10.0.0.0/8")
			continue
		}
		c.trustedProxies = append(c.trustedProxies, p.Masked())
	}
	if c.AuditSpoolMaxBytes < 64<<10 {
		bad("audit-spool-max-bytes", c.AuditSpoolMaxBytes, "must be at least 65536")
	}
	if c.ReadyMaxAuditPending < 1 {
		bad("ready-max-audit-pending", c.ReadyMaxAuditPending, "must be positive")
	}
	if c.AuditSyncInterval <= 0 {
		bad("audit-sync-interval", c.AuditSyncInterval, "must be positive")
	}
	if c.AuditStream == "" || strings.ContainsAny(c.AuditStream, ". *>") {
		bad("audit-stream", c.AuditStream, "want a stream name without '.', ' ', '*' or '>'")
	}
	if c.AuditReplicas < 1 || c.AuditReplicas > 5 {
		bad("audit-replicas", c.AuditReplicas, "must be 1 to 5")
	}
	if c.AuditMaxAge <= 0 {
		bad("audit-max-age", c.AuditMaxAge, "must be positive")
	}
	if c.AuditMaxBytes == 0 || c.AuditMaxBytes < -1 {
		bad("audit-max-bytes", c.AuditMaxBytes, "must be positive or -1")
	}
	if c.AuditWindow < 1 || c.AuditWindow > 65536 {
		bad("audit-publish-window", c.AuditWindow, "must be 1 to 65536")
	}
	if c.AuditCheckpointInterval <= 0 {
		bad("audit-checkpoint-interval", c.AuditCheckpointInterval, "must be positive")
	}
	if c.AuditFlushTimeout <= 0 {
		bad("audit-flush-timeout", c.AuditFlushTimeout, "must be positive")
	}
	return errors.Join(errs...)
}

// hasAssertionKeys reports whether the node has backend assertion keys,
// by --assertion-key or --assertion-key-dir.
func (c *Config) hasAssertionKeys() bool { return len(c.AssertionKey) > 0 || c.AssertionKeyDir != "" }

// loopbackHost reports whether host is a loopback address or localhost.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// locked reports whether the node connects with a role credential (the
// verifier role, docs/NATS-SECURITY.md), which may not create streams:
// with --nats-creds, and always with the embedded server, which provisions
// its streams as admin before the node connects as verifier.
func (c *Config) locked() bool {
	return c.NATSURL == "" || c.NATSAuth.CredsFile != ""
}

// nodeID is --node-id, or <hostname>:<listen port> (SPEC §9).
func (c *Config) nodeID() string {
	if c.NodeID != "" {
		return c.NodeID
	}
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(c.Listen)
	return host + ":" + port
}

// newLogger is the process's logger, on w, in --log-format at --log-level.
func (c *Config) newLogger(w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel) // checked by Validate
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// logValues is the effective configuration for the start-up log line.
// Nothing here is secret: key files are paths, never contents.
func (c *Config) logValues() []any {
	return []any{
		"listen", c.Listen, "grpc_listen", c.GRPCListen, "upstream", c.Upstream, "node_id", c.nodeID(),
		"nats_url", redactURL(c.NATSURL), "nats_listen", c.NATSListen,
		"nats_creds", c.NATSAuth.CredsFile, "nats_ca", c.NATSAuth.CAFile, "nats_cert", c.NATSAuth.CertFile, "data_dir", c.DataDir,
		"trust_material", c.TrustMaterial, "policy_bundle", c.PolicyBundle,
		"bundle_public_keys", c.BundlePublicKeys.String(), "beacon_public_keys", c.BeaconPublicKeys.String(),
		"bundle_replicas", c.BundleReplicas, "route_id", c.RouteID,
		"clock_skew", c.ClockSkew, "max_passport_lifetime", c.MaxPassportLifetime,
		"realtime_window", c.RealtimeWindow, "max_body_bytes", c.MaxBodyBytes,
		"max_body_memory_bytes", c.MaxBodyMemoryBytes,
		"ledger_bucket", c.LedgerBucket, "ledger_replicas", c.LedgerReplicas,
		"ledger_shards", c.LedgerShards, "ledger_shards_previous", c.LedgerShardsPrev,
		"ledger_timeout", c.LedgerTimeout, "ledger_sync", c.LedgerSync,
		"audit_spool_dir", c.AuditSpoolDir, "audit_spool_max_bytes", c.AuditSpoolMaxBytes, "ready_max_audit_pending", c.ReadyMaxAuditPending,
		"audit_stream", c.AuditStream, "audit_replicas", c.AuditReplicas, "audit_max_age", c.AuditMaxAge,
		"audit_key", c.AuditKey, "audit_checkpoint_interval", c.AuditCheckpointInterval,
		"assertion_key", c.AssertionKey.String(), "assertion_key_dir", c.AssertionKeyDir, "assertion_issuer", c.AssertionIssuer, "assertion_public_keys", c.AssertionPublicKeys.String(),
		"egress_secret", c.EgressSecret.String(), "egress_key", c.EgressKey.String(), "egress_timeout", c.EgressTimeout,
		"trusted_proxies", c.TrustedProxies.String(), "max_header_candidates", strconv.Itoa(c.MaxHeaderCandidates),
	}
}

// redactURL drops credentials from NATS URLs before they are logged.
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
