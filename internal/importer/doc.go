// Package importer translates an HAProxy configuration and, optionally, a
// keepalived configuration into an equivalent kclb config.toml: the
// migration path `kclb import haproxy.cfg [keepalived.conf]`.
//
// ParseHAProxy and ParseKeepalived only tokenise and structure their
// input; Import maps the directives onto kclb's configuration keys and
// renders commented TOML in which every imported value names the file,
// line and directive it came from. Every directive that is not simply
// mapped gets a message (Warning) with a Severity: Error when it could
// not be translated and its meaning would be lost (the importer never
// drops meaning silently: `kclb import` then writes nothing unless
// --force), Warn when it was translated with a change in behaviour, Note
// when kclb needs nothing for it. All are also written as comments at the
// top of the output, errors first, so a reviewer sees them next to the
// result.
//
// Where the input configures something, the output reproduces its
// behaviour. Where the input is silent, the output follows HAProxy's and
// keepalived's defaults when kclb's own would change what users or the
// peer node see (no health checks, no affinity, no slow start, no VRRP
// tracking, VRRP version 2), and says in a comment what kclb recommends.
// kclb's protections stay on (security headers added when Keycloak sets
// none, path filtering, forwarding-header hygiene); the ones that change
// behaviour are warnings.
//
// The output uses absolute paths as found in the input (the HAProxy
// combined PEM is used as both certificate and key, which kclb accepts)
// plus /etc/kclb/affinity.key for the affinity secret and
// /etc/kclb/admin.token for the admin listener a stats section becomes;
// it passes `kclb check --syntax-only` as generated, and `kclb check` once
// those files exist.
package importer
