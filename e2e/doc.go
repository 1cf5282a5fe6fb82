// Package e2e holds tpcluster's end-to-end tests: they build the real
// binaries once, start them on loopback with real NATS servers (embedded in
// the test process, or an external nats-server built from the go.mod
// version) and drive them with requests signed by internal/signer.
//
// fleet_test.go is the one harness for what a test starts: newFleet (NATS:
// one server, a cluster or an external process), channel.start and startN
// (verifierd nodes), startPublisher and runBinary (bundlepub, tpaudit),
// startProc (any other process); everything stops on cleanup. Tests wait
// with testwait.Until.
package e2e
