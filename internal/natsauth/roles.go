package natsauth

import (
	"fmt"
	"slices"

	"github.com/nats-io/jwt/v2"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/ledger"
)

// Role is one NATS user of a tpcluster deployment. Each role's user JWT
// carries the subject permissions of Permissions and nothing more.
type Role string

const (
	// Verifier is every verifierd node: it creates keys in the replay
	// bucket, reads the bundle bucket, publishes audit events and answers
	// status requests.
	Verifier Role = "verifier"
	// Bundlepub writes the bundle bucket (documents and beacons) and asks
	// the fleet for its status.
	Bundlepub Role = "bundlepub"
	// AuditReader reads the audit stream: consumers on it and direct gets.
	AuditReader Role = "audit-reader"
	// Admin creates and changes streams and buckets; it alone may delete or
	// purge them. Its user has no subject restriction.
	Admin Role = "admin"
)

// Roles lists every role, in the order files are written.
func Roles() []Role { return []Role{Verifier, Bundlepub, AuditReader, Admin} }

// Names are the streams and buckets the permissions are written for. They
// must match the flags of the deployment (--ledger-bucket, --audit-stream,
// bundlepub --bucket): a renamed bucket needs new credentials.
type Names struct {
	// LedgerBucket is the replay ledger's KV bucket. If empty,
	// ledger.DefaultBucket.
	LedgerBucket string
	// BundleBucket is the bundle channel's KV bucket. If empty,
	// bundlekv.DefaultBucket.
	BundleBucket string
	// AuditStream is the audit stream. If empty, audit.DefaultStream.
	AuditStream string
	// Regions, for a multi-region fleet (docs/MULTI-REGION.md), adds each
	// region's ledger bucket and audit stream and subjects.
	Regions []string
	// LedgerShards and LedgerShardsPrevious, as verifierd's --ledger-shards
	// and --ledger-shards-previous, add the shard buckets of each layout
	// of more than one shard (docs/LEDGER-SHARDS.md).
	LedgerShards, LedgerShardsPrevious int
}

func (n Names) withDefaults() Names {
	if n.LedgerBucket == "" {
		n.LedgerBucket = ledger.DefaultBucket
	}
	if n.BundleBucket == "" {
		n.BundleBucket = bundlekv.DefaultBucket
	}
	if n.AuditStream == "" {
		n.AuditStream = audit.DefaultStream
	}
	return n
}

// ledgerStreams are the streams behind every ledger bucket of n.
func (n Names) ledgerBuckets() []string {
	b := []string{n.LedgerBucket}
	for _, r := range n.Regions {
		b = append(b, ledger.BucketFor(n.LedgerBucket, r))
	}
	for _, layout := range []int{n.LedgerShards, n.LedgerShardsPrevious} {
		for i := range layout {
			if s := ledger.ShardBucket(n.LedgerBucket, i, layout); !slices.Contains(b, s) {
				b = append(b, s)
			}
		}
	}
	return b
}

// auditStreams returns each audit stream with the subject prefix it listens on.
func (n Names) auditStreams() [][2]string {
	s := [][2]string{{n.AuditStream, audit.SubjectPrefix}}
	for _, r := range n.Regions {
		s = append(s, [2]string{audit.RegionStream(n.AuditStream, r), audit.RegionSubjectPrefix(r)})
	}
	return s
}

// inbox is where every reply to a request of ours arrives (nats.go's
// default inbox prefix).
const inbox = "_INBOX.>"

// Permissions returns role's subject permissions. Every JetStream API
// subject a role may publish to is named with its stream: no role but admin
// reaches $JS.API.STREAM.CREATE, UPDATE, DELETE, PURGE or MSG.DELETE, so
// a stolen verifier credential can neither purge a consumed jti nor delete
// a stream (issue 12). Admin has no restriction.
func Permissions(role Role, n Names) (jwt.Permissions, error) {
	n = n.withDefaults()
	var p jwt.Permissions
	switch role {
	case Admin:
		return p, nil
	case Verifier:
		for _, b := range n.ledgerBuckets() {
			// Create-only writes; the stream itself refuses purge,
			// delete and roll-ups (Provision).
			p.Pub.Allow.Add("$KV."+b+".>", "$JS.API.STREAM.INFO.KV_"+b)
			// The leader's read of a key whose write is in flight
			// (ledger.confirmReplay, issue 13).
			p.Pub.Allow.Add("$JS.API.STREAM.MSG.GET.KV_" + b)
			// The stream's leader elections: writes in flight to the
			// old leader are ended at once (ledger.electionCut).
			p.Sub.Allow.Add("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.KV_" + b)
		}
		p.Pub.Allow.Add(kvRead(n.BundleBucket)...)
		for _, a := range n.auditStreams() {
			p.Pub.Allow.Add(a[1]+">", "$JS.API.STREAM.INFO."+a[0])
		}
		p.Sub.Allow.Add(inbox, bundlekv.StatusSubject)
		// One reply to each status request, to the requester's inbox only.
		p.Resp = &jwt.ResponsePermission{MaxMsgs: 1}
	case Bundlepub:
		p.Pub.Allow.Add("$KV." + n.BundleBucket + ".>")
		p.Pub.Allow.Add(kvRead(n.BundleBucket)...)
		p.Pub.Allow.Add(bundlekv.StatusSubject)
		p.Sub.Allow.Add(inbox)
	case AuditReader:
		for _, a := range n.auditStreams() {
			p.Pub.Allow.Add(streamRead(a[0])...)
			p.Pub.Allow.Add("$JS.ACK." + a[0] + ".>")
		}
		p.Pub.Allow.Add("$JS.API.INFO", "$JS.API.STREAM.NAMES")
		p.Sub.Allow.Add(inbox)
	default:
		return p, fmt.Errorf("unknown role %q", role)
	}
	slices.Sort(p.Pub.Allow)
	return p, nil
}

// kvRead is what reading and watching a KV bucket needs.
func kvRead(bucket string) []string {
	return streamRead("KV_" + bucket)
}

// streamRead is what reading a stream needs: its info, direct and stored
// message gets, and consumers of its own (created, read, deleted), with the
// flow control replies of push consumers.
func streamRead(stream string) []string {
	var s []string
	for _, api := range []string{
		"STREAM.INFO.%s", "STREAM.MSG.GET.%s", "DIRECT.GET.%s", "DIRECT.GET.%s.>",
		"CONSUMER.CREATE.%s", "CONSUMER.CREATE.%s.>", "CONSUMER.DURABLE.CREATE.%s.>",
		"CONSUMER.INFO.%s.>", "CONSUMER.DELETE.%s.>", "CONSUMER.MSG.NEXT.%s.>",
		"CONSUMER.NAMES.%s", "CONSUMER.LIST.%s",
	} {
		s = append(s, "$JS.API."+fmt.Sprintf(api, stream))
	}
	return append(s, "$JS.FC."+stream+".>", "$JS.API.INFO")
}
