package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
)

// Parse parses args into fs, then sets each flag not given on the command
// line from its TPCLUSTER_<FLAG> variable (lookup is os.LookupEnv when nil),
// and reports every problem at once (errors.Join), each naming flag,
// variable and value: a malformed duration is one line among the others,
// not the end of parsing followed by the whole usage. -h prints the usage to
// fs's output and returns flag.ErrHelp. An unknown flag stops the command
// line there (the flag package cannot tell its value from the next flag);
// the variables are still read. Positional arguments are left to the
// caller (fs.Args).
func Parse(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var errs []error
	source := "" // "" while args are parsed; the variable's name after
	orig := make(map[*flag.Flag]flag.Value)
	fs.VisitAll(func(f *flag.Flag) {
		orig[f] = f.Value
		f.Value = collect(f, &errs, &source)
	})
	// The wrappers live only during Parse: usage and later lookups see
	// the flag package's own types (and their "duration" in -h).
	restore := func() {
		for f, v := range orig {
			f.Value = v
		}
	}
	defer restore()
	out := fs.Output()
	fs.SetOutput(io.Discard) // the flag package would print the whole usage on any error
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		restore()
		if fs.Usage != nil {
			fs.Usage()
		} else {
			fmt.Fprintf(out, "Usage of %s:\n", fs.Name())
			fs.PrintDefaults()
		}
		return flag.ErrHelp
	}
	if err != nil {
		errs = append(errs, err)
	}
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := lookup(EnvName(f.Name)); ok {
			source = EnvName(f.Name)
			f.Value.Set(v) // a problem is collected, not returned
		}
	})
	return errors.Join(errs...)
}

// collecting wraps a flag's value so that a bad value becomes a problem in
// the list and parsing goes on.
type collecting struct {
	flag.Value
	name   string
	errs   *[]error
	source *string
}

// boolCollecting keeps a boolean flag boolean: "-v" without a value.
type boolCollecting struct{ *collecting }

func (b boolCollecting) IsBoolFlag() bool { return true }

func collect(f *flag.Flag, errs *[]error, source *string) flag.Value {
	c := &collecting{Value: f.Value, name: f.Name, errs: errs, source: source}
	if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
		return boolCollecting{c}
	}
	return c
}

func (c *collecting) Set(v string) error {
	prev := c.Value.String()
	if err := c.Value.Set(v); err != nil {
		// The flag package stores a zero on some failures; keep the value
		// as it was, so validation does not report the same flag again.
		c.Value.Set(prev)
		msg := want(c.Value, err)
		if *c.source == "" {
			*c.errs = append(*c.errs, fmt.Errorf("--%s=%s (%s): %s", c.name, strconv.Quote(v), EnvName(c.name), msg))
		} else {
			*c.errs = append(*c.errs, fmt.Errorf("%s=%s (--%s): %s", *c.source, strconv.Quote(v), c.name, msg))
		}
	}
	return nil
}

// String is safe on the zero value, which flag.PrintDefaults makes to
// find defaults.
func (c *collecting) String() string {
	if c == nil || c.Value == nil {
		return ""
	}
	return c.Value.String()
}

// want turns the flag package's bare "parse error" into what the value
// should look like.
func want(v flag.Value, err error) string {
	if err.Error() != "parse error" {
		return err.Error()
	}
	switch fmt.Sprintf("%T", v) {
	case "*flag.durationValue":
		return "want a duration such as 500ms, 5s or 1h"
	case "*flag.boolValue":
		return "want true or false"
	case "*flag.intValue", "*flag.int64Value":
		return "want an integer"
	case "*flag.uintValue", "*flag.uint64Value":
		return "want a non-negative integer"
	case "*flag.float64Value":
		return "want a number"
	}
	return "invalid value"
}
