package jsontree

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	o, err := Decode([]byte(`{"b":1,"a":{"y":[1,{"z":"\u00e9"}],"x":null},"c":true}`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range o.Members {
		names = append(names, m.Name)
	}
	if strings.Join(names, ",") != "b,a,c" {
		t.Errorf("member order = %v, want b,a,c (document order)", names)
	}
	if v, _ := o.Get("b"); v != json.Number("1") {
		t.Errorf("b = %#v, want json.Number 1", v)
	}
	m := ToMap(o)
	z := m["a"].(map[string]any)["y"].([]any)[1].(map[string]any)["z"]
	if z != "é" {
		t.Errorf("ToMap nested value = %#v", z)
	}
}

func TestDecodeRefuses(t *testing.T) {
	deep := strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1)
	for _, tt := range []struct{ in, want string }{
		{`{"a":1,"a":2}`, "a: duplicate member"},
		{`{"a":{"b":1,"\u0062":2}}`, "a.b: duplicate member"},
		{`{"a":[{"b":1,"b":1}]}`, "a[0].b: duplicate member"},
		{"{\"a\":\"\xff\"}", "not valid UTF-8"},
		{`[1]`, "not a JSON object"},
		{`{"a":1} {}`, "data after the top-level JSON object"},
		{`{"a":}`, "a: malformed JSON"},
		{deep, "nested deeper than 32 levels"},
	} {
		if _, err := Decode([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%.40q) = %v, want an error with %q", tt.in, err, tt.want)
		}
	}
}
