package signer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tpcluster/tpcluster/internal/transcript"
)

// The wire headers of SPEC §3.5, spelled as the SDKs send them.
const (
	HeaderAuthorization    = "Authorization"
	HeaderNonce            = "X-TrustPlane-Nonce"
	HeaderBodySHA256       = "X-TrustPlane-Body-SHA256"
	HeaderTranscriptSHA256 = "X-TrustPlane-Transcript-SHA256"
	HeaderProof            = "X-TrustPlane-Proof"
)

// Request is a request to sign.
type Request struct {
	// Method, Scheme, Authority, Path (raw, as it goes on the wire) and
	// RawQuery (without '?') are the request target as the caller
	// addresses it.
	Method, Scheme, Authority, Path, RawQuery string
	Body                                      []byte
	// Headers are the caller's headers in send order, without any of the
	// five wire headers, which Sign adds.
	Headers []transcript.Header
	// Covered lists the covered names. If nil, every name in Headers is
	// covered, as the Python SDK's ProtectedClient does. x-trustplane-nonce
	// is always covered: a verifier requires it (SPEC §3.4).
	Covered []string
	// RouteID is the route the caller signs for.
	RouteID string
	// Nonce is the nonce, trimmed. If empty, 32 random lowercase hex
	// characters, as the SDKs make.
	Nonce string
}

// Signed is a signed request.
type Signed struct {
	// Headers are the five wire headers, in the order Authorization,
	// X-TrustPlane-Nonce, X-TrustPlane-Body-SHA256,
	// X-TrustPlane-Transcript-SHA256, X-TrustPlane-Proof.
	Headers []transcript.Header
	// Digest is the transcript digest the proof signs.
	Digest [32]byte
	// Canonical is the canonical transcript (SPEC §3.1).
	Canonical []byte
	// AllowList is the headers.allow_list the caller covered.
	AllowList []string
	// Nonce and BodySHA256 are the values sent in their headers.
	Nonce, BodySHA256 string
}

// Sign signs r under passport, which must have been minted for k: like the
// Python SDK's sign_request, it takes aud, jti, iat and cnf.key_binding from
// the passport's payload (without verifying its signature) and refuses a
// passport whose cnf.public_key_b64url is not k's. The proof is k's
// Ed25519 signature over the 32 digest bytes (SPEC §3.1).
//
// Unlike the Python SDK, which signs only "software", Sign writes whatever
// cnf.key_binding the passport claims, so tests can exercise policies
// that require stronger classes.
func (k *Key) Sign(passport string, r *Request) (Signed, error) {
	passport = strings.TrimSpace(passport)
	c, err := readClaims(passport)
	if err != nil {
		return Signed{}, err
	}
	if c.publicKey != k.pub {
		return Signed{}, errors.New("signer: passport cnf.public_key_b64url is not this key")
	}
	for _, h := range r.Headers {
		switch strings.ToLower(strings.TrimSpace(h.Name)) {
		case "authorization", "x-trustplane-nonce", "x-trustplane-body-sha256",
			"x-trustplane-transcript-sha256", "x-trustplane-proof":
			return Signed{}, fmt.Errorf("signer: request header %s is a wire header Sign sets", h.Name)
		}
	}
	nonce := strings.TrimSpace(r.Nonce)
	if nonce == "" {
		var b [16]byte
		rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
		nonce = hex.EncodeToString(b[:])
	}
	headers := append(append(make([]transcript.Header, 0, len(r.Headers)+1), r.Headers...),
		transcript.Header{Name: HeaderNonce, Value: nonce})
	covered := r.Covered
	if covered == nil {
		for _, h := range r.Headers {
			covered = append(covered, h.Name)
		}
	}
	covered = transcript.AllowList(append(covered[:len(covered):len(covered)], "x-trustplane-nonce"))
	var contentEncoding string
	for _, h := range r.Headers {
		if strings.EqualFold(strings.TrimSpace(h.Name), "content-encoding") {
			contentEncoding = h.Value
			break
		}
	}
	body := transcript.BodySHA256(r.Body)
	lines, err := transcript.Canonical(&transcript.Fields{
		Method: r.Method, Scheme: r.Scheme, Authority: r.Authority, Path: r.Path, RawQuery: r.RawQuery,
		Audience: c.audience, RouteID: r.RouteID, ContentEncoding: contentEncoding,
		Headers: headers, AllowList: covered, BodySHA256: body,
		PassportJTI: c.jti, Nonce: nonce, IssuedAt: c.issuedAt, KeyBinding: c.keyBinding,
	})
	if err != nil {
		return Signed{}, fmt.Errorf("signer: %w", err)
	}
	digest := sha256.Sum256(lines)
	hexDigest := hex.EncodeToString(digest[:])
	return Signed{
		Headers: []transcript.Header{
			{Name: HeaderAuthorization, Value: "Bearer " + passport},
			{Name: HeaderNonce, Value: nonce},
			{Name: HeaderBodySHA256, Value: body},
			{Name: HeaderTranscriptSHA256, Value: hexDigest},
			{Name: HeaderProof, Value: b64(k.sign(digest[:]))},
		},
		Digest:     digest,
		Canonical:  lines,
		AllowList:  covered,
		Nonce:      nonce,
		BodySHA256: body,
	}, nil
}

// claims are the passport claims a transcript binds.
type claims struct {
	audience, jti, keyBinding, publicKey string
	issuedAt                             int64
}

// readClaims reads the payload of a compact JWS without verifying it, as
// the Python SDK's sign_request does; the caller minted it.
func readClaims(token string) (claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, errors.New("signer: passport is not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return claims{}, fmt.Errorf("signer: passport payload: %w", err)
	}
	var p struct {
		Aud json.RawMessage `json:"aud"`
		JTI string          `json:"jti"`
		Iat json.Number     `json:"iat"`
		Cnf struct {
			KeyBinding string `json:"key_binding"`
			PublicKey  string `json:"public_key_b64url"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return claims{}, fmt.Errorf("signer: passport payload: %w", err)
	}
	c := claims{jti: p.JTI, keyBinding: p.Cnf.KeyBinding, publicKey: p.Cnf.PublicKey}
	// aud: a string, or the first element of an array (SPEC §2).
	var auds []string
	if json.Unmarshal(p.Aud, &c.audience) != nil {
		if json.Unmarshal(p.Aud, &auds) != nil || len(auds) == 0 {
			return claims{}, errors.New("signer: passport aud is neither a string nor a list of strings")
		}
		c.audience = auds[0]
	}
	if c.issuedAt, err = strconv.ParseInt(p.Iat.String(), 10, 64); err != nil || c.issuedAt <= 0 {
		return claims{}, errors.New("signer: passport iat is not a positive integer")
	}
	if c.audience == "" || c.jti == "" || c.keyBinding == "" || c.publicKey == "" {
		return claims{}, errors.New("signer: passport lacks aud, jti, cnf.key_binding or cnf.public_key_b64url")
	}
	return c, nil
}
