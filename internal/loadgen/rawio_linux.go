//go:build linux

package loadgen

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// On Linux the raw client reads and writes its sockets with raw system
// calls inside syscall.RawConn's callbacks: Go's netpoller still does the
// waiting (deadlines included), but the calls themselves skip the runtime's
// syscall bookkeeping. That bookkeeping is what wakes the runtime's monitor
// thread out of its deep sleep on every call of a mostly idle process (one
// more thread wake-up per request, the largest single cost of the generator
// at a few thousand requests a second). The sockets are non-blocking, so
// the calls never block.

// rawIO is the raw system-call state of one connection; its callbacks are
// bound once so an exchange allocates nothing.
type rawIO struct {
	sc      syscall.RawConn
	buf     []byte
	n       int
	errno   syscall.Errno
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

func (r *rawIO) init(nc net.Conn) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return
	}
	sc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	r.sc = sc
	r.readFn = r.readOnce
	r.writeFn = r.writeAll
}

func (r *rawIO) ok() bool { return r.sc != nil }

func (r *rawIO) readOnce(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.buf))), uintptr(len(r.buf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.n, r.errno = int(n), e
		return true
	}
}

func (r *rawIO) writeAll(fd uintptr) bool {
	for r.n < len(r.buf) {
		rest := r.buf[r.n:]
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(rest))), uintptr(len(rest)),
			syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			r.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.errno = e
			return true
		}
	}
	return true
}

func (r *rawIO) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.buf, r.n, r.errno = p, 0, 0
	err := r.sc.Read(r.readFn)
	r.buf = nil
	switch {
	case err != nil:
		return 0, err
	case r.errno != 0:
		return 0, os.NewSyscallError("read", r.errno)
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

func (r *rawIO) write(p []byte) error {
	r.buf, r.n, r.errno = p, 0, 0
	err := r.sc.Write(r.writeFn)
	r.buf = nil
	switch {
	case err != nil:
		return err
	case r.errno != 0:
		return os.NewSyscallError("write", r.errno)
	}
	return nil
}
