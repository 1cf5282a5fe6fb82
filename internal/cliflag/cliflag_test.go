package cliflag

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestApplyEnv(t *testing.T) {
	env := map[string]string{
		"TPCLUSTER_LISTEN":            ":9999",
		"TPCLUSTER_MAX_BODY_BYTES":    "42",
		"TPCLUSTER_BUNDLE_PUBLIC_KEY": "a.pub, b.pub",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", ":8081", "")
	maxBody := fs.Int64("max-body-bytes", 1<<20, "")
	upstream := fs.String("upstream", "", "")
	var keys List
	fs.Var(&keys, "bundle-public-key", "")
	if err := fs.Parse([]string{"--listen", ":1234"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fs, lookup); err != nil {
		t.Fatal(err)
	}
	if *listen != ":1234" {
		t.Errorf("listen = %q: an explicit flag beats the environment", *listen)
	}
	if *maxBody != 42 {
		t.Errorf("max-body-bytes = %d, want 42 from the environment", *maxBody)
	}
	if *upstream != "" {
		t.Errorf("upstream = %q, want the default", *upstream)
	}
	if len(keys) != 2 || keys[0] != "a.pub" || keys[1] != "b.pub" {
		t.Errorf("bundle-public-key = %q, want [a.pub b.pub]", keys)
	}

	env["TPCLUSTER_MAX_BODY_BYTES"] = "lots"
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	fs2.Int64("max-body-bytes", 1, "")
	if err := ApplyEnv(fs2, lookup); err == nil {
		t.Error("ApplyEnv accepted TPCLUSTER_MAX_BODY_BYTES=lots")
	}
}

func TestProblem(t *testing.T) {
	got := Problem("max-body-bytes", -1, "must be positive").Error()
	want := "--max-body-bytes=-1 (TPCLUSTER_MAX_BODY_BYTES): must be positive"
	if got != want {
		t.Errorf("Problem = %q, want %q", got, want)
	}
}

// TestParseEveryProblem: bad values on the command line and in the
// environment are all reported, each naming flag, variable and value, and
// good values around them still apply.
func TestParseEveryProblem(t *testing.T) {
	env := map[string]string{"TPCLUSTER_RETRIES": "many", "TPCLUSTER_NAME": "from-env"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var usage strings.Builder
	fs.SetOutput(&usage)
	skew := fs.Duration("clock-skew", 30*time.Second, "")
	fs.Duration("ttl", time.Minute, "")
	verbose := fs.Bool("verbose", false, "")
	fs.Int("retries", 3, "")
	name := fs.String("name", "", "")
	err := Parse(fs, []string{"--clock-skew", "5", "--verbose", "--ttl=soon", "rest"}, lookup)
	if err == nil {
		t.Fatal("Parse accepted a malformed duration")
	}
	for _, want := range []string{
		`--clock-skew="5" (TPCLUSTER_CLOCK_SKEW): want a duration such as 500ms, 5s or 1h`,
		`--ttl="soon" (TPCLUSTER_TTL): want a duration`,
		`TPCLUSTER_RETRIES="many" (--retries): want an integer`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Parse error lacks %q:\n%v", want, err)
		}
	}
	if usage.Len() != 0 {
		t.Errorf("Parse printed the usage on a bad value:\n%s", usage.String())
	}
	if *skew != 30*time.Second || !*verbose || *name != "from-env" || fs.NArg() != 1 {
		t.Errorf("skew %v verbose %v name %q args %q: the good values must still apply", *skew, *verbose, *name, fs.Args())
	}
	if _, ok := fs.Lookup("clock-skew").Value.(interface{ Get() any }); !ok {
		t.Error("the flag values stay wrapped after Parse")
	}

	usage.Reset()
	if err := Parse(fs, []string{"-h"}, lookup); !errors.Is(err, flag.ErrHelp) || !strings.Contains(usage.String(), "-clock-skew duration") {
		t.Errorf("Parse(-h) = %v, usage:\n%s", err, usage.String())
	}
}

func TestVersion(t *testing.T) {
	v := Version("tpx")
	if !strings.HasPrefix(v, "tpx github.com/tpcluster/tpcluster") || !strings.Contains(v, " commit ") || !strings.Contains(v, "go1.") {
		t.Errorf("Version = %q, want command, module path, commit and Go version", v)
	}
}
