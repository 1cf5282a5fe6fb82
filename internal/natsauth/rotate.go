package natsauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// SigningFile holds what Rotate needs besides the creds files: the operator
// and account seeds and the current JWTs (0600). It is the one secret that
// can mint credentials: it stays with whoever runs tpnats, never on a
// server or a pod.
const SigningFile = "signing.json"

// signing is the content of SigningFile.
type signing struct {
	Operator     string `json:"operator_jwt"`
	OperatorSeed string `json:"operator_seed"`
	SysAccount   string `json:"system_account"`
	SysJWT       string `json:"system_account_jwt"`
	Account      string `json:"account_jwt"`
	AccountSeed  string `json:"account_seed"`
}

// accountSubject returns the public key an account JWT is about; "" if it
// does not decode (auth.conf then names no account and the server refuses
// to start, which is where the operator sees it).
func accountSubject(accountJWT string) string {
	ac, err := jwt.DecodeAccountClaims(accountJWT)
	if err != nil {
		return ""
	}
	return ac.Subject
}

// RotateOptions configures Rotate.
type RotateOptions struct {
	// Dir is a directory written by Generate, holding SigningFile. Required.
	Dir string
	// Role is the role whose credential is replaced. Required.
	Role Role
	// UserTTL is how long the new credential is valid. If zero, it does not
	// expire.
	UserTTL time.Duration
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Rotated is what Rotate did: the user key it revoked and the account JWT
// carrying the revocation, to push to every server (Apply, or a
// configuration reload of auth.conf).
type Rotated struct {
	RevokedUser string
	AccountJWT  string
}

// Rotate issues opts.Role a new user credential and revokes the old one:
// the account JWT gets a revocation of the old user's public key, effective
// from now (jwt/v2 Account.Revocations), re-signed by the operator. It
// replaces <role>.creds atomically (0600), then SigningFile and auth.conf.
// A server applies the revocation when it gets the new account JWT: from
// auth.conf on a configuration reload (MEMORY resolver), or pushed on
// $SYS.REQ.ACCOUNT.<id>.CLAIMS.UPDATE; it then closes the old user's
// connections. A client using nats.UserCredentials reads the creds file at
// every (re)connect, so it comes back with the new credential, no restart.
func Rotate(opts RotateOptions) (Rotated, error) {
	if opts.Dir == "" {
		return Rotated{}, errors.New("natsauth: rotate: no directory")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	now := opts.Now()
	if !slices.Contains(Roles(), opts.Role) {
		return Rotated{}, fmt.Errorf("natsauth: rotate: unknown role %q", opts.Role)
	}
	signPath := filepath.Join(opts.Dir, SigningFile)
	data, err := os.ReadFile(signPath)
	if err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: %w (a set from before rotation support cannot rotate: generate a new one)", err)
	}
	var s signing
	if err := json.Unmarshal(data, &s); err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: %s: %w", signPath, err)
	}
	op, err := nkeys.FromSeed([]byte(s.OperatorSeed))
	if err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: %s: operator seed: %w", signPath, err)
	}
	acct, err := nkeys.FromSeed([]byte(s.AccountSeed))
	if err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: %s: account seed: %w", signPath, err)
	}
	ac, err := jwt.DecodeAccountClaims(s.Account)
	if err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: %s: account JWT: %w", signPath, err)
	}

	credsPath := filepath.Join(opts.Dir, CredsFile(opts.Role))
	old, err := os.ReadFile(credsPath)
	if err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: %w", err)
	}
	oldJWT, err := jwt.ParseDecoratedJWT(old)
	if err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: %s: %w", credsPath, err)
	}
	oldClaims, err := jwt.DecodeUserClaims(oldJWT)
	if err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: %s: %w", credsPath, err)
	}

	// The new user keeps the old one's permissions: the names the set was
	// generated for (buckets, shards, regions) are in them.
	creds, err := userCreds(acct, opts.Role, oldClaims.Permissions, now, opts.UserTTL)
	if err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: user %s: %w", opts.Role, err)
	}
	// Revoke what was issued up to now: the server refuses a user JWT of
	// that key issued at or before this time. The new user is a new key.
	ac.RevokeAt(oldClaims.Subject, now)
	ac.IssuedAt = now.Unix()
	acctJWT, err := ac.Encode(op)
	if err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: account: %w", err)
	}
	s.Account = acctJWT
	signData, err := json.Marshal(s)
	if err != nil {
		return Rotated{}, fmt.Errorf("natsauth: rotate: %w", err)
	}
	// The creds file first: a client that reconnects between the writes
	// gets the new credential, which the old account JWT accepts too.
	for _, f := range []file{{CredsFile(opts.Role), creds, 0o600}, {SigningFile, signData, 0o600}, {AuthConfFile, authConf(s), 0o644}} {
		if err := replaceFile(filepath.Join(opts.Dir, f.name), f.data, f.perm); err != nil {
			return Rotated{}, fmt.Errorf("natsauth: rotate: %w", err)
		}
	}
	return Rotated{RevokedUser: oldClaims.Subject, AccountJWT: acctJWT}, nil
}

// replaceFile writes data to a temporary file beside name (mode perm,
// synced) and renames it over name, so a reader sees the old or the new
// content, never a part.
func replaceFile(name string, data []byte, perm os.FileMode) error {
	tmp := name + ".tmp"
	os.Remove(tmp)
	if err := writeNew(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
