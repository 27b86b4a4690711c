package proxy

import (
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
