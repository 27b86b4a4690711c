// Package importer translates an HAProxy configuration and, optionally, a
// keepalived configuration into an equivalent kclb config.toml: the
// migration path `kclb import haproxy.cfg [keepalived.conf]`.
//
// ParseHAProxy and ParseKeepalived only tokenise and structure their
// input; Import maps the directives onto kclb's configuration keys and
// renders commented TOML in which every imported value names the file,
// line and directive it came from. Directives with no kclb equivalent, or
// whose meaning changes, become Warnings; they are also written as
// comments at the top of the output, so a reviewer sees them next to the
// result.
//
// The output uses absolute paths as found in the input (the HAProxy
// combined PEM is used as both certificate and key, which kclb accepts)
// plus /etc/kclb/affinity.key for the affinity secret; it passes
// `kclb check` once those files exist.
package importer
