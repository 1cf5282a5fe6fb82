package signerclass

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

// taxonomyVector is the shape of a signer-taxonomy-v1 vector.
type taxonomyVector struct {
	Version  string   `json:"version"`
	Ordering []string `json:"ordering"`
	Classes  []struct {
		Class string `json:"class"`
		Rank  int    `json:"rank"`
	} `json:"classes"`
}

// TestConformance checks the taxonomy against the signer-taxonomy-v1 vector:
// the order and the ranks (SPEC, opening section).
func TestConformance(t *testing.T) {
	conformance.Run(t, "signer-taxonomy-v1", func(t *testing.T, vec taxonomyVector) {
		if len(vec.Ordering) != len(Ordered) {
			t.Fatalf("vector orders %d classes, Ordered has %d", len(vec.Ordering), len(Ordered))
		}
		for i, name := range vec.Ordering {
			if got := Ordered[i].String(); got != name {
				t.Errorf("Ordered[%d] = %q, want %q", i, got, name)
			}
			c, ok := Parse(name)
			if !ok || c != Ordered[i] {
				t.Errorf("Parse(%q) = %v, %v; want %v, true", name, c, ok, Ordered[i])
			}
		}
		if len(vec.Classes) != len(Ordered) {
			t.Fatalf("vector ranks %d classes, want %d", len(vec.Classes), len(Ordered))
		}
		for _, vc := range vec.Classes {
			c, ok := Parse(vc.Class)
			if !ok {
				t.Errorf("Parse(%q) = not a class", vc.Class)
				continue
			}
			if c.Rank() != vc.Rank {
				t.Errorf("%s.Rank() = %d, want %d", vc.Class, c.Rank(), vc.Rank)
			}
		}
	})
}

func TestSatisfies(t *testing.T) {
	for i, c := range Ordered {
		for j, min := range Ordered {
			if got, want := c.Satisfies(min), i >= j; got != want {
				t.Errorf("%s.Satisfies(%s) = %v, want %v", c, min, got, want)
			}
		}
		if c.Satisfies(0) || Class(0).Satisfies(c) {
			t.Errorf("the invalid class satisfies or is satisfied by %s", c)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{"", "Software", "software ", "hardware-local", "remote-kms", "none"} {
		if c, ok := Parse(s); ok {
			t.Errorf("Parse(%q) = %v, true; want false", s, c)
		}
	}
	if Class(0).String() != "" || Class(9).Rank() != 0 {
		t.Error("an invalid class has a name or a rank")
	}
}
