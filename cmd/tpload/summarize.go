package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/loadgen"
)

// summarize turns the JSON reports of one bench run into the "Load test"
// section (printed, or with --doc replaced in that document) and a
// summary.json beside the reports. bench.sh prints it into its results
// directory: a run never rewrites a reviewed document by itself.
func summarize(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tpload summarize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	results := fs.String("results", "loadtest/results", "directory of the bench's JSON reports")
	doc := fs.String("doc", "", "document whose load test section is replaced, e.g. docs/PERFORMANCE.md (empty: print the section)")
	var header cliflag.List
	fs.Func("header", "a line above the table (repeatable; commas are kept)", func(s string) error {
		header = append(header, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := loadgen.Summarize(*results)
	if err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(*results, "summary.json"), s); err != nil {
		return err
	}
	section := s.Markdown(header)
	if *doc == "" {
		_, err := io.WriteString(stdout, section)
		return err
	}
	old, err := os.ReadFile(*doc)
	if err != nil {
		return fmt.Errorf("summarize: %w", err)
	}
	out, err := loadgen.ReplaceSection(old, section)
	if err != nil {
		return fmt.Errorf("summarize %s: %w", *doc, err)
	}
	if err := os.WriteFile(*doc, out, 0o644); err != nil {
		return fmt.Errorf("summarize: %w", err)
	}
	_, err = io.WriteString(stdout, section)
	return err
}
