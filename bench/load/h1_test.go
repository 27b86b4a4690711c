package load

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Response
		wantErr error // nil, ErrMalformed or io.ErrUnexpectedEOF
		rest    string
	}{
		{name: "content-length keep-alive", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhelloNEXT",
			want: Response{Status: 200, BodyLen: 5}, rest: "NEXT"},
		{name: "connection close", in: "HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 2\r\n\r\nhi",
			want: Response{Status: 200, Close: true, BodyLen: 2}},
		{name: "chunked with extension and trailer", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\nNEXT",
			want: Response{Status: 200, BodyLen: 13}, rest: "NEXT"},
		{name: "bare LF line endings", in: "HTTP/1.1 404 Not Found\nContent-Length: 0\n\nNEXT",
			want: Response{Status: 404}, rest: "NEXT"},
		{name: "no reason phrase", in: "HTTP/1.1 204\r\n\r\nNEXT", want: Response{Status: 204}, rest: "NEXT"},
		{name: "304 ignores content-length", in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nNEXT",
			want: Response{Status: 304}, rest: "NEXT"},
		{name: "interim 100 skipped", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
			want: Response{Status: 201, BodyLen: 1}},
		{name: "http/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", want: Response{Status: 200, Close: true, BodyLen: 1}},
		{name: "http/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", want: Response{Status: 200, BodyLen: 1}},
		{name: "body until close", in: "HTTP/1.1 200 OK\r\n\r\nabcdef", want: Response{Status: 200, Close: true, BodyLen: 6}},
		{name: "garbage status line", in: "HTTP/2 200\r\n\r\n", wantErr: ErrMalformed},
		{name: "status not digits", in: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: ErrMalformed},
		{name: "status too short", in: "HTTP/1.1 20\r\n\r\n", wantErr: ErrMalformed},
		{name: "status glued to reason", in: "HTTP/1.1 2000K\r\n\r\n", wantErr: ErrMalformed},
		{name: "header without colon", in: "HTTP/1.1 200 OK\r\nbogus\r\n\r\n", wantErr: ErrMalformed},
		{name: "negative length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: ErrMalformed},
		{name: "conflicting lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", wantErr: ErrMalformed},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", wantErr: ErrMalformed},
		{name: "missing CRLF after chunk", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", wantErr: ErrMalformed},
		{name: "unknown transfer-encoding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", wantErr: ErrMalformed},
		{name: "truncated body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", wantErr: io.ErrUnexpectedEOF},
		{name: "truncated headers", in: "HTTP/1.1 200 OK\r\nContent-Le", wantErr: io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 64)
			got, err := ParseResponse(br)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tc.rest {
				t.Fatalf("left %q, want %q", rest, tc.rest)
			}
		})
	}
}

func TestParseResponseLongLine(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nSet-Cookie: " + strings.Repeat("a", 200) + "\r\n\r\n"
	_, err := ParseResponse(bufio.NewReaderSize(strings.NewReader(in), 64))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}

func TestParseResponseNoAlloc(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 955\r\nSet-Cookie: A=b\r\n\r\n" + strings.Repeat("x", 955)
	sr := strings.NewReader(resp)
	br := bufio.NewReaderSize(sr, 4096)
	n := testing.AllocsPerRun(200, func() {
		sr.Reset(resp)
		br.Reset(sr)
		if _, err := ParseResponse(br); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("ParseResponse allocates %v times per response", n)
	}
}

// FuzzParseResponse checks that arbitrary input never panics or reports a
// body longer than the input, and that a well-formed response built from the
// fuzzed parts parses back to what was built.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), uint16(200), []byte("body"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), uint16(404), []byte(""), true)
	f.Add([]byte("HTTP/1.0 100 x\r\n\r\nHTTP/1.1 304 y\r\n\r\n"), uint16(302), []byte("x"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\nrest"), uint16(204), []byte("ignored"), true)
	f.Fuzz(func(t *testing.T, raw []byte, status uint16, body []byte, chunked bool) {
		r, err := ParseResponse(bufio.NewReaderSize(strings.NewReader(string(raw)), 128))
		if err == nil && (r.BodyLen > int64(len(raw)) || r.Status < 100 || r.Status > 999) {
			t.Fatalf("implausible parse %+v of %d bytes", r, len(raw))
		}

		code := int(status%900) + 100
		var sb strings.Builder
		fmt.Fprintf(&sb, "HTTP/1.1 %d Reason\r\n", code)
		if code < 200 {
			sb.WriteString("\r\n") // interim and 101 responses have no body
		} else if chunked {
			sb.WriteString("Transfer-Encoding: chunked\r\n\r\n")
			if len(body) > 0 {
				fmt.Fprintf(&sb, "%x\r\n%s\r\n", len(body), body)
			}
			sb.WriteString("0\r\n\r\n")
		} else {
			fmt.Fprintf(&sb, "Content-Length: %d\r\n\r\n%s", len(body), body)
		}
		sb.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		br := bufio.NewReaderSize(strings.NewReader(sb.String()), 128)
		got, err := ParseResponse(br)
		if code < 200 && code != 101 {
			// Interim response: the next one is what counts.
			if err != nil || got.Status != 200 {
				t.Fatalf("after interim %d: %+v, %v", code, got, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("well-formed response: %v\n%q", err, sb.String())
		}
		wantLen := int64(len(body))
		if code == 204 || code == 304 || code == 101 {
			wantLen = 0
		}
		if got.Status != code || (got.BodyLen != wantLen && code != 204 && code != 304 && code != 101) {
			t.Fatalf("got %+v, want status %d body %d", got, code, wantLen)
		}
	})
}

func BenchmarkParseResponse(b *testing.B) {
	b.ReportAllocs()
	resp := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store, must-revalidate, max-age=0\r\n" +
		"Set-Cookie: AUTH_SESSION_ID=abc123.node1; Path=/realms/test/; HttpOnly\r\nContent-Length: 955\r\n\r\n" + strings.Repeat("x", 955)
	sr := strings.NewReader(resp)
	br := bufio.NewReaderSize(sr, 16<<10)
	b.SetBytes(int64(len(resp)))
	for b.Loop() {
		sr.Reset(resp)
		br.Reset(sr)
		if _, err := ParseResponse(br); err != nil {
			b.Fatal(err)
		}
	}
}
