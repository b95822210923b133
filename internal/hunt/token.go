package hunt

import (
	"errors"
	"strconv"
	"strings"

	"github.com/cairnhq/cairn/internal/geo"
)

// ErrBadToken reports a consistency token that does not parse.
var ErrBadToken = errors.New("consistency token must look like <partition>.<seq>")

// ConsistencyToken is the opaque string a claim answers with; a read that
// passes it back as after= waits until that epoch is applied.
func ConsistencyToken(e Epoch) string { return e.String() }

// ParseConsistencyToken is the inverse of ConsistencyToken.
func ParseConsistencyToken(s string) (Epoch, error) {
	ps, ss, ok := strings.Cut(s, ".")
	if !ok || len(s) > 40 {
		return Epoch{}, ErrBadToken
	}
	p, err1 := strconv.ParseUint(ps, 10, 32)
	q, err2 := strconv.ParseUint(ss, 10, 64)
	if err1 != nil || err2 != nil || q == 0 {
		return Epoch{}, ErrBadToken
	}
	return Epoch{Partition: geo.Partition(p), Seq: Seq(q)}, nil
}
