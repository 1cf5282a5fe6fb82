package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/natsauth"
)

// runRotate issues a role a new credential in a set written by init and
// revokes the old one (docs/NATS-SECURITY.md, revoking a credential).
func runRotate(args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tpnats rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory written by tpnats init (holds signing.json)")
	role := fs.String("role", "", "role whose credential is replaced: verifier, bundlepub, audit-reader or admin")
	userTTL := fs.Duration("user-ttl", 365*24*time.Hour, "validity of the new credential (0: no expiry)")
	if code, stop := parse(fs, args, lookup, stderr); stop {
		return code
	}
	var errs []error
	if *dir == "" {
		errs = append(errs, cliflag.Problem("dir", "", "required"))
	}
	if !slices.Contains(natsauth.Roles(), natsauth.Role(*role)) {
		errs = append(errs, cliflag.Problem("role", *role, fmt.Sprintf("want one of %v", natsauth.Roles())))
	}
	if *userTTL < 0 {
		errs = append(errs, cliflag.Problem("user-ttl", *userTTL, "must not be negative"))
	}
	if len(errs) > 0 {
		return invalid(stderr, fs.Name(), errs)
	}
	rot, err := natsauth.Rotate(natsauth.RotateOptions{Dir: *dir, Role: natsauth.Role(*role), UserTTL: *userTTL})
	if err != nil {
		fmt.Fprintf(stderr, "tpnats rotate: %v\n", err)
		if errors.Is(err, os.ErrNotExist) {
			return exitUsage
		}
		return exitFailure
	}
	abs, _ := filepath.Abs(*dir)
	fmt.Fprintf(stdout, `issued the %s role a new credential and revoked user %s:
  %s  the new credential (0600): give it to every %s client (replace the file; nats.go reads it at each reconnect)
  %s  the account with the revocation: reload every nats-server (nats-server --signal reload, or SIGHUP)
until the reload, the old credential still works; after it, clients still holding it are disconnected
and retry until their file is replaced.
`, *role, rot.RevokedUser, filepath.Join(abs, natsauth.CredsFile(natsauth.Role(*role))), *role, filepath.Join(abs, natsauth.AuthConfFile))
	return 0
}
