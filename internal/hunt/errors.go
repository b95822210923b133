package hunt

import (
	"errors"
	"fmt"
)

// Errors callers branch on. The HTTP layer maps each to a status and a stable
// code in one table (internal/httpapi/problem.go).
var (
	ErrUnknownHunt    = errors.New("unknown hunt")
	ErrUnknownHotspot = errors.New("unknown hotspot")
	ErrKeyReused      = errors.New("idempotency key reused for another request")
	ErrBadKey         = errors.New("Idempotency-Key must be 1-255 visible ASCII characters")
	ErrInvalid        = errors.New("invalid input")
)

// ValidationError says which field is wrong and why. It wraps ErrInvalid.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }
func (e *ValidationError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Invalid builds a ValidationError for callers outside this package (decoders).
func Invalid(field, format string, args ...any) error { return invalid(field, format, args...) }
