package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tpcluster/tpcluster/internal/loadgen"
)

// A run is one tpload report of a scenario: "r1-open.json" is scenario r1,
// kind open.
type run struct {
	Scenario string
	Kind     string // "open", "closed" or "mixed"
	Report   loadgen.Report
}

// kinds are the run names the charts use; other reports in the directory
// (the crypto ceiling, direct-at-*, summary.json) are not load against a
// scenario and are left to the summary table.
var kinds = []string{"closed", "open", "mixed"}

// scenarioOrder is bench.sh's order, cheapest path first, so charts read
// left to right as the documents do; a scenario not listed follows, sorted.
var scenarioOrder = []string{"direct", "proxy", "r1", "r3", "nginx"}

// readRuns reads every <scenario>-<kind>.json report in dir. A directory
// with none is an error: the charts would be empty and look like a result.
func readRuns(dir string) ([]run, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list reports in %s: %w", dir, err)
	}
	var runs []run
	for _, name := range names {
		base := strings.TrimSuffix(filepath.Base(name), ".json")
		i := strings.LastIndexByte(base, '-')
		if i <= 0 || !slices.Contains(kinds, base[i+1:]) {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read report: %w", err)
		}
		r := run{Scenario: base[:i], Kind: base[i+1:]}
		if err := json.Unmarshal(b, &r.Report); err != nil {
			return nil, fmt.Errorf("report %s: %w", name, err)
		}
		if r.Report.Expect == "nats-floor" {
			// Raw JetStream pairs (tpload nats-floor), not requests: the
			// summary's NATS table compares them, the charts do not.
			continue
		}
		if r.Report.Answered == 0 || r.Report.ThroughputPerSec <= 0 {
			return nil, fmt.Errorf("report %s: no answered requests, nothing to chart", name)
		}
		runs = append(runs, r)
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("no <scenario>-{closed,open,mixed}.json reports in %s", dir)
	}
	return runs, nil
}

// scenarios returns the scenarios of runs in chart order.
func scenarios(runs []run) []string {
	var names []string
	for _, r := range runs {
		if !slices.Contains(names, r.Scenario) {
			names = append(names, r.Scenario)
		}
	}
	rank := func(s string) int {
		if i := slices.Index(scenarioOrder, s); i >= 0 {
			return i
		}
		return len(scenarioOrder)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := rank(a) - rank(b); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return names
}

// find returns the run of scenario s and kind k.
func find(runs []run, s, k string) (run, bool) {
	for _, r := range runs {
		if r.Scenario == s && r.Kind == k {
			return r, true
		}
	}
	return run{}, false
}
