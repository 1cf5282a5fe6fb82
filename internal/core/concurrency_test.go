package core

import (
	"fmt"
	"sync"
	"testing"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// TestConcurrentDecide decides distinct requests from many goroutines while
// the snapshot is swapped, under -race: every request is allowed exactly
// once and its copy is a replay.
func TestConcurrentDecide(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.IgnoreHeaders = []string{"x-debug"} })
	const n = 64
	reqs := make([]*Request, n)
	for i := range reqs {
		po := passportOptions()
		po.JTI = fmt.Sprintf("concurrent-%d", i)
		c := derivedCall()
		c.passport = &po
		reqs[i] = f.request(c)
	}
	fresh := loadSnapshot(t, testPolicy(), testTrust(f.key.PublicKeyB64()), f.now)
	var wg sync.WaitGroup
	results := make([][2]reason.Code, n)
	for i := range reqs {
		wg.Go(func() {
			if i%16 == 0 { // a new bundle load under the readers' feet
				f.snap.Store(fresh)
			}
			results[i][0] = f.p.Decide(t.Context(), reqs[i]).Reason
			results[i][1] = f.p.Decide(t.Context(), reqs[i]).Reason
		})
	}
	wg.Wait()
	for i, r := range results {
		if r[0] != reason.Allowed || r[1] != reason.JTIReplay {
			t.Errorf("request %d: %q then %q, want allowed then jti_replay", i, r[0], r[1])
		}
	}
}
