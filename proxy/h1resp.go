package proxy

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1response is the http.ResponseWriter (and http.Flusher) of kclb's own
// HTTP/1.1 server. The head is written into the connection's buffered
// writer when the body starts (or at the end), so that a head and a
// small body leave in one write; a body of unknown length is held back
// up to h1Pending bytes so that it can still get a Content-Length, and
// is chunked beyond that or after Flush. One h1response serves every
// request of its connection.
type h1response struct {
	c   *h1conn
	req *http.Request
	hdr http.Header

	status      int
	wroteHeader bool
	chunked     bool // the body is chunked
	closeAfter  bool // the connection closes after this response
	reqClose    bool // the request asked to close (the handler may reset r.Close)
	http10      bool // the request was HTTP/1.0
	respBody

	spareHeader
	list     []respField   // fields written besides hdr's (adoptList)
	listDate bool          // list has a Date
	fields   []headerField // scratch for sorting header fields
	date     [len(http.TimeFormat)]byte
	sec      int64 // the second date was formatted for
}

// h1Pending is how much of a body of unknown length is held back to give
// it a Content-Length.
const h1Pending = 2048

func (w *h1response) reset(r *http.Request) {
	clear(w.hdr)
	w.list, w.listDate = w.list[:0], false
	w.req = r
	w.status = 0
	w.wroteHeader, w.committed, w.chunked, w.noBody = false, false, false, false
	w.declared, w.written = -1, 0
	w.pend = w.pend[:0]
	w.closeAfter = false
	w.reqClose, w.http10, w.head = r.Close, r.ProtoMinor == 0, r.Method == http.MethodHead
	w.werr = nil
}

// requestScratch lends the Handler the connection's scratch memory.
func (w *h1response) requestScratch() *reqScratch { return &w.c.st.scratch }

// Header implements http.ResponseWriter.
func (w *h1response) Header() http.Header { return w.hdr }

func (w *h1response) adoptHeader(h http.Header, vals []string) (http.Header, []string) {
	return w.swap(&w.hdr, h, vals)
}

func (w *h1response) adoptList(list []respField, declared int64, date bool) []respField {
	old := w.list[:0]
	w.list, w.declared, w.listDate = list, declared, date
	return old
}

// SetReadDeadline sets the connection's read deadline for the request
// body (http.ResponseController); the Handler bounds buffered request
// bodies with it (Options.BodyTimeout). The connection loop sets its own
// deadlines again after the handler returns.
func (w *h1response) SetReadDeadline(t time.Time) error {
	w.c.rdl = t
	return w.c.nc.SetReadDeadline(t)
}

// WriteHeader implements http.ResponseWriter. Informational codes
// (except 101) are written at once and the final status may follow.
func (w *h1response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("proxy: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	w.noBody = w.head || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
	w.declare(w.hdr)
	if w.declared >= 0 || w.noBody {
		w.commit()
	}
}

func (w *h1response) writeInformational(code int) {
	bw := w.c.writer()
	bw.Write(appendStatusLine(bw.AvailableBuffer(), code, w.http10))
	w.writeFields()
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil && w.werr == nil {
		w.werr = err
	}
}

// Write implements http.ResponseWriter.
func (w *h1response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if n, done, err := w.take(p, h1Pending); done {
		return n, err
	}
	if !w.committed {
		w.commit()
	}
	return w.writeBody(p)
}

// Flush implements http.Flusher: the head and everything written so far
// go to the client.
func (w *h1response) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit()
	}
	if w.werr == nil {
		if err := w.c.writer().Flush(); err != nil {
			w.werr = err
		}
	}
}

func (w *h1response) writeBody(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.c.writer()
	if w.chunked {
		b := strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16)
		b = append(b, '\r', '\n')
		bw.Write(b)
	}
	n, err := bw.Write(p)
	if err == nil && w.chunked {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.werr = err
		return n, err
	}
	return n, nil
}

// finish completes the response after the handler returned.
func (w *h1response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		if w.declared < 0 && !w.noBody {
			w.declared = int64(len(w.pend))
			w.hdr["Content-Length"] = nil // written by commit from declared
		}
		w.commit()
	}
	if w.chunked && w.werr == nil {
		bw := w.c.writer()
		bw.WriteString("0\r\n")
		w.writeTrailers()
		if _, err := bw.WriteString("\r\n"); err != nil {
			w.werr = err
		}
	}
	if w.declared >= 0 && !w.noBody && w.written < w.declared {
		// The client waits for bytes that will never come.
		w.closeAfter = true
	}
	if w.werr == nil && w.c.buffered() == 0 {
		// Nothing pipelined: the response goes now, or with the wait
		// for the next request (holdForWait). Otherwise it leaves with
		// the next one (or when the connection closes).
		if w.c.holdForWait(w) || w.c.holdForClose(w) {
			return
		}
		if err := w.c.writer().Flush(); err != nil {
			w.werr = err
		}
	} else if w.werr == nil && w.c.st.body.done() {
		w.c.pipelined = true
	}
}

// commit writes the status line and header fields into the write
// buffer, followed by any held-back body bytes.
func (w *h1response) commit() {
	w.committed = true
	c := w.c
	if !w.closeAfter {
		w.closeAfter = w.reqClose || c.s.closing.Load() || c.s.noKeepAlive.Load() ||
			httpguts.HeaderValuesContainsToken(w.hdr["Connection"], "close")
	}
	if w.declared < 0 && !w.noBody {
		if !w.http10 {
			w.chunked = true
		} else {
			w.closeAfter = true // the close ends the body
		}
	}
	bw := c.writer()
	bw.Write(appendStatusLine(bw.AvailableBuffer(), w.status, w.http10))
	w.writeFields()
	if _, ok := w.hdr["Date"]; !ok && !w.listDate {
		bw.WriteString("Date: ")
		bw.Write(w.dateNow())
		bw.WriteString("\r\n")
	}
	if vv, ok := w.hdr["Content-Length"]; ok && vv == nil && w.declared >= 0 {
		bw.WriteString("Content-Length: ")
		bw.Write(appendInt(bw.AvailableBuffer(), w.declared))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if _, ok := w.hdr["Connection"]; !ok {
		if w.closeAfter {
			bw.WriteString("Connection: close\r\n")
		} else if w.http10 {
			bw.WriteString("Connection: keep-alive\r\n")
		}
	}
	bw.WriteString("\r\n")
	if len(w.pend) > 0 {
		p := w.pend
		w.pend = w.pend[:0]
		w.writeBody(p)
	}
}

// writeFields writes the handler's header fields in name order, like
// net/http: names that are not tokens are dropped, CR and LF in values
// become spaces. Transfer-Encoding is the server's business.
func (w *h1response) writeFields() {
	bw := w.c.writer()
	fs := w.fields[:0]
	for k, vv := range w.hdr {
		if k == "Transfer-Encoding" || strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		fs = append(fs, headerField{k, vv})
	}
	sortFields(fs)
	// The listed fields (names and values fastHead checked) are sorted
	// in place and merged in: no name is in both.
	list := w.list
	sortFields(list)
	i, j := 0, 0
	for i < len(fs) || j < len(list) {
		if j == len(list) || (i < len(fs) && fieldAfter(list[j].k, fs[i].k)) {
			for _, v := range fs[i].vv {
				writeField(bw, fs[i].k, v)
			}
			i++
			continue
		}
		writeField(bw, list[j].k, list[j].v)
		j++
	}
	clear(fs)
	w.fields = fs[:0]
}

// fieldAfter reports whether a sorts after b; most names differ in
// their first byte, which decides without a call to the runtime's
// string comparison.
func fieldAfter(a, b string) bool {
	if a != "" && b != "" && a[0] != b[0] {
		return a[0] > b[0]
	}
	return a > b
}

// headerField is a header name with its values.
type headerField struct {
	k  string
	vv []string
}

// writeField writes the field k: v, with v trimmed and CR and LF in it
// made spaces.
func writeField(bw *bufio.Writer, k, v string) {
	if v = trimOWS(v); len(k)+len(v)+4 <= bw.Available() && !hasCRLF(v) {
		// The common case: one copy into the write buffer.
		b := bw.AvailableBuffer()
		b = append(b, k...)
		b = append(b, ": "...)
		b = append(b, v...)
		bw.Write(append(b, "\r\n"...))
		return
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	writeFieldValue(bw, v)
	bw.WriteString("\r\n")
}

// sortFields sorts fs by name, keeping the order of fields of one name:
// an insertion sort, as a response has a few dozen fields at most.
func sortFields[T interface{ name() string }](fs []T) {
	for i := 1; i < len(fs); i++ {
		f := fs[i]
		j := i
		for ; j > 0 && fieldAfter(fs[j-1].name(), f.name()); j-- {
			fs[j] = fs[j-1]
		}
		fs[j] = f
	}
}

func (f headerField) name() string { return f.k }
func (f respField) name() string   { return f.k }

// writeTrailers writes the fields the handler set with
// http.TrailerPrefix after a chunked body.
func (w *h1response) writeTrailers() {
	bw := w.c.writer()
	for k, vv := range w.hdr {
		name, ok := strings.CutPrefix(k, http.TrailerPrefix)
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(name)
			bw.WriteString(": ")
			writeFieldValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
}

// fieldWriter is what writeFieldValue writes to.
type fieldWriter interface {
	WriteString(string) (int, error)
	WriteByte(byte) error
}

// writeFieldValue writes v trimmed of surrounding white space, with CR
// and LF replaced by spaces.
func writeFieldValue(bw fieldWriter, v string) {
	if !hasCRLF(v) {
		bw.WriteString(trimOWS(v))
		return
	}
	v = trimOWS(v)
	start := 0
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			bw.WriteString(v[start:i])
			bw.WriteByte(' ')
			start = i + 1
		}
	}
	bw.WriteString(v[start:])
}

// hasCRLF reports whether v holds a CR or an LF.
func hasCRLF(v string) bool {
	return strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0
}

// dateNow returns the Date value for now, formatted once per second.
func (w *h1response) dateNow() []byte {
	now := time.Now()
	if sec := now.Unix(); sec != w.sec {
		w.sec = sec
		now.UTC().AppendFormat(w.date[:0], http.TimeFormat)
	}
	return w.date[:]
}

// appendStatusLine appends "HTTP/1.1 <code> <reason>\r\n" (HTTP/1.0
// when http10, which net/http answers HTTP/1.0 requests with).
func appendStatusLine(b []byte, code int, http10 bool) []byte {
	if http10 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, '\r', '\n')
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }
