// Package deptest checks the module's import graph against one layer table
// (STYLE §1): which package may import which, transitively for pure
// packages and directly for adapters, and that production code never imports
// a test-only package. The table itself is in the module root's
// deps_test.go; this package lists the graph once and applies it.
//
// It is test support: only _test.go files import it.
package deptest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
)

// Rule forbids an import path, saying why. A Path ending in "/" forbids
// every package under that prefix (and the prefix without its slash); any
// other Path forbids that package and its subpackages.
type Rule struct {
	Path string
	Why  string
}

// Layer is one package's row of the table.
type Layer struct {
	// Pure makes the row transitive: Deny holds for everything the package
	// reaches, and Allow for every import made by the package or by the
	// module's own packages it reaches. Otherwise (adapters, commands) both
	// hold for the package's own imports only: nats.go, for one, imports
	// net/http for websockets.
	Pure bool
	// Allow lists the non-standard-library imports permitted, matched as
	// Rule.Path is; nil allows any, an empty list the standard library only.
	Allow []string
	// Deny lists forbidden imports, standard library included.
	Deny []Rule
	// TestOnly marks test support: no production package may import it.
	TestOnly bool
}

// Package is what `go list -json` says about one package.
type Package struct {
	ImportPath string
	Standard   bool
	DepOnly    bool // reached only as a dependency of the listed patterns
	Imports    []string
	Deps       []string
}

// Violation is one import the table forbids, or a package without a row.
type Violation struct {
	Pkg, Import string
	Via         []string // the import chain from Pkg to Import, when not direct
	Rule        string   // the rule broken
	Why         string   // the reason the table gives, if any
}

func (v Violation) String() string {
	if v.Import == "" {
		return fmt.Sprintf("%s: %s", v.Pkg, v.Rule)
	}
	via := ""
	if len(v.Via) > 0 {
		via = " (via " + strings.Join(v.Via, " -> ") + ")"
	}
	s := fmt.Sprintf("%s imports %s%s; rule: %s", v.Pkg, v.Import, via, v.Rule)
	if v.Why != "" {
		s += ": " + v.Why
	}
	return s
}

// List runs `go list -deps -json` once on patterns in dir and returns every
// package it names, dependencies included.
func List(dir string, patterns ...string) ([]Package, error) {
	args := append([]string{"list", "-deps", "-json=ImportPath,Standard,DepOnly,Imports,Deps"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return nil, fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	var pkgs []Package
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p Package
		if err := dec.Decode(&p); err == io.EOF {
			return pkgs, nil
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}

// Check applies table to pkgs and returns every violation, in package
// order. Packages of module (the module path) that DepOnly does not mark
// must each have a row: a new package without one is a violation, so the
// table cannot fall behind the tree.
func Check(module string, pkgs []Package, table map[string]Layer) []Violation {
	byPath := make(map[string]*Package, len(pkgs))
	for i := range pkgs {
		byPath[pkgs[i].ImportPath] = &pkgs[i]
	}
	ours := func(path string) bool { return path == module || strings.HasPrefix(path, module+"/") }
	var vs []Violation
	for i := range pkgs {
		p := &pkgs[i]
		if p.DepOnly || !ours(p.ImportPath) {
			continue
		}
		layer, ok := table[p.ImportPath]
		if !ok {
			vs = append(vs, Violation{Pkg: p.ImportPath, Rule: "no row in the layer table (deps_test.go in the module root): add one saying what it may import"})
			continue
		}
		for _, imp := range p.Imports {
			if l, ok := table[imp]; ok && l.TestOnly && !layer.TestOnly {
				vs = append(vs, Violation{Pkg: p.ImportPath, Import: imp, Rule: imp + " is test support; only _test.go files and other test support may import it"})
			}
		}
		reach := p.Imports
		if layer.Pure {
			reach = p.Deps
		}
		for _, dep := range reach {
			for _, r := range layer.Deny {
				if !matches(dep, r.Path) {
					continue
				}
				via := chain(byPath, p.ImportPath, dep)
				// Only the first package on the way that the rule
				// denies: net/http, not each of its subpackages too.
				if len(via) > 2 && slices.ContainsFunc(via[1:len(via)-1], func(q string) bool { return matches(q, r.Path) }) {
					continue
				}
				vs = append(vs, Violation{Pkg: p.ImportPath, Import: dep, Via: via, Rule: "must not import " + r.Path + scope(layer), Why: r.Why})
			}
		}
		if layer.Allow == nil {
			continue
		}
		// The importers whose imports the allow list covers: the package,
		// and for a pure one every package of the module it reaches.
		importers := []string{p.ImportPath}
		if layer.Pure {
			for _, d := range p.Deps {
				if ours(d) {
					importers = append(importers, d)
				}
			}
		}
		seen := map[string]bool{}
		for _, from := range importers {
			q := byPath[from]
			if q == nil {
				continue
			}
			for _, imp := range q.Imports {
				if seen[imp] || isStd(byPath, imp) || allowed(imp, layer.Allow) {
					continue
				}
				seen[imp] = true
				v := Violation{Pkg: p.ImportPath, Import: imp, Rule: "may import only " + allowList(layer.Allow) + scope(layer)}
				if from != p.ImportPath {
					v.Via = chain(byPath, p.ImportPath, imp)
				}
				vs = append(vs, v)
			}
		}
	}
	for i := range vs {
		vs[i].trim(module + "/")
	}
	return vs
}

// trim drops the module path from the package paths in v, for messages a
// reader can take in.
func (v *Violation) trim(prefix string) {
	t := func(s string) string { return strings.ReplaceAll(s, prefix, "") }
	v.Pkg, v.Import, v.Rule = t(v.Pkg), t(v.Import), t(v.Rule)
	for i := range v.Via {
		v.Via[i] = t(v.Via[i])
	}
}

// chain returns a shortest import path from from to to, both ends
// included, or nil when to is a direct import of from.
func chain(byPath map[string]*Package, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		p := byPath[cur]
		if p == nil {
			continue
		}
		for _, imp := range p.Imports {
			if _, ok := prev[imp]; ok {
				continue
			}
			prev[imp] = cur
			if imp == to {
				var path []string
				for at := cur; at != from; at = prev[at] {
					path = append(path, at)
				}
				if len(path) == 0 {
					return nil
				}
				slices.Reverse(path)
				return append(append([]string{from}, path...), to)
			}
			queue = append(queue, imp)
		}
	}
	return nil
}

func matches(pkg, path string) bool {
	if before, ok := strings.CutSuffix(path, "/"); ok {
		return strings.HasPrefix(pkg, path) || pkg == before
	}
	return pkg == path || strings.HasPrefix(pkg, path+"/")
}

func allowed(pkg string, allow []string) bool {
	return slices.ContainsFunc(allow, func(a string) bool { return matches(pkg, a) })
}

// isStd reports a standard-library package: as go list says when it listed
// it, else by the first path element having no dot.
func isStd(byPath map[string]*Package, pkg string) bool {
	if p := byPath[pkg]; p != nil {
		return p.Standard
	}
	first, _, _ := strings.Cut(pkg, "/")
	return !strings.Contains(first, ".")
}

func allowList(allow []string) string {
	if len(allow) == 0 {
		return "the standard library"
	}
	return "the standard library, " + strings.Join(allow, ", ")
}

func scope(l Layer) string {
	if l.Pure {
		return ", transitively (a pure package)"
	}
	return ""
}
