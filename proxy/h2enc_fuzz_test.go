package proxy

import (
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// h2encNames are the names the encoder fuzz draws from: static ones,
// others, and the ones the connection adds itself.
var h2encNames = []string{"content-type", "cache-control", "set-cookie", "x-frame-options", "strict-transport-security", "server", "x-a", "www-authenticate", ":authority"}

// FuzzH2Enc encodes blocks of fields (and changes of the client's table
// size limit between them) with h2enc and decodes them with x/net's
// hpack Decoder: every block decodes to the fields that went in, and the
// encoder's table never exceeds the limit.
func FuzzH2Enc(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0, 1, 2, 3, 255, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{0, 0, 0, 254, 1, 1, 1, 253, 9, 9, 2, 2})
	f.Add([]byte("\x01a\x01a\x01b\x01a\xfe\x00\x01a\xff\x02c"))
	f.Fuzz(func(t *testing.T, prog []byte) {
		enc := newH2Enc()
		names := make([]h2name, len(h2encNames))
		for i, n := range h2encNames {
			names[i] = h2name{lower: n, static: h2StaticNames[n]}
		}
		var got []hpack.HeaderField
		dec := hpack.NewDecoder(h2InitialTable, func(hf hpack.HeaderField) { got = append(got, hf) })
		limit := uint32(h2InitialTable)
		var want []hpack.HeaderField
		flush := func() {
			if len(enc.buf) == 0 && len(want) == 0 {
				return
			}
			got = got[:0]
			if _, err := dec.Write(enc.buf); err != nil {
				t.Fatalf("decoding %x: %v", enc.buf, err)
			}
			if err := dec.Close(); err != nil {
				t.Fatalf("decoding %x: %v", enc.buf, err)
			}
			if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
				t.Fatalf("block %x decodes to %v, want %v", enc.buf, got, want)
			}
			if enc.size > enc.max || enc.max > limit {
				t.Fatalf("table %d bytes, max %d, limit %d", enc.size, enc.max, limit)
			}
			want = want[:0]
			enc.begin()
		}
		enc.begin()
		for i := 0; i < len(prog); i++ {
			op := prog[i]
			switch {
			case op == 255: // end of block
				flush()
			case op >= 250: // a lower limit from the client, after the block
				flush()
				limit = min(limit, uint32(op-250)*40)
				enc.setLimit(limit)
				dec.SetAllowedMaxDynamicTableSize(limit)
				enc.begin()
			case op >= 200: // :status
				codes := [...]int{200, 204, 206, 304, 400, 404, 500, 100, 201, 302, 503, 599}
				code := codes[int(op-200)%len(codes)]
				enc.status(code, &enc.statusName)
				want = append(want, hpack.HeaderField{Name: ":status", Value: statusString(code)})
			default:
				n := &names[int(op)%len(names)]
				v := ""
				if i+1 < len(prog) {
					i++
					v = strings.Repeat(string(rune('a'+prog[i]%26)), int(prog[i]/26)*7)
				}
				sensitive := n.lower == "set-cookie"
				enc.field(n, v, sensitive)
				want = append(want, hpack.HeaderField{Name: n.lower, Value: v, Sensitive: sensitive})
			}
		}
		flush()
	})
}

// TestH2EncStaticNames checks each static name's index by decoding it.
func TestH2EncStaticNames(t *testing.T) {
	enc := newH2Enc()
	for name := range h2StaticNames {
		enc.begin()
		n := h2name{lower: name, static: h2StaticNames[name]}
		enc.field(&n, "v", true)
		dec := hpack.NewDecoder(h2InitialTable, nil)
		fields, err := dec.DecodeFull(enc.buf)
		if err != nil || len(fields) != 1 || fields[0].Name != name {
			t.Errorf("%s (index %d) decodes to %v, %v", name, n.static, fields, err)
		}
	}
	for _, n := range []*h2name{&enc.statusName, &enc.lengthName, &enc.dateName} {
		if h2StaticNames[n.lower] != n.static {
			t.Errorf("%s: static %d, table says %d", n.lower, n.static, h2StaticNames[n.lower])
		}
	}
}
