package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// sockRead is one read(2) of a socket's bytes into p, made as
// recvfrom(2) without an address: the kernel takes that path to the
// socket without the file-position lock and the iterator set-up of a
// file read. It is a raw system call: the runtime is not told, so the
// goroutine keeps its P, and sysmon, which otherwise finds a P in a
// system call at most of its 20 us rounds on a busy proxy and hands it to
// another thread, sleeps instead (its wake-ups were one per ten requests
// and 8 % of kclb's CPU at wrk c64). That is safe because every caller
// passes a non-blocking descriptor inside a RawConn callback: the call
// returns EAGAIN rather than wait. A descriptor that is not a socket is
// read with read(2), through the runtime.
func sockRead(fd int, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	if errno == syscall.ENOTSOCK {
		n, _, errno = syscall.Syscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	}
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// sockWriteAll writes p on a non-blocking socket with sockWrite until
// all of it went out, the socket's buffer is full (syscall.EAGAIN) or a
// write fails, and returns how much went out.
func sockWriteAll(fd int, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := sockWrite(fd, p[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// sockWrite is one write(2) of p on a non-blocking socket, made as a raw
// sendto(2) without an address (sockRead tells why) and with
// MSG_NOSIGNAL, so a peer that reset the connection costs EPIPE and no
// SIGPIPE. A descriptor that is not a socket is written with write(2).
func sockWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	if errno == syscall.ENOTSOCK {
		n, _, errno = syscall.Syscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	}
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// rawSock reads and writes a TCP connection with sockRead and sockWrite
// in RawConn callbacks, waiting in the poller under the connection's
// deadlines, as its own Read and Write would (the same errors: a
// *net.OpError naming the read or write, io.EOF at the end). Without a
// descriptor it uses the connection's Read and Write.
type rawSock struct {
	nc net.Conn
	rc syscall.RawConn
	// rp, rn and rerr are readOnce's buffer and result, tries its calls
	// in the last Read (1: the bytes were there at once); wp, wn and werr
	// writeSome's bytes, progress and error. A read and a write may run
	// at once (a body streaming while the response head is read).
	rp              []byte
	rn, tries       int
	rerr            error
	wp              []byte
	wn              int
	werr            error
	readFn, writeFn func(uintptr) bool
}

// init sets s up for nc, whose RawConn rc may be nil (then s finds it).
func (s *rawSock) init(nc net.Conn, rc syscall.RawConn) {
	s.nc, s.rc = nc, rc
	if rc == nil {
		if sc, ok := nc.(syscall.Conn); ok {
			s.rc, _ = sc.SyscallConn()
		}
	}
	if s.rc != nil {
		s.readFn, s.writeFn = s.readOnce, s.writeSome
	}
}

// Read implements io.Reader: one recvfrom(2) once bytes are there.
func (s *rawSock) Read(p []byte) (int, error) {
	if s.rc == nil {
		return s.nc.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.rp, s.rn, s.rerr, s.tries = p, 0, nil, 0
	err := s.rc.Read(s.readFn)
	s.rp = nil
	if err != nil {
		return 0, rawOpError(err, "read")
	}
	return s.rn, s.rerr
}

// readOnce is the RawConn callback of Read.
func (s *rawSock) readOnce(fd uintptr) bool {
	s.tries++
	for {
		n, errno := sockRead(int(fd), s.rp)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			return false
		case errno != 0:
			s.rerr = &net.OpError{Op: "read", Net: "tcp", Source: s.nc.LocalAddr(), Addr: s.nc.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
		case n == 0:
			s.rerr = io.EOF
		default:
			s.rn = n
		}
		return true
	}
}

// Write implements io.Writer: all of p, waiting while the socket's
// buffer is full.
func (s *rawSock) Write(p []byte) (int, error) {
	if s.rc == nil {
		return s.nc.Write(p)
	}
	s.wp, s.wn, s.werr = p, 0, nil
	err := s.rc.Write(s.writeFn)
	n := s.wn
	s.wp = nil
	if err != nil {
		return n, rawOpError(err, "write")
	}
	return n, s.werr
}

// writeSome is the RawConn callback of Write.
func (s *rawSock) writeSome(fd uintptr) bool {
	n, err := sockWriteAll(int(fd), s.wp[s.wn:])
	s.wn += n
	if err == syscall.EAGAIN {
		return false
	}
	if err != nil {
		s.werr = &net.OpError{Op: "write", Net: "tcp", Source: s.nc.LocalAddr(), Addr: s.nc.RemoteAddr(), Err: os.NewSyscallError("write", err)}
	}
	return true
}

// rawOpError names a failed RawConn wait (a deadline, a closed
// connection) as the read or write it stands for, as net.Conn's would.
func rawOpError(err error, op string) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
	}
	return err
}
