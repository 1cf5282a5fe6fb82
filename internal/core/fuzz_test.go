package core

import (
	"bytes"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// FuzzDecide mutates the DERIVED request (method, path, query, authority,
// body, one added header) and checks the property the whole pipeline
// exists for: whatever the fuzzer finds, a request is allowed only if
// every bound part is exactly what the caller signed. Nothing may panic.
func FuzzDecide(f *testing.F) {
	v := loadDerived(f)
	fx := newFixture(f, func(c *Config) { c.Ledger = acceptLedger{} })
	orig := derivedRequest(f, v)
	f.Add("POST", "/v1/orders", "", "orders.example", []byte(v.HTTPRequest.BodyUTF8), "X-Extra", "x")
	f.Add("POST", "/v1/orders/", "a=1", "ORDERS.example", []byte(`{}`), "Content-Type", "text/plain")
	f.Add("post", "/v1/%6Frders", "", "orders.example:443", []byte(v.HTTPRequest.BodyUTF8), "X-Trustplane-Nonce", "n")
	f.Fuzz(func(t *testing.T, method, path, query, authority string, body []byte, name, value string) {
		r := *orig
		r.Header = make(map[string][]string, len(orig.Header)+1)
		for k, vs := range orig.Header {
			r.Header[k] = append([]string(nil), vs...)
		}
		r.Method, r.RawPath, r.RawQuery, r.Authority, r.Body = method, path, query, authority, body
		if name != "" {
			k := canonicalKey(name)
			r.Header[k] = append(r.Header[k], value)
		}
		d := fx.p.Decide(t.Context(), &r)
		if d.Reason != reason.Allowed {
			if d.Outcome == Allow {
				t.Fatalf("outcome allow with reason %q", d.Reason)
			}
			return
		}
		// Allowed: every bound part must be what was signed. Method,
		// scheme and authority are compared as transcript-v1 folds them.
		if upperASCII(trimASCII(method)) != "POST" || path != "/v1/orders" || query != "" ||
			lowerASCII(trimASCII(authority)) != "orders.example" || !bytes.Equal(body, orig.Body) {
			t.Fatalf("allowed a request that differs from the signed one: %q %q ?%q host %q body %q", method, path, query, authority, body)
		}
		// What goes upstream as X-TrustPlane-Key-Binding is what the trust
		// material grants the self-issued key (SPEC §2.1): software.
		if d.KeyBinding != "software" {
			t.Fatalf("allowed with key binding %q, want software", d.KeyBinding)
		}
	})
}

// FuzzDecideClass fuzzes the inputs of the effective class (SPEC §2.1): the
// passport's cnf.key_binding text, who signs it (the caller itself or a
// broker), the key entries' key_binding and max_key_binding texts, and the
// route's required class. Whatever they are, trust material loads only with
// valid class names, and a request is allowed exactly when the class SPEC
// §2.1 computes meets the route's; the decision then carries that class.
func FuzzDecideClass(f *testing.F) {
	f.Add("hardware_local", false, "", "", uint8(2))
	f.Add("hardware_local", false, "hardware_local", "", uint8(2))
	f.Add("attested_workload", true, "", "remote_kms", uint8(3))
	f.Add("remote_kms", true, "software", "", uint8(1))
	f.Add("HARDWARE_LOCAL", false, "hardware_local", "x", uint8(0))
	fx := newFixture(f, nil)
	bk := brokerKey(f)
	var routes []doc
	for _, cl := range signerclass.Ordered {
		routes = append(routes, classRoute(cl.String(), cl.String()))
	}
	opts := bundle.Options{AllowUnsigned: true, ModTime: fx.now}
	pol, err := bundle.ParsePolicy(mustJSON(f, testPolicy(routes...)), opts)
	if err != nil {
		f.Fatal(err)
	}
	// optClass reads an optional class member as bundle does: absent ("")
	// is def.
	optClass := func(s string, def signerclass.Class) (signerclass.Class, bool) {
		if s == "" {
			return def, true
		}
		return signerclass.Parse(s)
	}
	f.Fuzz(func(t *testing.T, claimed string, broker bool, kb, max string, routeIdx uint8) {
		if !utf8.ValidString(claimed) {
			return // a caller-side signer cannot write it; passport tests cover such bytes
		}
		entry := func(k doc) {
			if kb != "" {
				k["key_binding"] = kb
			}
			if max != "" {
				k["max_key_binding"] = max
			}
		}
		tmDoc := testTrust(fx.key.PublicKeyB64())
		entry(tmDoc["issuers"].([]any)[0].(doc)["keys"].([]any)[0].(doc))
		tmDoc = withKey(tmDoc, brokerKID, bk.PublicKeyB64(), entry)
		tm, err := bundle.ParseTrustMaterial(mustJSON(t, tmDoc), opts)
		kbClass, kbOK := optClass(kb, signerclass.Software)
		maxClass, maxOK := optClass(max, 0)
		if (err == nil) != (kbOK && maxOK) {
			t.Fatalf("trust material with key_binding %q, max_key_binding %q: load error %v", kb, max, err)
		}
		if err != nil {
			return
		}
		snap := &Snapshot{Policy: pol, Trust: tm, ViewTime: fx.now}
		p, err := New(Config{Ledger: acceptLedger{}, Snapshot: func() *Snapshot { return snap }, Now: func() time.Time { return fx.now }})
		if err != nil {
			t.Fatal(err)
		}
		need := signerclass.Ordered[int(routeIdx)%len(signerclass.Ordered)]
		c := derivedCall()
		c.url, c.routeID = "https://orders.example/v1/"+need.String(), "orders."+need.String()
		po := passportOptions()
		po.KeyBinding = claimed
		c.passport = &po
		if broker {
			c.broker = bk
		}
		signer := &fixture{t: t, key: fx.key} // fx reports to f, which a fuzz target must not use
		d := p.Decide(t.Context(), signer.request(c))

		cl, ok := optClass(claimed, signerclass.Software) // the signer writes "" as software
		if !ok {
			if d.Reason != reason.PassportMalformed {
				t.Fatalf("cnf.key_binding %q: Decide = %q, want passport_malformed", claimed, d.Reason)
			}
			return
		}
		// SPEC §2.1 by ranks: nothing above the claim, nothing above what
		// the trust material grants the signing key.
		grant := signerclass.AttestedWorkload.Rank()
		switch {
		case !broker:
			grant = kbClass.Rank()
		case maxClass != 0:
			grant = maxClass.Rank()
		}
		eff := min(cl.Rank(), grant)
		want := reason.InsufficientKeyBinding
		if eff >= need.Rank() {
			want = reason.Allowed
		}
		got, _ := signerclass.Parse(d.KeyBinding)
		if d.Reason != want || got.Rank() != eff {
			t.Fatalf("claimed %s, broker %v, key_binding %q, max_key_binding %q, route needs %s: Decide = %q with %q (%v); want %q with rank %d",
				cl, broker, kb, max, need, d.Reason, d.KeyBinding, d.Err, want, eff)
		}
	})
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}
