package passport

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// derivedToken is the passport of DERIVED-software-signed-request.json,
// minted by the public Python SDK with the key of testKey.
const derivedToken = "eyJhbGciOiJFZERTQSIsImtpZCI6InByb29mLWtleS0xIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic3ViIjoic3BpZmZlOi8vZXhhbXBsZS5sb2NhbC93b3JrbG9hZC9vcmRlcnMiLCJhdWQiOiJvcmRlcnMtYXBpIiwiaWF0IjoxNzQwMDAwMDAwLCJleHAiOjE3NDAwMDAzMDAsImp0aSI6InBhc3Nwb3J0LXYxLW1pbmltYWwtMDAxIiwidHJ1c3RfZG9tYWluIjoiZXhhbXBsZS5sb2NhbCIsImNuZiI6eyJraWQiOiJBNkVIdl9QT0VMNGRjTjBZNTB2QW1XZmsxakNicFExZkhkeUdaQkpWTWJnIiwicHVibGljX2tleV9iNjR1cmwiOiJBNkVIdl9QT0VMNGRjTjBZNTB2QW1XZmsxakNicFExZkhkeUdaQkpWTWJnIiwia2V5X2JpbmRpbmciOiJzb2Z0d2FyZSJ9fQ.k1OmYbyOsqKQAcPVM5GFGJVaoQS5CkZ1n0aaOtCddzaONZyFuDWwhqBByeQQXaV2UijnolcCNjo2Ftyz_-EJAg"

const derivedPublicKey = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"

// The header and payload of derivedToken, the base most test tokens vary.
const (
	baseHeader  = `{"alg":"EdDSA","kid":"proof-key-1","typ":"JWT"}`
	basePayload = `{"iss":"https://issuer.example","sub":"spiffe://example.local/workload/orders","aud":"orders-api","iat":1740000000,"exp":1740000300,"jti":"passport-v1-minimal-001","trust_domain":"example.local","cnf":{"kid":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg","public_key_b64url":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg","key_binding":"software"}}`
)

// testKey is the DERIVED vector's test-only key: seed bytes 0x00..0x1f.
func testKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// mint signs header and payload, given as JSON text, with key.
func mint(key ed25519.PrivateKey, header, payload string) string {
	in := b64([]byte(header)) + "." + b64([]byte(payload))
	return in + "." + b64(ed25519.Sign(key, []byte(in)))
}

// mintClaims marshals claims and signs them under baseHeader.
func mintClaims(tb testing.TB, key ed25519.PrivateKey, claims any) string {
	tb.Helper()
	p, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	return mint(key, baseHeader, string(p))
}
