package bundleedit

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// unknownMembers names every member of doc (parsed JSON) that the Go type t
// has no field for, by its JSON path ("routes[2].signed_headers.requird"),
// sorted. encoding/json's DisallowUnknownFields stops at the first and
// says only `unknown field "requird"`, which leaves an operator searching a
// long config for it.
func unknownMembers(data []byte, t reflect.Type) []error {
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil // the decoder reports it
	}
	var errs []error
	walkUnknown(doc, t, "", &errs)
	return errs
}

func walkUnknown(v any, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return // a type error, which the decoder reports with its path
		}
		fields := make(map[string]reflect.Type)
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.IsExported() && name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		names := make([]string, 0, len(obj))
		for name := range obj {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			p := name
			if path != "" {
				p = path + "." + name
			}
			ft, ok := fields[name]
			if !ok {
				*errs = append(*errs, fmt.Errorf("%s: unknown member", p))
				continue
			}
			walkUnknown(obj[name], ft, p, errs)
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range arr {
			walkUnknown(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
}
