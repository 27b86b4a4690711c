package config

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a Go duration string such
// as "5s", "250ms" or "1h30m". The zero value is a zero duration.
type Duration struct {
	time.Duration
}

// Dur returns a Duration holding d.
func Dur(d time.Duration) Duration { return Duration{d} }

// UnmarshalText parses a Go duration string ("5s", "250ms").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write e.g. \"5s\" or \"250ms\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration in Go syntax ("5s").
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}

// FileMode is a Unix permission mode written in TOML as an octal string such
// as "0660". The zero value is mode 0.
type FileMode os.FileMode

// UnmarshalText parses an octal permission mode no larger than 0777.
func (m *FileMode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("%q is not an octal permission mode such as \"0660\"", b)
	}
	*m = FileMode(v)
	return nil
}

// MarshalText writes the mode as four octal digits ("0660").
func (m FileMode) MarshalText() ([]byte, error) {
	return []byte(m.String()), nil
}

// String returns the mode as four octal digits ("0660").
func (m FileMode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// enumNames is the text form of one enum type, indexed by value.
type enumNames []string

func (n enumNames) name(v uint8) string {
	if int(v) < len(n) {
		return n[v]
	}
	return "invalid(" + strconv.Itoa(int(v)) + ")"
}

func (n enumNames) parse(b []byte) (uint8, error) {
	for i, s := range n {
		if string(b) == s {
			return uint8(i), nil
		}
	}
	return 0, fmt.Errorf("%q is not one of %s", b, n.list())
}

func (n enumNames) list() string {
	q := make([]string, len(n))
	for i, s := range n {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func (n enumNames) marshal(v uint8) ([]byte, error) {
	if int(v) >= len(n) {
		return nil, fmt.Errorf("config: invalid enum value %d", v)
	}
	return []byte(n[v]), nil
}

// LogFormat selects the log encoding. The zero value is LogText.
type LogFormat uint8

// Log formats.
const (
	LogText LogFormat = iota // "text": slog's text handler
	LogJSON                  // "json": slog's JSON handler
)

var logFormatNames = enumNames{"text", "json"}

// String returns the TOML spelling ("text", "json").
func (f LogFormat) String() string { return logFormatNames.name(uint8(f)) }

// UnmarshalText parses "text" or "json".
func (f *LogFormat) UnmarshalText(b []byte) error {
	v, err := logFormatNames.parse(b)
	*f = LogFormat(v)
	return err
}

// MarshalText returns the TOML spelling.
func (f LogFormat) MarshalText() ([]byte, error) { return logFormatNames.marshal(uint8(f)) }

// LogLevel is the minimum level logged. The zero value is LogInfo.
type LogLevel uint8

// Log levels.
const (
	LogInfo  LogLevel = iota // "info"
	LogDebug                 // "debug"
	LogWarn                  // "warn"
	LogError                 // "error"
)

var logLevelNames = enumNames{"info", "debug", "warn", "error"}

// String returns the TOML spelling ("info", "debug", "warn", "error").
func (l LogLevel) String() string { return logLevelNames.name(uint8(l)) }

// UnmarshalText parses "debug", "info", "warn" or "error".
func (l *LogLevel) UnmarshalText(b []byte) error {
	v, err := logLevelNames.parse(b)
	*l = LogLevel(v)
	return err
}

// MarshalText returns the TOML spelling.
func (l LogLevel) MarshalText() ([]byte, error) { return logLevelNames.marshal(uint8(l)) }

// SlogLevel returns the matching slog level (slog.LevelInfo for unknown values).
func (l LogLevel) SlogLevel() slog.Level {
	switch l {
	case LogDebug:
		return slog.LevelDebug
	case LogWarn:
		return slog.LevelWarn
	case LogError:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Balance is the backend selection policy. The zero value is BalanceLeastRequest.
type Balance uint8

// Balancing policies.
const (
	BalanceLeastRequest Balance = iota // "least_request": power of two random choices by in-flight requests
	BalanceRoundRobin                  // "round_robin": weighted round robin
)

var balanceNames = enumNames{"least_request", "round_robin"}

// String returns the TOML spelling ("least_request", "round_robin").
func (b Balance) String() string { return balanceNames.name(uint8(b)) }

// UnmarshalText parses "least_request" or "round_robin".
func (b *Balance) UnmarshalText(t []byte) error {
	v, err := balanceNames.parse(t)
	*b = Balance(v)
	return err
}

// MarshalText returns the TOML spelling.
func (b Balance) MarshalText() ([]byte, error) { return balanceNames.marshal(uint8(b)) }

// ProxyHeaders is the forwarding header family sent to Keycloak; it must
// match Keycloak's proxy-headers option. The zero value is ProxyXForwarded.
type ProxyHeaders uint8

// Forwarding header families.
const (
	ProxyXForwarded ProxyHeaders = iota // "xforwarded": X-Forwarded-For/-Proto/-Host/-Port
	ProxyForwarded                      // "forwarded": RFC 7239 Forwarded
)

var proxyHeadersNames = enumNames{"xforwarded", "forwarded"}

// String returns the TOML spelling ("xforwarded", "forwarded").
func (p ProxyHeaders) String() string { return proxyHeadersNames.name(uint8(p)) }

// UnmarshalText parses "xforwarded" or "forwarded".
func (p *ProxyHeaders) UnmarshalText(b []byte) error {
	v, err := proxyHeadersNames.parse(b)
	*p = ProxyHeaders(v)
	return err
}

// MarshalText returns the TOML spelling.
func (p ProxyHeaders) MarshalText() ([]byte, error) { return proxyHeadersNames.marshal(uint8(p)) }

// Scheme is the URL scheme of health checks. The zero value is SchemeHTTP.
type Scheme uint8

// Health check schemes.
const (
	SchemeHTTP  Scheme = iota // "http"
	SchemeHTTPS               // "https"
)

var schemeNames = enumNames{"http", "https"}

// String returns the TOML spelling ("http", "https").
func (s Scheme) String() string { return schemeNames.name(uint8(s)) }

// UnmarshalText parses "http" or "https".
func (s *Scheme) UnmarshalText(b []byte) error {
	v, err := schemeNames.parse(b)
	*s = Scheme(v)
	return err
}

// MarshalText returns the TOML spelling.
func (s Scheme) MarshalText() ([]byte, error) { return schemeNames.marshal(uint8(s)) }

// TLSVersion is the minimum TLS version accepted from clients. The zero value
// is TLS12.
type TLSVersion uint8

// TLS versions.
const (
	TLS12 TLSVersion = iota // "1.2"
	TLS13                   // "1.3"
)

var tlsVersionNames = enumNames{"1.2", "1.3"}

// String returns the TOML spelling ("1.2", "1.3").
func (v TLSVersion) String() string { return tlsVersionNames.name(uint8(v)) }

// UnmarshalText parses "1.2" or "1.3".
func (v *TLSVersion) UnmarshalText(b []byte) error {
	x, err := tlsVersionNames.parse(b)
	*v = TLSVersion(x)
	return err
}

// MarshalText returns the TOML spelling.
func (v TLSVersion) MarshalText() ([]byte, error) { return tlsVersionNames.marshal(uint8(v)) }

// ID returns the crypto/tls constant (tls.VersionTLS12 or tls.VersionTLS13).
func (v TLSVersion) ID() uint16 {
	if v == TLS13 {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// Rate is a request rate written in TOML as "COUNT/UNIT" with UNIT one of
// s, m or h ("10/s", "600/m"). The zero value is no rate (invalid where a
// rate is required).
type Rate struct {
	// Count requests per Per.
	Count int
	// Per is one second, one minute or one hour.
	Per time.Duration
}

var rateUnits = []struct {
	name string
	d    time.Duration
}{{"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}

// UnmarshalText parses "10/s", "600/m" or "100/h"; the count is 1..10^9.
func (r *Rate) UnmarshalText(b []byte) error {
	count, unit, ok := strings.Cut(string(b), "/")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 1 || n > 1e9 || count[0] == '+' {
		return fmt.Errorf("%q is not a rate (write e.g. \"10/s\" or \"600/m\")", b)
	}
	for _, u := range rateUnits {
		if unit == u.name {
			*r = Rate{Count: n, Per: u.d}
			return nil
		}
	}
	return fmt.Errorf("%q is not a rate: the unit after \"/\" is s, m or h", b)
}

// MarshalText writes the rate as "COUNT/UNIT".
func (r Rate) MarshalText() ([]byte, error) {
	for _, u := range rateUnits {
		if r.Per == u.d {
			return []byte(strconv.Itoa(r.Count) + "/" + u.name), nil
		}
	}
	return nil, fmt.Errorf("config: rate period %s is not 1s, 1m or 1h", r.Per)
}

// ClientAuth is whether a TLS listener asks clients for a certificate. The
// zero value is ClientAuthOff.
type ClientAuth uint8

// Client certificate modes.
const (
	ClientAuthOff      ClientAuth = iota // "off": no certificate asked for
	ClientAuthOptional                   // "optional": asked for; one sent must verify
	ClientAuthRequired                   // "required": a verified certificate or a TLS alert
)

var clientAuthNames = enumNames{"off", "optional", "required"}

// String returns the TOML spelling ("off", "optional", "required").
func (a ClientAuth) String() string { return clientAuthNames.name(uint8(a)) }

// UnmarshalText parses "off", "optional" or "required".
func (a *ClientAuth) UnmarshalText(b []byte) error {
	v, err := clientAuthNames.parse(b)
	*a = ClientAuth(v)
	return err
}

// MarshalText returns the TOML spelling.
func (a ClientAuth) MarshalText() ([]byte, error) { return clientAuthNames.marshal(uint8(a)) }

// CertHeader is the header family through which a verified client
// certificate reaches Keycloak (its x509cert-lookup provider). The zero
// value is CertHeaderRFC9440.
type CertHeader uint8

// Client certificate header families.
const (
	CertHeaderRFC9440 CertHeader = iota // "rfc9440": Client-Cert and Client-Cert-Chain
	CertHeaderHAProxy                   // "haproxy": SSL_CLIENT_CERT and CERT_CHAIN_n
	CertHeaderNginx                     // "nginx": ssl-client-cert and ssl-client-verify
	CertHeaderEnvoy                     // "envoy": x-forwarded-client-cert
)

var certHeaderNames = enumNames{"rfc9440", "haproxy", "nginx", "envoy"}

// String returns the TOML spelling ("rfc9440", "haproxy", "nginx", "envoy").
func (h CertHeader) String() string { return certHeaderNames.name(uint8(h)) }

// UnmarshalText parses "rfc9440", "haproxy", "nginx" or "envoy".
func (h *CertHeader) UnmarshalText(b []byte) error {
	v, err := certHeaderNames.parse(b)
	*h = CertHeader(v)
	return err
}

// MarshalText returns the TOML spelling.
func (h CertHeader) MarshalText() ([]byte, error) { return certHeaderNames.marshal(uint8(h)) }
