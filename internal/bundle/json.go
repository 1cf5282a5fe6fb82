package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/gowebpki/jcs"

	"github.com/tpcluster/tpcluster/internal/jsontree"
)

// maxSafeInteger is 2^53-1: larger integers change under RFC 8785, which
// writes every number as an IEEE double, so the signed bytes would not say
// what we parsed.
const maxSafeInteger = 1<<53 - 1

// parseTree decodes data (internal/jsontree: duplicate member names at any
// level, invalid UTF-8, deep nesting and trailing data refused; SPEC §5.1)
// into a tree of map[string]any, []any, string, json.Number, bool and nil.
func parseTree(data []byte) (map[string]any, error) {
	top, err := jsontree.Decode(data)
	if err != nil {
		return nil, err
	}
	// encoding/json turns a lone surrogate escape into U+FFFD, so two
	// different documents would read alike and share a signature; RFC 8785
	// refuses them, as it refuses numbers beyond double range. Checking the
	// raw bytes here makes the tree say exactly what the document says.
	if _, err := jcs.Transform(data); err != nil {
		return nil, fmt.Errorf("not canonicalizable (RFC 8785): %v", err)
	}
	return jsontree.ToMap(top), nil
}

// object is a decoded JSON object and its path in the document, for errors
// that name the field (operator data, so naming it is fine).
type object struct {
	path string
	m    map[string]any
}

func (o object) at(name string) string { return jsontree.Join(o.path, name) }

// only refuses members not in known. Unknown members are refused so that a
// restriction we do not understand is never silently dropped (SPEC §5.1).
func (o object) only(known ...string) error {
	for _, name := range slices.Sorted(maps.Keys(o.m)) {
		if !slices.Contains(known, name) {
			return fmt.Errorf("%s: unknown member %q", o.path, name)
		}
	}
	return nil
}

func (o object) has(name string) bool {
	_, ok := o.m[name]
	return ok
}

func missing(o object, name string) error {
	if o.path == "" {
		return fmt.Errorf("missing required member %q", name)
	}
	return fmt.Errorf("%s: missing required member %q", o.path, name)
}

// str returns member name as a string; ok is false if absent. null and other
// types are refused: an explicit null is not an absent member.
func (o object) str(name string) (s string, ok bool, err error) {
	v, ok := o.m[name]
	if !ok {
		return "", false, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", false, fmt.Errorf("%s: must be a string", o.at(name))
	}
	return s, true, nil
}

// text returns member name as a non-empty string; ok is false if absent.
func (o object) text(name string) (string, bool, error) {
	s, ok, err := o.str(name)
	if err == nil && ok && s == "" {
		err = fmt.Errorf("%s: must not be empty", o.at(name))
	}
	return s, ok, err
}

// required returns member name as a non-empty string, refusing its absence.
func (o object) required(name string) (string, error) {
	s, ok, err := o.text(name)
	if err == nil && !ok {
		err = missing(o, name)
	}
	return s, err
}

func (o object) obj(name string) (object, bool, error) {
	v, ok := o.m[name]
	if !ok {
		return object{}, false, nil
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		return object{}, false, fmt.Errorf("%s: must be an object", o.at(name))
	}
	return object{path: o.at(name), m: m}, true, nil
}

// objects returns member name as an array of objects; ok is false if absent.
func (o object) objects(name string) ([]object, bool, error) {
	v, ok := o.m[name]
	if !ok {
		return nil, false, nil
	}
	a, isArr := v.([]any)
	if !isArr {
		return nil, false, fmt.Errorf("%s: must be an array", o.at(name))
	}
	objs := make([]object, len(a))
	for i, e := range a {
		m, isObj := e.(map[string]any)
		p := fmt.Sprintf("%s[%d]", o.at(name), i)
		if !isObj {
			return nil, false, fmt.Errorf("%s: must be an object", p)
		}
		objs[i] = object{path: p, m: m}
	}
	return objs, true, nil
}

// strings returns member name as an array of strings; ok is false if absent.
func (o object) strings(name string) ([]string, bool, error) {
	v, ok := o.m[name]
	if !ok {
		return nil, false, nil
	}
	a, isArr := v.([]any)
	if !isArr {
		return nil, false, fmt.Errorf("%s: must be an array", o.at(name))
	}
	ss := make([]string, len(a))
	for i, e := range a {
		s, isStr := e.(string)
		if !isStr {
			return nil, false, fmt.Errorf("%s[%d]: must be a string", o.at(name), i)
		}
		ss[i] = s
	}
	return ss, true, nil
}

func (o object) boolean(name string) (b, ok bool, err error) {
	v, ok := o.m[name]
	if !ok {
		return false, false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, false, fmt.Errorf("%s: must be true or false", o.at(name))
	}
	return b, true, nil
}

var integerText = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// integer returns member name as an integer within ±(2^53-1), written
// without fraction or exponent; ok is false if absent.
func (o object) integer(name string) (int64, bool, error) {
	v, ok := o.m[name]
	if !ok {
		return 0, false, nil
	}
	n, isNum := v.(json.Number)
	if !isNum || !integerText.MatchString(string(n)) {
		return 0, false, fmt.Errorf("%s: must be an integer", o.at(name))
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil || i > maxSafeInteger || i < -maxSafeInteger {
		return 0, false, fmt.Errorf("%s: integer out of range (at most 2^53-1)", o.at(name))
	}
	return i, true, nil
}

// timestamp returns member name as an RFC 3339 UTC time ("Z", SPEC §5.3);
// ok is false if absent.
func (o object) timestamp(name string) (time.Time, bool, error) {
	s, ok, err := o.str(name)
	if err != nil || !ok {
		return time.Time{}, ok, err
	}
	t, err := parseTime(s)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%s: %w", o.at(name), err)
	}
	return t, true, nil
}

func parseTime(s string) (time.Time, error) {
	if len(s) == 0 || s[len(s)-1] != 'Z' {
		return time.Time{}, errors.New("must be an RFC 3339 UTC time ending in Z")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("must be an RFC 3339 UTC time ending in Z")
	}
	return t, nil
}
