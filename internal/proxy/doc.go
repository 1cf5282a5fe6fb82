// Package proxy is verifierd's HTTP face (SPEC §10.2): proxy mode, which
// verifies a request and forwards it upstream, check mode for gateways
// (nginx auth_request, Traefik forwardAuth, Envoy ext_authz HTTP), and the
// /_tp/ health, readiness and metrics endpoints.
//
// It is a thin adapter: it turns an *http.Request into a core.Request, asks
// core for a Decision, records it, and turns the Decision into a response. It
// decides nothing itself and never talks to NATS.
package proxy
