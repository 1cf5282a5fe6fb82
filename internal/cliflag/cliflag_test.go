package cliflag

import (
	"flag"
	"io"
	"testing"
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
