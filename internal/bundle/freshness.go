package bundle

import "time"

// Freshness is a route's freshness class (SPEC §8.3).
type Freshness uint8

// The freshness classes. FreshnessUnknown is a class name we do not know:
// the bundle still loads, and the route is denied bundle_freshness_unknown.
const (
	FreshnessUnknown Freshness = iota
	Realtime
	Bounded
	OfflineOK
)

// ParseFreshness returns the class named s: "realtime", "bounded",
// "offline-ok" or its alias "offline_ok"; anything else is FreshnessUnknown.
func ParseFreshness(s string) Freshness {
	switch s {
	case "realtime":
		return Realtime
	case "bounded":
		return Bounded
	case "offline-ok", "offline_ok":
		return OfflineOK
	}
	return FreshnessUnknown
}

// String returns the canonical name, or "unknown".
func (f Freshness) String() string {
	switch f {
	case Realtime:
		return "realtime"
	case Bounded:
		return "bounded"
	case OfflineOK:
		return "offline-ok"
	}
	return "unknown"
}

// DefaultRealtimeWindow is the SPEC §8.3 default of --realtime-window.
const DefaultRealtimeWindow = 5 * time.Second

// FreshResult is the outcome of Route.CheckFresh.
type FreshResult uint8

const (
	// FreshOK: the route may be decided against this bundle view.
	FreshOK FreshResult = iota
	// FreshStale: deny stale_bundle_fail_closed.
	FreshStale
	// FreshUnknownClass: deny bundle_freshness_unknown.
	FreshUnknownClass
)

// CheckFresh applies SPEC §8.3 to a bundle view of the given age (now minus
// view time): realtime is fresh while age <= realtimeWindow (zero or less
// means DefaultRealtimeWindow); bounded while age <= MaxStaleness, and stale
// without a positive MaxStaleness; offline-ok always. A negative age (a view
// time ahead of the clock) counts as fresh; bounding future issued_at is the
// caller's business.
func (r *Route) CheckFresh(age, realtimeWindow time.Duration) FreshResult {
	switch r.Freshness {
	case Realtime:
		if realtimeWindow <= 0 {
			realtimeWindow = DefaultRealtimeWindow
		}
		if age <= realtimeWindow {
			return FreshOK
		}
		return FreshStale
	case Bounded:
		if r.MaxStaleness > 0 && age <= r.MaxStaleness {
			return FreshOK
		}
		return FreshStale
	case OfflineOK:
		return FreshOK
	}
	return FreshUnknownClass
}
