//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

// rawSock is a connection's own Read and Write outside Linux.
type rawSock struct{ nc net.Conn }

func (s *rawSock) init(nc net.Conn, _ syscall.RawConn) { s.nc = nc }

// Read implements io.Reader.
func (s *rawSock) Read(p []byte) (int, error) { return s.nc.Read(p) }

// Write implements io.Writer.
func (s *rawSock) Write(p []byte) (int, error) { return s.nc.Write(p) }
