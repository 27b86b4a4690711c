package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseV1(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		src      string // "" for no address
		n        int
		err      string // "" ok; "incomplete"; "none"; else a substring
	}{
		{"tcp4", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /", "192.0.2.1:56324", 45, ""},
		{"tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", "[2001:db8::1]:1", 44, ""},
		{"unknown", "PROXY UNKNOWN ffff::1 whatever\r\n", "", 32, ""},
		{"unknown bare", "PROXY UNKNOWN\r\n", "", 15, ""},
		{"prefix only", "PROX", "", 0, "incomplete"},
		{"no crlf yet", "PROXY TCP4 192.0.2.1", "", 0, "incomplete"},
		{"not proxy", "GET / HTTP/1.1\r\n", "", 0, "none"},
		{"lower case", "proxy TCP4", "", 0, "none"},
		{"family mismatch", "PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n", "", 0, "not an TCP4"},
		{"mapped in tcp6", "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n", "", 0, "not an TCP6"},
		{"port too big", "PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n", "", 0, "port"},
		{"leading zero port", "PROXY TCP4 192.0.2.1 192.0.2.2 080 2\r\n", "", 0, "port"},
		{"missing field", "PROXY TCP4 192.0.2.1 192.0.2.2 80\r\n", "", 0, "fields"},
		{"double space", "PROXY TCP4  192.0.2.1 192.0.2.2 80 81\r\n", "", 0, "fields"},
		{"udp", "PROXY UDP4 192.0.2.1 192.0.2.2 80 81\r\n", "", 0, "protocol"},
		{"bare LF", "PROXY TCP4 192.0.2.1 192.0.2.2 80 81\n", "", 0, "CRLF"},
		{"too long", "PROXY UNKNOWN " + strings.Repeat("x", 100), "", 0, "CRLF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := Parse([]byte(tc.in))
			switch tc.err {
			case "":
				if err != nil {
					t.Fatal(err)
				}
			case "incomplete":
				if !errors.Is(err, ErrIncomplete) {
					t.Fatalf("err %v, want ErrIncomplete", err)
				}
				return
			case "none":
				if !errors.Is(err, ErrNoHeader) {
					t.Fatalf("err %v, want ErrNoHeader", err)
				}
				return
			default:
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if n != tc.n || h.Version != 1 || h.Command != Proxy {
				t.Fatalf("n %d version %d command %s, want %d 1 PROXY", n, h.Version, h.Command, tc.n)
			}
			if got := addrString(h.Source); got != tc.src {
				t.Fatalf("source %q, want %q", got, tc.src)
			}
		})
	}
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func TestParseV2(t *testing.T) {
	src, dst := netip.MustParseAddrPort("203.0.113.9:40000"), netip.MustParseAddrPort("192.0.2.1:443")
	hdr := AppendV2(nil, src, dst, TLV{Type: 0x05, Value: []byte("unique-id")}, TLV{Type: 0x04})
	h, n, err := Parse(append(hdr, "GET /"...))
	if err != nil || n != len(hdr) {
		t.Fatalf("n %d (want %d), err %v", n, len(hdr), err)
	}
	if h.Version != 2 || h.Command != Proxy || h.Source != src || h.Dest != dst {
		t.Fatalf("header %+v", h)
	}
	if len(h.TLVs) != 2 || h.TLVs[0].Type != 5 || string(h.TLVs[0].Value) != "unique-id" || len(h.TLVs[1].Value) != 0 {
		t.Fatalf("TLVs %+v", h.TLVs)
	}
	v6 := AppendV2(nil, netip.MustParseAddrPort("[2001:db8::7]:1"), netip.MustParseAddrPort("[2001:db8::1]:443"))
	if h, _, err := Parse(v6); err != nil || h.Source.String() != "[2001:db8::7]:1" {
		t.Fatalf("v6: %+v %v", h, err)
	}
	for i := range len(hdr) {
		if _, _, err := Parse(hdr[:i]); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix of %d bytes: %v, want ErrIncomplete", i, err)
		}
	}
	local := bytes.Clone(hdr)
	local[12] = 0x20
	if h, _, err := Parse(local); err != nil || h.Command != Local || h.Source.IsValid() {
		t.Fatalf("LOCAL: %+v %v (want no address)", h, err)
	}
	for _, tc := range []struct {
		name string
		edit func(b []byte) []byte
		want string
	}{
		{"version 1 nibble", func(b []byte) []byte { b[12] = 0x11; return b }, "version"},
		{"command 2", func(b []byte) []byte { b[12] = 0x22; return b }, "command"},
		{"family 4", func(b []byte) []byte { b[13] = 0x41; return b }, "family"},
		{"transport 3", func(b []byte) []byte { b[13] = 0x13; return b }, "transport"},
		{"short for v6", func(b []byte) []byte { b[13] = 0x21; return b }, "too short"},
		{"tlv overrun", func(b []byte) []byte { b[len(b)-1] = 9; return b }, "overruns"},
		{"tlv cut", func(b []byte) []byte { b[15] -= 1; return b[:len(b)-1] }, "cut short"},
		{"too long", func(b []byte) []byte { b[14], b[15] = 0xff, 0xff; return b }, "exceeds"},
		{"bad signature", func(b []byte) []byte { b[5] = 'X'; return b }, "no PROXY header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(bytes.Clone(hdr))
			if tc.name == "tlv overrun" {
				b = append(bytes.Clone(hdr[:len(hdr)-3]), 0x04, 0, 9)
			}
			_, _, err := Parse(b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// FuzzParse: Parse never panics, never claims more bytes than it was
// given, is consistent on the prefix it consumed, and a v2 header built
// from what it parsed parses back to the same addresses.
func FuzzParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\nGET"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(AppendV2(nil, netip.MustParseAddrPort("203.0.113.9:40000"), netip.MustParseAddrPort("192.0.2.1:443"), TLV{Type: 0x20, Value: []byte{1, 0, 0, 0, 0}}))
	f.Add(AppendV2(nil, netip.MustParseAddrPort("[2001:db8::7]:1"), netip.MustParseAddrPort("[2001:db8::1]:443")))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("n = %d of %d bytes", n, len(b))
		}
		h2, n2, err := Parse(b[:n])
		if err != nil || n2 != n || h2.Source != h.Source || h2.Dest != h.Dest || h2.Command != h.Command {
			t.Fatalf("reparsing the consumed prefix: %+v %d %v", h2, n2, err)
		}
		if h.Source.IsValid() && h.Source.Addr().Is4() == h.Dest.Addr().Is4() {
			back, _, err := Parse(AppendV2(nil, h.Source, h.Dest, h.TLVs...))
			if err != nil || back.Source != h.Source || back.Dest != h.Dest || len(back.TLVs) != len(h.TLVs) {
				t.Fatalf("v2 round trip of %+v: %+v %v", h, back, err)
			}
		}
	})
}

// listen returns a Listener on 127.0.0.1 accepting from from.
func listen(t *testing.T, o Options) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, o)
	t.Cleanup(func() { l.Close() })
	return l
}

// dialFrom connects to l from source address src (a loopback address).
func dialFrom(t *testing.T, l net.Listener, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

func TestListenerTakesHeaderAddress(t *testing.T) {
	l := listen(t, Options{From: loopback})
	for _, hdr := range []string{
		"PROXY TCP4 203.0.113.50 192.0.2.1 40001 443\r\n",
		string(AppendV2(nil, netip.MustParseAddrPort("203.0.113.50:40001"), netip.MustParseAddrPort("192.0.2.1:443"))),
	} {
		c := dialFrom(t, l, "127.0.0.1")
		io.WriteString(c, hdr+"hello")
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := sc.RemoteAddr().String(); got != "203.0.113.50:40001" {
			t.Fatalf("RemoteAddr %s, want the header's 203.0.113.50:40001", got)
		}
		b := make([]byte, 5)
		if _, err := io.ReadFull(sc, b); err != nil || string(b) != "hello" {
			t.Fatalf("data after the header: %q %v", b, err)
		}
		sc.Close()
	}
}

func TestListenerRefusesOthers(t *testing.T) {
	var cnt Counters
	l := listen(t, Options{From: loopback, Counters: &cnt, Timeout: 200 * time.Millisecond})
	// An untrusted source is closed before anything is read; Accept
	// goes on to the next connection.
	bad := dialFrom(t, l, "127.0.0.2")
	io.WriteString(bad, "PROXY TCP4 203.0.113.50 192.0.2.1 40001 443\r\n")
	good := dialFrom(t, l, "127.0.0.1")
	io.WriteString(good, "PROXY TCP4 203.0.113.51 192.0.2.1 40001 443\r\n")
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.RemoteAddr().String(); got != "203.0.113.51:40001" {
		t.Fatalf("accepted %s, want the trusted sender's client", got)
	}
	sc.Close()
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bad.Read(make([]byte, 1)); err == nil {
		t.Fatal("untrusted connection not closed")
	}
	if cnt.Untrusted.Load() != 1 {
		t.Fatalf("Untrusted = %d, want 1", cnt.Untrusted.Load())
	}
	// A trusted sender without a header, and one that never sends it.
	for _, send := range []string{"GET / HTTP/1.1\r\n\r\n", ""} {
		c := dialFrom(t, l, "127.0.0.1")
		io.WriteString(c, send)
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sc.Read(make([]byte, 1)); err == nil {
			t.Fatalf("connection sending %q served", send)
		}
		if sc.RemoteAddr().String() != c.LocalAddr().String() {
			t.Fatalf("failed connection reports %s, want its real peer", sc.RemoteAddr())
		}
	}
	if cnt.BadHeader.Load() != 2 {
		t.Fatalf("BadHeader = %d, want 2", cnt.BadHeader.Load())
	}
}

// TestSlowSenderDoesNotBlockAccept: Accept returns a connection before
// its header has arrived, so a silent connection does not hold up the
// next one (issue 14, item 2: the header is read in the connection's
// own goroutine).
func TestSlowSenderDoesNotBlockAccept(t *testing.T) {
	l := listen(t, Options{From: loopback})
	dialFrom(t, l, "127.0.0.1") // sends nothing
	silent, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c := dialFrom(t, l, "127.0.0.1")
	io.WriteString(c, "PROXY TCP4 203.0.113.52 192.0.2.1 1 443\r\n")
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.RemoteAddr().String(); got != "203.0.113.52:1" {
		t.Fatalf("second connection: %s", got)
	}
	sc.Close()
}

func TestUserDeadlineSurvivesHeader(t *testing.T) {
	l := listen(t, Options{From: loopback})
	c := dialFrom(t, l, "127.0.0.1")
	io.WriteString(c, "PROXY UNKNOWN\r\n")
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = sc.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read after the header: %v, want the user's deadline to expire", err)
	}
	if sc.RemoteAddr().String() != c.LocalAddr().String() {
		t.Fatalf("UNKNOWN header: RemoteAddr %s, want the real peer", sc.RemoteAddr())
	}
}
