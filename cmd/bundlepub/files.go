package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/tpcluster/tpcluster/internal/atomicfile"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// maxDocumentBytes bounds what is read as a document: the bundle channel
// refuses values above NATS's default max payload, 1 MiB (SPEC §8.1), so a
// larger document could never be published.
const maxDocumentBytes = 1 << 20

// readDocument reads a policy bundle or trust material file.
func readDocument(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxDocumentBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes, the bundle channel's limit (SPEC §8.1)", path, maxDocumentBytes)
	}
	return data, nil
}

// writeAtomic writes data to path atomically (internal/atomicfile), so a
// reader (verifierd in file mode, a sync job) sees the old file or the new
// one, never a half-written one.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm)
}

// readVerifyKeys reads --bundle-public-key files.
func readVerifyKeys(paths []string) ([]bundle.VerifyKey, error) {
	keys := make([]bundle.VerifyKey, 0, len(paths))
	for _, p := range paths {
		k, err := keyfile.ReadPublic(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, bundle.NewVerifyKey(k))
	}
	return keys, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
