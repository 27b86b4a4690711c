// Package lab holds kclb's whole-system labs: tests that run the real
// binaries of a deployment (two kclb edges holding a VIP, Keycloak
// stand-ins, a client) in network namespaces and measure what users
// see while operators work on it. It has no code outside its tests;
// the namespaces come from internal/testlab.
package lab
