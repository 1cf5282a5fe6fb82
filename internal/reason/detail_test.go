package reason

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

// TestDetails: every detail code is lower-case letters and underscores (it
// is a log and audit value, and must never look like data), refines request
// codes only, and is documented in the "Detail codes" section of
// docs/SPEC-EXTENSIONS.md as a table row naming the codes it refines.
func TestDetails(t *testing.T) {
	root := conformance.ModuleRoot(t)
	ext, err := os.ReadFile(filepath.Join(root, "docs", "SPEC-EXTENSIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(ext), "\n## Detail codes")
	if !ok {
		t.Fatal(`docs/SPEC-EXTENSIONS.md has no "## Detail codes" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := make(map[string]string)
	for line := range strings.Lines(section) {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		rows[name] = cells[2]
	}
	for _, d := range Details() {
		s := string(d)
		if s == "" || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz_") != "" {
			t.Errorf("detail %q: want lower-case letters and underscores only", s)
		}
		if d.Explain() == "" {
			t.Errorf("detail %s has no explanation", d)
		}
		codes := detailOf[d].codes
		if len(codes) == 0 {
			t.Errorf("detail %s refines no code", d)
		}
		row, ok := rows[s]
		if !ok {
			t.Errorf("detail %s has no row in docs/SPEC-EXTENSIONS.md, Detail codes", d)
		}
		for _, c := range codes {
			if s, ok := c.Status(); !ok || s == 200 {
				t.Errorf("detail %s refines %s, which is no denial", d, c)
			}
			if !d.Refines(c) {
				t.Errorf("%s.Refines(%s) = false", d, c)
			}
			if ok && !strings.Contains(row, "`"+string(c)+"`") {
				t.Errorf("docs row of detail %s does not name %s", d, c)
			}
		}
	}
	if Detail("").Refines(Allowed) || DetailBodyHash.Refines(JTIReplay) {
		t.Error("Refines accepts a pair the table does not hold")
	}
}
