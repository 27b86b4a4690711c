package proxy

import (
	"errors"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2block decodes the header block of one HEADERS frame and its
// CONTINUATION frames with the connection's hpack state, with the rules
// of x/net's Framer.ReadMetaHeaders (field validity, pseudo-fields
// first, the header list limit, the guards against CONTINUATION floods)
// but into fields the connection keeps: decoding a request's fields
// allocates nothing beyond the strings hpack makes for literal values.
// One per connection, used by its reading goroutine only.
type h2block struct {
	dec    *hpack.Decoder
	limit  uint32 // the header list limit (SETTINGS_MAX_HEADER_LIST_SIZE we sent)
	fields []hpack.HeaderField

	// The block being decoded.
	StreamID  uint32
	ended     bool // END_STREAM on its HEADERS frame
	Truncated bool // fields beyond the limit were dropped
	remain    uint32
	trailers  uint32 // the budget of "trailer" fields, kept apart as x/net does
	regular   bool   // a regular field was seen
	invalid   error  // the first invalid field: the stream is reset
}

// errH2PseudoAfterRegular is a pseudo-field after a regular one.
var errH2PseudoAfterRegular = errors.New("pseudo header field after regular")

// newH2Block returns the decoder of a connection whose header list
// limit is limit (bytes, as hpack counts them).
func newH2Block(limit uint32) *h2block {
	b := &h2block{limit: limit, fields: make([]hpack.HeaderField, 0, 16)}
	b.dec = hpack.NewDecoder(4096, b.emit)
	b.dec.SetMaxStringLength(int(limit))
	return b
}

// emit takes one decoded field.
func (b *h2block) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		b.invalid = errors.New("invalid value of header field " + quoteName(hf.Name))
	}
	if strings.HasPrefix(hf.Name, ":") {
		if b.regular {
			b.invalid = errH2PseudoAfterRegular
		}
	} else {
		b.regular = true
		if !validH2FieldName(hf.Name) {
			b.invalid = errors.New("invalid header field name " + quoteName(hf.Name))
		}
	}
	if b.invalid != nil {
		b.dec.SetEmitEnabled(false)
		return
	}
	budget, size := &b.remain, hf.Size()
	if hf.Name == "trailer" {
		n := uint32(strings.Count(hf.Value, ",") + 1)
		budget, size = &b.trailers, uint32(len(hf.Value))-n+1+n*hpack.HeaderField{}.Size()
	}
	if size > *budget {
		b.dec.SetEmitEnabled(false)
		b.Truncated = true
		b.remain, b.trailers = 0, 0
		return
	}
	*budget -= size
	b.fields = append(b.fields, hf)
}

// quoteName is a field name for an error message, cut short.
func quoteName(name string) string {
	if len(name) > 64 {
		name = name[:64]
	}
	return `"` + name + `"`
}

// validH2FieldName reports whether name is a token in lower case
// (RFC 9113 8.2.1).
func validH2FieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if !httpguts.IsTokenRune(rune(ch)) || 'A' <= ch && ch <= 'Z' {
			return false
		}
	}
	return true
}

// start begins the block of a HEADERS frame.
func (b *h2block) start(f *http2.HeadersFrame) {
	b.fields = b.fields[:0]
	b.StreamID = f.StreamID
	b.ended = f.StreamEnded()
	b.Truncated = false
	b.remain, b.trailers = b.limit, b.limit
	b.regular = false
	b.invalid = nil
	b.dec.SetEmitEnabled(true)
}

// add decodes one fragment of the block (the frame's buffer is reused by
// the next read, so it is decoded at once) and reports whether the block
// is complete. An error is the connection's or, for an
// http2.StreamError, the stream's (the block was decoded whole, so the
// hpack state is intact).
func (b *h2block) add(frag []byte, last bool) (bool, error) {
	// A fragment much larger than what may still be accepted, or any
	// fragment once the limit is spent, is not decoded: a client
	// flooding CONTINUATION frames is cut off.
	if int64(len(frag)) > 2*(int64(b.remain)+int64(b.trailers)) {
		return false, connErr{http2.ErrCodeProtocol, "header list too large"}
	}
	if b.invalid != nil {
		// Sizes are no longer counted after an invalid field.
		return false, connErr{http2.ErrCodeProtocol, "CONTINUATION after an invalid header field"}
	}
	if _, err := b.dec.Write(frag); err != nil {
		return false, connErr{http2.ErrCodeCompression, "header block: " + err.Error()}
	}
	if !last {
		return false, nil
	}
	if err := b.dec.Close(); err != nil {
		return false, connErr{http2.ErrCodeCompression, "header block: " + err.Error()}
	}
	if b.invalid != nil {
		return false, http2.StreamError{StreamID: b.StreamID, Code: http2.ErrCodeProtocol, Cause: b.invalid}
	}
	if err := b.checkPseudos(); err != nil {
		return false, http2.StreamError{StreamID: b.StreamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	return true, nil
}

// checkPseudos refuses unknown and repeated pseudo-fields and a mix of
// request and response ones.
func (b *h2block) checkPseudos() error {
	var request, response bool
	pf := b.PseudoFields()
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			request = true
		case ":status":
			response = true
		default:
			return errors.New("invalid pseudo-header " + quoteName(hf.Name))
		}
		for _, prev := range pf[:i] {
			if prev.Name == hf.Name {
				return errors.New("duplicate pseudo-header " + quoteName(hf.Name))
			}
		}
	}
	if request && response {
		return errors.New("mix of request and response pseudo headers")
	}
	return nil
}

// StreamEnded reports whether the HEADERS frame ended the stream.
func (b *h2block) StreamEnded() bool { return b.ended }

// PseudoFields are the block's pseudo-fields (they come first).
func (b *h2block) PseudoFields() []hpack.HeaderField {
	for i, hf := range b.fields {
		if !strings.HasPrefix(hf.Name, ":") {
			return b.fields[:i]
		}
	}
	return b.fields
}

// RegularFields are the block's fields after the pseudo-fields.
func (b *h2block) RegularFields() []hpack.HeaderField {
	return b.fields[len(b.PseudoFields()):]
}
