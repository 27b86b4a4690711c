package proxy

// SetKeepAlives turns keep-alive on the server's HTTP/1.1 connections on
// or off without stopping the listeners. Off, every response says
// Connection: close and ends its connection, so a client's next request
// goes on a new connection; connections that stay idle are left alone
// (closing them would race with a request the client is sending: call
// CloseIdle when waiting is over). A planned VRRP handover does this
// before the VIP leaves, so no client sends a request on a connection the
// new Master does not know. kclb's HTTP/2 connections begin a graceful
// GOAWAY at once (a GOAWAY, a PING, the final GOAWAY after its ack) and
// close after their streams; net/http's HTTP/2 connections (StdlibHTTP2)
// send GOAWAY once their streams in progress are done; either way their
// clients open a new connection for the next request; net/http's HTTP/1 server
// (StdlibHTTP1) closes its idle connections at once. The zero state is on.
func (s *Server) SetKeepAlives(on bool) {
	s.noKeepAlive.Store(!on)
	if !on {
		s.mu.Lock()
		for c := range s.h2conns {
			c.drain() // first GOAWAY now; closed after its streams
		}
		s.mu.Unlock()
	}
	if s.std != nil {
		s.std.SetKeepAlivesEnabled(on)
	}
}

// CloseIdle closes the HTTP/1.1 connections that wait for a request (and
// those that sent none for 5 s) and returns how many connections remain.
func (s *Server) CloseIdle() int {
	s.closeIdle()
	return s.OpenConns()
}

// OpenConns returns the number of client connections kclb's servers
// hold open now, HTTP/1.1 and HTTP/2 (0 with StdlibHTTP1; HTTP/2 ones
// are not counted with StdlibHTTP2).
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns) + len(s.h2conns)
}
