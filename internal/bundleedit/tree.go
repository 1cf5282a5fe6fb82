package bundleedit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tpcluster/tpcluster/internal/jsontree"
)

// object is a JSON object that keeps its members in document order, so an
// edit changes only what it means to change. Values are *object, []any,
// string, json.Number (the number's text, unchanged), bool and nil.
type object struct {
	members []member
}

type member struct {
	name  string
	value any
}

// parseDoc decodes a JSON document whose top level is an object, with
// internal/jsontree's strictness (the same as internal/bundle's loader:
// duplicate member names at any level, invalid UTF-8 and trailing data
// refused).
func parseDoc(data []byte) (*object, error) {
	t, err := jsontree.Decode(data)
	if err != nil {
		return nil, err
	}
	return fromTree(t), nil
}

// fromTree turns a decoded tree into the editable one.
func fromTree(t *jsontree.Object) *object {
	o := &object{members: make([]member, len(t.Members))}
	for i, m := range t.Members {
		o.members[i] = member{m.Name, fromValue(m.Value)}
	}
	return o
}

func fromValue(v any) any {
	switch v := v.(type) {
	case *jsontree.Object:
		return fromTree(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = fromValue(e)
		}
		return out
	}
	return v
}

func (o *object) get(name string) (any, bool) {
	for _, m := range o.members {
		if m.name == name {
			return m.value, true
		}
	}
	return nil, false
}

// set replaces member name where it stands, or appends it.
func (o *object) set(name string, v any) {
	for i := range o.members {
		if o.members[i].name == name {
			o.members[i].value = v
			return
		}
	}
	o.members = append(o.members, member{name, v})
}

// del removes member name and reports whether it was there.
func (o *object) del(name string) bool {
	for i, m := range o.members {
		if m.name == name {
			o.members = append(o.members[:i], o.members[i+1:]...)
			return true
		}
	}
	return false
}

// str returns member name if it is a string, else "".
func (o *object) str(name string) string {
	v, _ := o.get(name)
	s, _ := v.(string)
	return s
}

// objects returns member name as an array of objects. An absent member is
// an empty array; any other shape is an error naming path.
func (o *object) objects(name, path string) ([]*object, error) {
	v, ok := o.get(name)
	if !ok {
		return nil, nil
	}
	a, isArr := v.([]any)
	if !isArr {
		return nil, fmt.Errorf("%s: must be an array", jsontree.Join(path, name))
	}
	out := make([]*object, len(a))
	for i, e := range a {
		if out[i], ok = e.(*object); !ok {
			return nil, fmt.Errorf("%s[%d]: must be an object", jsontree.Join(path, name), i)
		}
	}
	return out, nil
}

// setObjects stores objs as member name.
func (o *object) setObjects(name string, objs []*object) {
	a := make([]any, len(objs))
	for i, e := range objs {
		a[i] = e
	}
	o.set(name, a)
}

// equal reports whether o and p have the same members with equal values,
// in any order. Numbers compare by their text.
func (o *object) equal(p *object) bool {
	if len(o.members) != len(p.members) {
		return false
	}
	for _, m := range o.members {
		v, ok := p.get(m.name)
		if !ok || !equalValue(m.value, v) {
			return false
		}
	}
	return true
}

func equalValue(a, b any) bool {
	switch a := a.(type) {
	case *object:
		b, ok := b.(*object)
		return ok && a.equal(b)
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalValue(a[i], b[i]) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}

// encode writes o as indented JSON (two spaces) with a final newline.
// Strings are written without HTML escaping, so text reads as it was
// written.
func (o *object) encode() ([]byte, error) {
	var b bytes.Buffer
	if err := encodeValue(&b, o, 0); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func encodeValue(b *bytes.Buffer, v any, depth int) error {
	indent := func(d int) { b.WriteString(strings.Repeat("  ", d)) }
	switch v := v.(type) {
	case *object:
		if len(v.members) == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteString("{\n")
		for i, m := range v.members {
			indent(depth + 1)
			if err := encodeString(b, m.name); err != nil {
				return err
			}
			b.WriteString(": ")
			if err := encodeValue(b, m.value, depth+1); err != nil {
				return err
			}
			if i < len(v.members)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		indent(depth)
		b.WriteByte('}')
	case []any:
		if len(v) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteString("[\n")
		for i, e := range v {
			indent(depth + 1)
			if err := encodeValue(b, e, depth+1); err != nil {
				return err
			}
			if i < len(v)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		indent(depth)
		b.WriteByte(']')
	case string:
		return encodeString(b, v)
	case json.Number:
		b.WriteString(string(v))
	case bool:
		if v {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case nil:
		b.WriteString("null")
	default:
		return fmt.Errorf("cannot encode a %T", v) // a bug in this package
	}
	return nil
}

func encodeString(b *bytes.Buffer, s string) error {
	var sb bytes.Buffer
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return err
	}
	b.Write(bytes.TrimSuffix(sb.Bytes(), []byte("\n")))
	return nil
}
