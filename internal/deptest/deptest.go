// Package deptest checks a package's imports against its row in STYLE §1's
// table, for the deps_test.go of each package: one rule set per package,
// each rule with the reason a reader needs when it fails.
//
// It is test support: only _test.go files import it.
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

// Rule forbids an import path. A Path ending in "/" forbids every package
// under that prefix (and the prefix without its slash); any other Path
// forbids that package and its subpackages.
type Rule struct {
	Path string
	Why  string
}

// Spec is what a package may import.
type Spec struct {
	// Direct checks only the package's own imports. Adapters use it: the
	// rule for them is about what they import, not what their client
	// libraries pull in (nats.go imports net/http for websockets). Pure
	// packages leave it false, so the rule holds transitively.
	Direct bool
	// Forbidden paths, each with its reason.
	Forbidden []Rule
	// Only, if not nil, lists the non-standard-library packages allowed
	// (the package itself is always allowed), with OnlyWhy saying why.
	Only    []string
	OnlyWhy string
}

// Check runs `go list` on the package in the test's directory and fails
// the test for every import spec refuses, naming the import and the reason.
func Check(t testing.TB, spec Spec) {
	t.Helper()
	args := []string{"list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", "."}
	if spec.Direct {
		args = []string{"list", "-f", `{{range .Imports}}{{.}} x{{"\n"}}{{end}}`, "."}
	}
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	self, err := exec.Command("go", "list", ".").Output()
	if err != nil {
		t.Fatalf("go list .: %v", err)
	}
	me := strings.TrimSpace(string(self))
	for line := range strings.Lines(string(out)) {
		pkg, std, _ := strings.Cut(strings.TrimSpace(line), " ")
		if pkg == "" || pkg == me {
			continue
		}
		for _, r := range spec.Forbidden {
			if matches(pkg, r.Path) {
				t.Errorf("%s imports %s: %s", me, pkg, r.Why)
			}
		}
		if spec.Only != nil && !isStd(pkg, std) && !allowed(pkg, spec.Only) {
			t.Errorf("%s imports %s: %s", me, pkg, spec.OnlyWhy)
		}
	}
}

func matches(pkg, path string) bool {
	if before, ok := strings.CutSuffix(path, "/"); ok {
		return strings.HasPrefix(pkg, path) || pkg == before
	}
	return pkg == path || strings.HasPrefix(pkg, path+"/")
}

// isStd reports a standard-library path when only direct imports were
// listed (go list does not say there): no dot in the first element.
func isStd(pkg, std string) bool {
	if std == "true" || std == "false" {
		return std == "true"
	}
	first, _, _ := strings.Cut(pkg, "/")
	return !strings.Contains(first, ".")
}

func allowed(pkg string, only []string) bool {
	for _, p := range only {
		if matches(pkg, p) {
			return true
		}
	}
	return false
}
