// Package e2e holds tpcluster's end-to-end tests: they build the real
// binaries once, start them on loopback with real NATS servers (embedded in
// the test process, or an external nats-server built from the go.mod
// version) and drive them with requests signed by internal/signer.
package e2e
