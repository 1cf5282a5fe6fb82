package keyfile

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps keyfile a leaf: every binary reads keys through it, and
// SPEC §10.3 key handling must not drag a network stack, NATS or a logger
// into verifiers' pure packages (STYLE §1).
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := map[string]string{
		"net/http": "key files are local; an HTTP stack has no place in a key parser",
		"log/slog": "redaction is done by String, Format and MarshalJSON; logging belongs to adapters (STYLE §7)",
	}
	for line := range strings.Lines(string(out)) {
		pkg, std, _ := strings.Cut(strings.TrimSpace(line), " ")
		if why, bad := forbidden[pkg]; bad {
			t.Errorf("keyfile depends on %s: %s", pkg, why)
		}
		switch {
		case strings.HasPrefix(pkg, "github.com/nats-io/"):
			t.Errorf("keyfile depends on %s: NATS belongs to adapters (STYLE §1)", pkg)
		case std != "true" && pkg != "github.com/tpcluster/tpcluster/internal/keyfile":
			t.Errorf("keyfile depends on %s: keyfile imports the standard library only", pkg)
		}
	}
}
