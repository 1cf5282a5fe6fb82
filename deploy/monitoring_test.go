package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

// promtool finds Prometheus's promtool. .ci/run installs it (Debian's
// prometheus package); in CI (CI=true) a missing promtool fails the test,
// since the alerting rules would otherwise ship unchecked.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("promtool not found: .ci/run installs it (apt-get install prometheus)")
	}
	t.Skip("promtool not found (apt-get install --no-install-recommends prometheus); CI=true makes this a failure")
	return ""
}

// TestAlertRules checks deploy/monitoring/tpcluster-alerts.yaml with
// promtool and runs its unit tests (tpcluster-alerts.test.yaml): each
// alert fires on the series shaped like its failure and the look-alikes
// stay quiet. e2e/monitoring_test.go checks the metric names against a
// real verifierd.
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	dir := filepath.Join(conformance.ModuleRoot(t), "deploy", "monitoring")
	for _, args := range [][]string{
		{"check", "rules", "tpcluster-alerts.yaml"},
		{"test", "rules", "tpcluster-alerts.test.yaml"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
			continue
		}
		t.Logf("promtool %v:\n%s", args, out)
	}
}
