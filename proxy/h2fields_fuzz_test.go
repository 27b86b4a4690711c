package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2BlockVerdict is what reading a header block came to: the fields, or
// the kind and code of the error.
type h2BlockVerdict struct {
	fields    []hpack.HeaderField
	truncated bool
	err       string // "", "stream <code>" or "conn <code>"
}

// h2BlockFrames encodes block as one HEADERS frame and, when cut is
// inside it, the rest as CONTINUATION frames of at most cut bytes each;
// it returns two copies of the frames, one for each reader.
func h2BlockFrames(t testing.TB, block []byte, cut int, end bool) (*bytes.Buffer, *bytes.Buffer) {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	first := block
	if cut > 0 && cut < len(block) {
		first = block[:cut]
	}
	rest := block[len(first):]
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: end, EndHeaders: len(rest) == 0}); err != nil {
		t.Fatal(err)
	}
	for len(rest) > 0 {
		n := min(len(rest), max(cut, 1))
		if err := fr.WriteContinuation(1, n == len(rest), rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	return bytes.NewBuffer(bytes.Clone(buf.Bytes())), &buf
}

// errVerdict classifies a header-block error.
func errVerdict(err error) string {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return fmt.Sprintf("stream %v", se.Code)
	case errors.As(err, &ce):
		return fmt.Sprintf("conn %v", http2.ErrCode(ce))
	}
	return "other " + err.Error()
}

// readWithMeta reads the frames with x/net's ReadMetaHeaders.
func readWithMeta(r *bytes.Buffer, limit uint32) h2BlockVerdict {
	fr := http2.NewFramer(nil, r)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = limit
	f, err := fr.ReadFrame()
	if err != nil {
		return h2BlockVerdict{err: errVerdict(err)}
	}
	mh := f.(*http2.MetaHeadersFrame)
	return h2BlockVerdict{fields: mh.Fields, truncated: mh.Truncated}
}

// readWithBlock reads the frames as kclb's HTTP/2 server does.
func readWithBlock(r *bytes.Buffer, limit uint32) h2BlockVerdict {
	fr := http2.NewFramer(nil, r)
	fr.MaxHeaderListSize = limit
	b := newH2Block(limit)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return h2BlockVerdict{err: errVerdict(err)}
		}
		var done bool
		switch f := f.(type) {
		case *http2.HeadersFrame:
			b.start(f)
			done, err = b.add(f.HeaderBlockFragment(), f.HeadersEnded())
		case *http2.ContinuationFrame:
			done, err = b.add(f.HeaderBlockFragment(), f.HeadersEnded())
		}
		if err != nil {
			return h2BlockVerdict{err: errVerdict(err)}
		}
		if done {
			return h2BlockVerdict{fields: bytes2fields(b.fields), truncated: b.Truncated}
		}
	}
}

// bytes2fields copies fields (b.fields is reused).
func bytes2fields(f []hpack.HeaderField) []hpack.HeaderField {
	if len(f) == 0 {
		return nil
	}
	return append([]hpack.HeaderField(nil), f...)
}

// FuzzH2Block compares kclb's header-block decoding with x/net's
// ReadMetaHeaders on the same frames: the same fields, the same
// truncation, the same error kind and code.
func FuzzH2Block(f *testing.F) {
	enc := func(fields ...string) []byte {
		var b bytes.Buffer
		e := hpack.NewEncoder(&b)
		for i := 0; i+1 < len(fields); i += 2 {
			e.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return b.Bytes()
	}
	req := enc(":method", "GET", ":scheme", "https", ":authority", "sso.example.com", ":path", "/realms/test/hello", "cookie", "a=b", "user-agent", "x")
	f.Add(req, 0, true, uint16(4096))
	f.Add(req, 5, false, uint16(4096))
	f.Add(req, 3, true, uint16(64))
	f.Add(enc(":method", "GET", "x", "1", ":path", "/"), 0, true, uint16(4096))
	f.Add(enc(":method", "GET", ":method", "POST"), 0, true, uint16(4096))
	f.Add(enc(":status", "200", ":method", "GET"), 0, true, uint16(4096))
	f.Add(enc(":foo", "bar"), 0, true, uint16(4096))
	f.Add(enc("X-Upper", "v"), 2, true, uint16(4096))
	f.Add(enc("bad value", "v"), 0, true, uint16(4096))
	f.Add(enc("ok", "bad\x00value"), 1, true, uint16(4096))
	f.Add(enc("trailer", "a, b, c", "x", "y"), 0, true, uint16(40))
	f.Add([]byte{0x3f, 0xe1, 0x1f}, 0, true, uint16(4096)) // table size update
	f.Add([]byte{0xff, 0xff, 0xff}, 1, true, uint16(4096)) // bad index
	f.Add(bytes.Repeat([]byte{0x40, 0x01, 'a', 0x01, 'b'}, 40), 7, true, uint16(100))
	f.Fuzz(func(t *testing.T, block []byte, cut int, end bool, limit uint16) {
		if len(block) > 1<<14 || cut < 0 || cut > 1<<14 {
			return
		}
		lim := uint32(limit)
		if lim == 0 {
			lim = 1
		}
		a, b := h2BlockFrames(t, block, cut, end)
		want := readWithMeta(a, lim)
		got := readWithBlock(b, lim)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("block %q cut %d limit %d:\nkclb   %+v\nx/net  %+v", block, cut, lim, got, want)
		}
	})
}

// TestH2BlockKeepsHPACKState reads three blocks on one connection state:
// a stream reset for an invalid field leaves the dynamic table in step
// with the client's encoder, so the next block decodes.
func TestH2BlockKeepsHPACKState(t *testing.T) {
	var hb bytes.Buffer
	e := hpack.NewEncoder(&hb)
	b := newH2Block(4096)
	read := func(end bool, fields ...string) ([]hpack.HeaderField, error) {
		hb.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			e.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		b.start(&http2.HeadersFrame{FrameHeader: http2.FrameHeader{StreamID: 1}})
		done, err := b.add(hb.Bytes(), true)
		if err == nil && !done {
			t.Fatal("block not done")
		}
		return bytes2fields(b.fields), err
	}
	if _, err := read(true, ":method", "GET", "x-one", "1"); err != nil {
		t.Fatal(err)
	}
	_, err := read(true, ":method", "GET", "x-two", "2\x01", "x-three", "3")
	var se http2.StreamError
	if !errors.As(err, &se) || se.Code != http2.ErrCodeProtocol {
		t.Fatalf("invalid value: %v, want a stream error", err)
	}
	// x-three went into the dynamic table while the block was refused.
	got, err := read(true, "x-one", "1", "x-three", "3")
	if err != nil {
		t.Fatal(err)
	}
	want := []hpack.HeaderField{{Name: "x-one", Value: "1"}, {Name: "x-three", Value: "3"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
}
