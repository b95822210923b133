//go:build !linux

package loadgen

import (
	"errors"
	"net"
)

// rawIO is the Linux raw system-call path (see rawio_linux.go); elsewhere
// the raw client uses the net.Conn itself.
type rawIO struct{}

func (r *rawIO) init(net.Conn)            {}
func (r *rawIO) ok() bool                 { return false }
func (r *rawIO) expectAnswer()            {}
func (r *rawIO) read([]byte) (int, error) { return 0, errors.ErrUnsupported }
func (r *rawIO) write([]byte) error       { return errors.ErrUnsupported }
