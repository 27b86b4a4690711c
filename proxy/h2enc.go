package proxy

import "golang.org/x/net/http2/hpack"

// h2enc is the HPACK encoder of a connection's responses (RFC 7541).
// It knows where each field it indexed sits in the dynamic table, so a
// field sent again with the value it had last time costs one index and
// no lookup: the per-name state (its last few values) lives in the connection's h2name
// entries, which writeHeadersLocked looks up anyway. It is a smaller
// encoder than x/net's (a name with more values in turn than it remembers is
// sent literally and indexed again), traded for no map search per field.
type h2enc struct {
	buf []byte // the block being encoded

	// The dynamic table, oldest entry first; entry ids count insertions
	// from 1, so the newest has id next-1 and HPACK index 62.
	entries []h2entry
	next    uint64
	size    uint32 // sum of the entries' sizes
	max     uint32 // the table's size limit in effect
	// update, when set, puts a table size update for max at the head of
	// the next block (the client lowered its limit).
	update bool

	// The names the connection adds itself.
	statusName, lengthName, dateName h2name
}

// h2entry is one dynamic table entry.
type h2entry struct {
	name, value string
}

// h2InitialTable is HPACK's initial dynamic table size, also the most
// this encoder uses.
const h2InitialTable = 4096

// h2staticLen is the number of entries of HPACK's static table.
const h2staticLen = 61

func newH2Enc() *h2enc {
	e := &h2enc{next: 1, max: h2InitialTable}
	e.statusName = h2name{lower: ":status", static: 8}
	e.lengthName = h2name{lower: "content-length", static: 28}
	e.dateName = h2name{lower: "date", static: 33}
	return e
}

// setLimit applies the client's SETTINGS_HEADER_TABLE_SIZE: the table
// shrinks to it if it is smaller (and is never grown beyond 4096).
func (e *h2enc) setLimit(v uint32) {
	if v >= e.max {
		return
	}
	e.max = v
	e.update = true
	e.evict(0)
}

// evict drops the oldest entries until room more bytes fit.
func (e *h2enc) evict(room uint32) {
	n := 0
	for n < len(e.entries) && e.size+room > e.max {
		e.size -= entrySize(e.entries[n].name, e.entries[n].value)
		e.entries[n] = h2entry{}
		n++
	}
	if n > 0 {
		k := copy(e.entries, e.entries[n:])
		clear(e.entries[k:])
		e.entries = e.entries[:k]
	}
}

func entrySize(name, value string) uint32 { return uint32(len(name) + len(value) + 32) }

// begin starts a header block.
func (e *h2enc) begin() {
	e.buf = e.buf[:0]
	if e.update {
		e.buf = appendHpackInt(e.buf, 0x20, 5, uint64(e.max))
		e.update = false
	}
}

// index returns the HPACK index of the entry with id, or 0 if it has
// been evicted (or id is 0).
func (e *h2enc) index(id uint64) uint64 {
	if id == 0 || id < e.next-uint64(len(e.entries)) {
		return 0
	}
	return h2staticLen + e.next - id
}

// h2Recent is how many indexed values a name remembers: enough for a
// field that names the backend (round robin over a few nodes).
const h2Recent = 4

// h2value is a value a name indexed and its dynamic table id.
type h2value struct {
	v  string
	id uint64
}

// owned returns the remembered copy of v, or "" if n has none.
func (n *h2name) owned(v string) string {
	for i := range n.recent {
		if n.recent[i].id != 0 && n.recent[i].v == v {
			return n.recent[i].v
		}
	}
	return ""
}

// field encodes name (lower case, in n's state) with value. A value n
// indexed recently is sent as its index; sensitive values are never
// indexed (by anyone on the way); others are indexed when they fit the
// table, and n remembers them. value must be a string nothing
// overwrites when it may be indexed (the table keeps it).
func (e *h2enc) field(n *h2name, value string, sensitive bool) {
	slot := -1
	nameIdx := uint64(n.static)
	for i := range n.recent {
		r := &n.recent[i]
		idx := e.index(r.id)
		if !sensitive && r.id != 0 && r.v == value {
			if idx != 0 {
				e.buf = appendHpackInt(e.buf, 0x80, 7, idx)
				return
			}
			slot = i // evicted: indexed again in its place
		}
		if nameIdx == 0 {
			nameIdx = idx
		}
	}
	size := entrySize(n.lower, value)
	switch {
	case sensitive:
		e.buf = appendHpackInt(e.buf, 0x10, 4, nameIdx)
	case size > e.max:
		e.buf = appendHpackInt(e.buf, 0x00, 4, nameIdx)
	default:
		e.buf = appendHpackInt(e.buf, 0x40, 6, nameIdx)
	}
	if nameIdx == 0 {
		e.buf = appendHpackString(e.buf, n.lower)
	}
	e.buf = appendHpackString(e.buf, value)
	if sensitive || size > e.max {
		return
	}
	e.evict(size)
	e.entries = append(e.entries, h2entry{n.lower, value})
	e.size += size
	if slot < 0 {
		slot = int(n.slot)
		n.slot = (n.slot + 1) % h2Recent
	}
	n.recent[slot] = h2value{value, e.next}
	e.next++
}

// h2StaticStatus are the statuses of HPACK's static table, from index 8.
var h2StaticStatus = [...]int{200, 204, 206, 304, 400, 404, 500}

// status encodes :status code: the static table holds the common ones.
func (e *h2enc) status(code int, n *h2name) {
	for i, c := range h2StaticStatus {
		if c == code {
			e.buf = append(e.buf, 0x80|byte(8+i))
			return
		}
	}
	e.field(n, statusString(code), false)
}

// appendHpackInt appends i with an n-bit prefix whose other bits are
// first (RFC 7541 5.1).
func appendHpackInt(dst []byte, first byte, n uint, i uint64) []byte {
	limit := uint64(1)<<n - 1
	if i < limit {
		return append(dst, first|byte(i))
	}
	dst = append(dst, first|byte(limit))
	i -= limit
	for i >= 128 {
		dst = append(dst, byte(i&0x7f|0x80))
		i >>= 7
	}
	return append(dst, byte(i))
}

// appendHpackString appends s as a string literal, Huffman-coded when
// that is shorter (RFC 7541 5.2).
func appendHpackString(dst []byte, s string) []byte {
	if n := hpack.HuffmanEncodeLength(s); n < uint64(len(s)) {
		dst = appendHpackInt(dst, 0x80, 7, n)
		return hpack.AppendHuffmanString(dst, s)
	}
	dst = appendHpackInt(dst, 0, 7, uint64(len(s)))
	return append(dst, s...)
}

// h2StaticNames is the first index of each name in HPACK's static table
// (RFC 7541 Appendix A).
var h2StaticNames = func() map[string]uint8 {
	names := [h2staticLen]string{
		":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme",
		":status", ":status", ":status", ":status", ":status", ":status", ":status",
		"accept-charset", "accept-encoding", "accept-language", "accept-ranges", "accept",
		"access-control-allow-origin", "age", "allow", "authorization", "cache-control",
		"content-disposition", "content-encoding", "content-language", "content-length",
		"content-location", "content-range", "content-type", "cookie", "date", "etag",
		"expect", "expires", "from", "host", "if-match", "if-modified-since",
		"if-none-match", "if-range", "if-unmodified-since", "last-modified", "link",
		"location", "max-forwards", "proxy-authenticate", "proxy-authorization", "range",
		"referer", "refresh", "retry-after", "server", "set-cookie",
		"strict-transport-security", "transfer-encoding", "user-agent", "vary", "via",
		"www-authenticate",
	}
	m := make(map[string]uint8, len(names))
	for i := len(names) - 1; i >= 0; i-- {
		m[names[i]] = uint8(i + 1)
	}
	return m
}()
