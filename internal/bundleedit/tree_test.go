package bundleedit

import (
	"strings"
	"testing"
)

func TestTreeRoundTrip(t *testing.T) {
	in := `{"z":1,"a":{"y":[1.50,"<x>",true,null,{}],"b":[]},"m":1e3,"u":"\u00e9"}`
	o, err := parseDoc([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := o.encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "z": 1,
  "a": {
    "y": [
      1.50,
      "<x>",
      true,
      null,
      {}
    ],
    "b": []
  },
  "m": 1e3,
  "u": "é"
}
`
	if string(out) != want {
		t.Errorf("encode = \n%s\nwant\n%s", out, want)
	}
	again, err := parseDoc(out)
	if err != nil || !again.equal(o) {
		t.Errorf("re-parse of the encoding differs (%v)", err)
	}
}

func TestTreeRefuses(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"duplicate", `{"a":1,"a":2}`, "a: duplicate member"},
		{"nested duplicate", `{"a":[{"b":1,"b":1}]}`, "a[0].b: duplicate member"},
		{"not object", `[1]`, "not a JSON object"},
		{"trailing", `{} {}`, "data after"},
		{"bad utf8", "{\"a\":\"\xff\"}", "UTF-8"},
		{"deep", strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40), "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDoc([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseDoc(%q) = %v, want error containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestObjectSetDel(t *testing.T) {
	o := newObject("a", "1", "b", "2", "c", "3")
	o.set("b", "x")
	o.set("d", "4")
	if !o.del("a") || o.del("zz") {
		t.Error("del reported wrongly")
	}
	var names []string
	for _, m := range o.members {
		names = append(names, m.name+"="+m.value.(string))
	}
	if got := strings.Join(names, ","); got != "b=x,c=3,d=4" {
		t.Errorf("members = %s, want b=x,c=3,d=4 (set keeps place, appends new)", got)
	}
}
