// Package reliability holds kclb's adversarial and fault tests for the
// HTTP proxy: request smuggling, response splitting and broken backends,
// slow clients, HTTP/2 abuse, header trust and path policy, cookie abuse,
// health-check abuse and a bounded soak. Every test drives a real proxy
// (proxy.New and proxy.NewServer on loopback listeners, wired like
// cmd/kclb wires them) against Keycloak stand-ins (kcsim) or raw TCP
// backends written in the tests, and asserts both the outcome on the
// wire and the counter that records it.
//
// The package has no non-test code. `go test ./reliability/` runs the
// fast cases; KCLB_SOAK=10m runs the soak for that long. The cases, what
// each sends and the figures measured are listed in docs/reliability.md.
package reliability
