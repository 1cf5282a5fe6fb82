package bundle

import "time"

// Snapshot is one consistent view of policy: a verified policy bundle and a
// verified trust material, never mixed across two loads (SPEC §8.2). It is
// immutable once published. Both bundle sources (internal/bundlefile and
// internal/bundlekv) build it and core decides on it, so it lives here, the
// one package all three import.
type Snapshot struct {
	Policy *Policy
	Trust  *TrustMaterial
	// ViewTime is the bundle view time of SPEC §8.3. Over NATS it is the
	// later of the policy's issued_at and the issued_at of the newest valid
	// beacon that covers this pair (a newer beacon for another pair, one the
	// node refused, does not move it, so a node stuck on an old pair goes
	// stale); from files it is the policy file's mtime.
	ViewTime time.Time
}
