package bundleedit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func newClient(t testing.TB) Client {
	return Client{
		Issuer: "https://c.example", TrustDomain: "example.local", KID: "c-1",
		PublicKey: testKey(t, 3, "").Public().Key, Subject: Subject{Exact: "svc:c"},
	}
}

func TestMergeSourceThenSign(t *testing.T) {
	policy, trust := testDocs(t)
	c := newClient(t)
	r, err := MergeSource{Client: c, Routes: []string{"orders.create", "orders.get"}}.Apply(policy, trust)
	if err != nil {
		t.Fatal(err)
	}
	if !r.PolicyChanged || !r.TrustChanged {
		t.Errorf("changed = %v, %v; want both", r.PolicyChanged, r.TrustChanged)
	}
	if r.PolicySequence != 7 || r.TrustSequence != 4 {
		t.Errorf("input sequences = %d, %d; want 7, 4", r.PolicySequence, r.TrustSequence)
	}
	for _, doc := range [][]byte{r.Policy, r.Trust} {
		if strings.Contains(string(doc), `"signature"`) || strings.Contains(string(doc), `"signed_by"`) {
			t.Errorf("edited document keeps an envelope:\n%s", doc)
		}
	}
	// Untouched members stay, in their place.
	out := string(r.Policy)
	for _, want := range []string{`"contract_metadata": {`, `"note": "kept <as is>"`, `"scopes": [`, `"sequence": 7`} {
		if !strings.Contains(out, want) {
			t.Errorf("edited policy lost %s", want)
		}
	}
	if strings.Index(out, `"contract_metadata"`) > strings.Index(out, `"trust_domain"`) {
		t.Error("member order changed")
	}
	wantChanges := []string{
		`added issuer "https://c.example"`,
		`added key "c-1" to issuer "https://c.example"`,
		`to routes orders.create,orders.get`,
	}
	all := strings.Join(r.Changes, "\n")
	for _, w := range wantChanges {
		if !strings.Contains(all, w) {
			t.Errorf("changes %q lack %q", r.Changes, w)
		}
	}

	p, tm := signedLoad(t, r.Policy, r.Trust)
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	k := tm.PassportKey(c.Issuer, c.KID, true, "", now)
	if k == nil || string(k.PublicKey) != string(c.PublicKey) {
		t.Fatalf("PassportKey(%s, %s) = %v, want the merged key", c.Issuer, c.KID, k)
	}
	for _, id := range []string{"orders.create", "orders.get"} {
		if !admits(p, id, c.Issuer, "svc:c") {
			t.Errorf("route %s has no source admitting the new client", id)
		}
		if !admits(p, id, issA, "svc:a") {
			t.Errorf("route %s lost issuer A's source", id)
		}
	}
	if r := p.Resolve("GET", "/v1/orders/42"); r == nil || r.ID != "orders.get" {
		t.Errorf("Resolve(GET /v1/orders/42) = %v, want orders.get", r)
	}
}

func TestMergeSourceRefusals(t *testing.T) {
	policy, trust := testDocs(t)
	keyA := testKey(t, 1, "").Public().Key
	tests := []struct {
		name string
		m    func(*MergeSource)
		want error  // sentinel, or nil with wantText
		text string // substring of the error
	}{
		{"duplicate kid", func(m *MergeSource) { m.Client.Issuer, m.Client.KID = issA, "a-1" }, ErrDuplicateKID, `already has kid "a-1"`},
		{"same key other kid", func(m *MergeSource) { m.Client.Issuer, m.Client.PublicKey = issA, keyA }, ErrConflict, `as kid "a-1"`},
		{"other trust domain", func(m *MergeSource) { m.Client.Issuer, m.Client.TrustDomain = issA, "other.local" }, ErrConflict, `trust domain "example.local", not "other.local"`},
		{"other source type", func(m *MergeSource) { m.Client.Issuer, m.Client.SourceType = issA, "oidc_jwks" }, ErrConflict, "source type"},
		{"unknown route", func(m *MergeSource) { m.Routes = []string{"orders.create", "nope"} }, ErrUnknownRoute, `route "nope"`},
		{"different rule same subject", func(m *MergeSource) {
			m.Client.Issuer, m.Client.KID, m.ReplaceExisting = issA, "a-2", false
			m.Client.RequiredKeyBinding = "hardware_local"
			m.Client.Subject = Subject{Exact: "svc:a"}
		}, ErrDuplicateSource, `route "orders.create" already has a source rule`},
		{"no route", func(m *MergeSource) { m.Routes = nil }, nil, "no route named"},
		{"bad binding", func(m *MergeSource) { m.Client.RequiredKeyBinding = "tpm" }, nil, `unknown key binding "tpm"`},
		{"bad key entry binding", func(m *MergeSource) { m.Client.KeyBinding = "tpm" }, nil, `key_binding: unknown key binding "tpm"`},
		{"bad key entry cap", func(m *MergeSource) { m.Client.MaxKeyBinding = "Remote_KMS" }, nil, `max_key_binding: unknown key binding "Remote_KMS"`},
		{"two subjects", func(m *MergeSource) { m.Client.Subject.Prefix = "svc:" }, nil, "exactly one of subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := MergeSource{Client: newClient(t), Routes: []string{"orders.create"}}
			tt.m(&m)
			_, err := m.Apply(policy, trust)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Apply = %v, want %v containing %q", err, tt.want, tt.text)
			}
		})
	}
}

func TestMergeSourceReplaceExisting(t *testing.T) {
	policy, trust := testDocs(t)
	m := MergeSource{
		Client: Client{Issuer: issA, TrustDomain: "example.local", KID: "a-1", PublicKey: testKey(t, 5, "").Public().Key,
			Subject: Subject{Exact: "svc:a"}, RequiredKeyBinding: "hardware_local"},
		Routes: []string{"orders.get"}, ReplaceExisting: true,
	}
	r, err := m.Apply(policy, trust)
	if err != nil {
		t.Fatal(err)
	}
	p, tm := signedLoad(t, r.Policy, r.Trust)
	if k := tm.Issuers[issA].Keys; len(k) != 1 || string(k[0].PublicKey) != string(m.Client.PublicKey) {
		t.Errorf("issuer A keys = %v, want the one replaced key", k)
	}
	srcs := p.RouteByID("orders.get").Sources
	if len(srcs) != 2 || srcs[0].RequiredKeyBinding.String() != "hardware_local" {
		t.Errorf("orders.get sources = %+v, want A's rule replaced in place", srcs)
	}
	if got := p.RouteByID("orders.create").Sources[0].RequiredKeyBinding.String(); got != "software" {
		t.Errorf("orders.create (not named) binding = %s, want software", got)
	}

	// The same merge again changes nothing.
	r2, err := m.Apply(r.Policy, r.Trust)
	if err != nil {
		t.Fatal(err)
	}
	if r2.PolicyChanged || r2.TrustChanged || string(r2.Policy) != string(r.Policy) {
		t.Errorf("repeated merge changed documents: %q", r2.Changes)
	}
}

func TestRemoveSource(t *testing.T) {
	policy, trust := testDocs(t)
	base := [2][]byte{policy, trust}
	// Issuer A gets a second key, so removing a-1 can be a rotation.
	r, err := MergeSource{
		Client: Client{Issuer: issA, TrustDomain: "example.local", KID: "a-2", PublicKey: testKey(t, 6, "").Public().Key, Subject: Subject{Exact: "svc:a"}},
		Routes: []string{"orders.create"},
	}.Apply(policy, trust)
	if err != nil {
		t.Fatal(err)
	}
	twoKeys := [2][]byte{r.Policy, r.Trust}
	// Issuer B's only key also signs for svc:b2 on orders.create.
	r, err = MergeSource{
		Client: Client{Issuer: issB, TrustDomain: "example.local", KID: "b-1", PublicKey: testKey(t, 2, "").Public().Key, Subject: Subject{Exact: "svc:b2"}},
		Routes: []string{"orders.create"}, ReplaceExisting: true,
	}.Apply(policy, trust)
	if err != nil {
		t.Fatal(err)
	}
	bTwice := [2][]byte{r.Policy, r.Trust}

	tests := []struct {
		name          string
		in            [2][]byte
		r             RemoveSource
		want          error  // sentinel, if any
		text          string // error substring; "" means success
		policyChanged bool
		subject       string
		gone, kept    []string // routes that must no longer / still admit subject
	}{
		{name: "rotation keeps rules", in: twoKeys, r: RemoveSource{Issuer: issA, KID: "a-1"},
			subject: "svc:a", kept: []string{"orders.create", "orders.get"}},
		{name: "last key removes every rule", in: base, r: RemoveSource{Issuer: issB, KID: "b-1"},
			policyChanged: true, subject: "svc:b/x", gone: []string{"orders.get"}},
		{name: "subject in one route", in: twoKeys, r: RemoveSource{Issuer: issA, KID: "a-1", Subject: Subject{Exact: "svc:a"}, Routes: []string{"orders.get"}},
			policyChanged: true, subject: "svc:a", gone: []string{"orders.get"}, kept: []string{"orders.create"}},
		{name: "prefix selector never matches an exact rule", in: twoKeys, r: RemoveSource{Issuer: issA, KID: "a-1", Subject: Subject{Prefix: "svc:a"}},
			subject: "svc:a", kept: []string{"orders.create", "orders.get"}},
		{name: "empty route refused", in: base, r: RemoveSource{Issuer: issA, KID: "a-1"},
			want: ErrEmptyRoute, text: "routes orders.create: route would have no allowed sources"},
		{name: "named route without a rule refused", in: base, r: RemoveSource{Issuer: issB, KID: "b-1", Subject: Subject{Exact: "svc:b/1"}, Routes: []string{"orders.get"}},
			text: `route "orders.get" has no source rule of issuer "https://b.example" with subject_exact "svc:b/1"`},
		{name: "dangling rules refused", in: bTwice, r: RemoveSource{Issuer: issB, KID: "b-1", Subject: Subject{Prefix: "svc:b/"}},
			text: `issuer "https://b.example" has no key left, but routes orders.create keep source rules for it`},
		{name: "unknown kid", in: base, r: RemoveSource{Issuer: issA, KID: "zz"}, want: ErrUnknownKey, text: `kid "zz"`},
		{name: "unknown issuer", in: base, r: RemoveSource{Issuer: "https://x", KID: "a-1"}, want: ErrUnknownKey, text: `issuer "https://x"`},
		{name: "unknown route", in: twoKeys, r: RemoveSource{Issuer: issA, KID: "a-1", Routes: []string{"nope"}}, want: ErrUnknownRoute, text: `route "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.r.Apply(tt.in[0], tt.in[1])
			if tt.text != "" {
				if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
					t.Fatalf("Apply = %v, want %v containing %q", err, tt.want, tt.text)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.PolicyChanged != tt.policyChanged || !r.TrustChanged {
				t.Errorf("changed = %v, %v; want %v, true (%q)", r.PolicyChanged, r.TrustChanged, tt.policyChanged, r.Changes)
			}
			if !r.PolicyChanged && string(r.Policy) != string(tt.in[0]) {
				t.Error("unchanged policy is not the input byte for byte")
			}
			p, tm := signedLoad(t, r.Policy, r.Trust)
			if is := tm.Issuers[tt.r.Issuer]; is != nil {
				for _, k := range is.Keys {
					if k.KID == tt.r.KID {
						t.Errorf("key %s is still there", tt.r.KID)
					}
				}
			}
			for _, id := range tt.gone {
				if admits(p, id, tt.r.Issuer, tt.subject) {
					t.Errorf("route %s still admits %s", id, tt.subject)
				}
			}
			for _, id := range tt.kept {
				if !admits(p, id, tt.r.Issuer, tt.subject) {
					t.Errorf("route %s no longer admits %s", id, tt.subject)
				}
			}
		})
	}
}

// TestMergeSourceKeyBindings: the key entry's key_binding and
// max_key_binding reach the trust material when given, and replacing the
// key without them drops them (a replace writes the entry whole).
func TestMergeSourceKeyBindings(t *testing.T) {
	policy, trust := testDocs(t)
	c := newClient(t)
	c.KeyBinding, c.MaxKeyBinding = "hardware_local", "remote_kms"
	r, err := MergeSource{Client: c, Routes: []string{"orders.create"}}.Apply(policy, trust)
	if err != nil {
		t.Fatal(err)
	}
	_, tm := signedLoad(t, r.Policy, r.Trust)
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	if k := tm.PassportKey(c.Issuer, c.KID, true, "", now); k == nil || k.KeyBinding.String() != "hardware_local" || k.MaxKeyBinding.String() != "remote_kms" {
		t.Fatalf("merged key = %+v, want key_binding hardware_local, max_key_binding remote_kms", k)
	}
	c.KeyBinding, c.MaxKeyBinding = "", ""
	r, err = MergeSource{Client: c, Routes: []string{"orders.create"}, ReplaceExisting: true}.Apply(r.Policy, r.Trust)
	if err != nil {
		t.Fatal(err)
	}
	_, tm = signedLoad(t, r.Policy, r.Trust)
	if k := tm.PassportKey(c.Issuer, c.KID, true, "", now); k == nil || k.KeyBinding.String() != "software" || k.MaxKeyBinding.Valid() {
		t.Fatalf("replaced key = %+v, want the defaults", k)
	}
}
