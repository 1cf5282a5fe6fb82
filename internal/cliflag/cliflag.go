// Package cliflag adds what tpcluster's commands share on top of the standard
// flag package: each flag also read from TPCLUSTER_<FLAG> (explicit flag,
// then environment, then default; SPEC §10.1), parsing that reports every bad
// value at once (Parse), comma-separated list flags, problem messages that
// name flag, variable and value, and the --version line (Version).
package cliflag

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName is the environment variable of flag name: TPCLUSTER_ + upper case,
// "-" as "_".
func EnvName(name string) string {
	return "TPCLUSTER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// ApplyEnv sets every flag of fs that was not given on the command line from
// its environment variable, if set. Call it after fs.Parse. lookup is
// os.LookupEnv in production.
func ApplyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		v, ok := lookup(EnvName(f.Name))
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, e)
		}
	})
	return err
}

// Problem formats a configuration problem the way every command reports it:
// --max-body-bytes=-1 (TPCLUSTER_MAX_BODY_BYTES): must be positive.
func Problem(name string, value any, msg string) error {
	return fmt.Errorf("--%s=%v (%s): %s", name, value, EnvName(name), msg)
}

// List is a repeatable flag; each value may also be a comma-separated list,
// which is how the environment carries several values.
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set appends the comma-separated values of v.
func (l *List) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
