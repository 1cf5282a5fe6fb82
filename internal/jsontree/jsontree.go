// Package jsontree decodes JSON documents strictly into a tree that keeps
// member order, for the signed documents tpcluster reads and edits (policy
// bundles, trust material, beacons). Unlike encoding/json it refuses
// duplicate member names at any level (SPEC §5.1: a duplicate is a parser
// differential), invalid UTF-8 (which encoding/json silently replaces),
// nesting deeper than MaxDepth and anything after the top-level object.
// Errors name the member's path in the document. It imports only the
// standard library.
package jsontree

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MaxDepth bounds nesting: our documents are five levels deep, and a bound
// keeps hostile input from costing stack.
const MaxDepth = 32

// Object is a JSON object with its members in document order. Values are
// *Object, []any, string, json.Number (the number's text, unchanged), bool
// and nil.
type Object struct {
	Members []Member
}

// Member is one name and value of an Object.
type Member struct {
	Name  string
	Value any
}

// Get returns the value of the member called name.
func (o *Object) Get(name string) (any, bool) {
	for _, m := range o.Members {
		if m.Name == name {
			return m.Value, true
		}
	}
	return nil, false
}

// Decode decodes data, whose top level must be an object.
func Decode(data []byte) (*Object, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	o, err := decodeObject(dec, "", 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the top-level JSON object")
	}
	return o, nil
}

// ToMap returns o as map[string]any, with every nested Object converted
// too (member order is lost).
func ToMap(o *Object) map[string]any {
	m := make(map[string]any, len(o.Members))
	for _, mem := range o.Members {
		m[mem.Name] = toPlain(mem.Value)
	}
	return m
}

func toPlain(v any) any {
	switch v := v.(type) {
	case *Object:
		return ToMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = toPlain(e)
		}
		return out
	}
	return v
}

func decodeObject(dec *json.Decoder, path string, depth int) (*Object, error) {
	o := new(Object)
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(path, err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, malformed(path, errors.New("member name is not a string"))
		}
		p := Join(path, name)
		if seen[name] {
			return nil, fmt.Errorf("%s: duplicate member", p)
		}
		seen[name] = true
		v, err := decodeValue(dec, p, depth)
		if err != nil {
			return nil, err
		}
		o.Members = append(o.Members, Member{name, v})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, malformed(path, err)
	}
	return o, nil
}

func decodeValue(dec *json.Decoder, path string, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, malformed(path, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth >= MaxDepth {
		return nil, fmt.Errorf("%s: nested deeper than %d levels", path, MaxDepth)
	}
	if d == '{' {
		return decodeObject(dec, path, depth+1)
	}
	a := []any{}
	for i := 0; dec.More(); i++ {
		v, err := decodeValue(dec, fmt.Sprintf("%s[%d]", path, i), depth+1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
	}
	if _, err := dec.Token(); err != nil { // the closing bracket
		return nil, malformed(path, err)
	}
	return a, nil
}

func malformed(path string, err error) error {
	if path == "" {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	return fmt.Errorf("%s: malformed JSON: %w", path, err)
}

// Join extends a member path: "a" + "b" is "a.b", "" + "b" is "b".
func Join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
