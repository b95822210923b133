package redis

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/engine"
)

// librarySource is the cairn Function library (cairn.lua).
//
//go:embed cairn.lua
var librarySource string

// LibraryVersion is the cairn-version line of librarySource.
var LibraryVersion = mustLibraryVersion(librarySource)

var versionLine = regexp.MustCompile(`(?m)^-- cairn-version: (\d+)$`)

func libraryVersion(code string) (int, bool) {
	m := versionLine.FindStringSubmatch(code)
	if m == nil {
		return 0, false
	}
	v, err := strconv.Atoi(m[1])
	return v, err == nil
}

func mustLibraryVersion(code string) int {
	v, ok := libraryVersion(code)
	if !ok {
		panic("redis engine: cairn.lua has no cairn-version line")
	}
	return v
}

// ensureLibrary loads the library when Redis has none or an older version.
// Functions persist with the data (RDB and AOF), so this is a no-op after
// the first node's start; several nodes racing to load the same version is
// harmless (FUNCTION LOAD REPLACE of identical code).
//
// In a cluster every primary needs it: FUNCTION LOAD is replicated, so a
// promoted replica has it, but a primary added empty does not.
func (e *Engine) ensureLibrary(ctx context.Context) error {
	if e.cc != nil {
		err := e.cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return e.ensureLibraryOn(ctx, c)
		})
		if err != nil && !errors.Is(err, ErrLibraryNewer) && !errors.Is(err, engine.ErrUnavailable) {
			err = unavailable("load functions on every primary", err)
		}
		return err
	}
	return e.ensureLibraryOn(ctx, e.rdb)
}

// ensureLibraryOn is ensureLibrary on one Redis.
func (e *Engine) ensureLibraryOn(ctx context.Context, rdb goredis.Cmdable) error {
	libs, err := rdb.FunctionList(ctx, goredis.FunctionListQuery{LibraryNamePattern: "cairn", WithCode: true}).Result()
	if err != nil {
		return unavailable("list functions", err)
	}
	have := 0
	for _, l := range libs {
		if l.Name == "cairn" {
			have, _ = libraryVersion(l.Code)
		}
	}
	switch {
	case have == LibraryVersion:
		return nil
	case have > LibraryVersion:
		return fmt.Errorf("%w: version %d, this node has %d; upgrade the node", ErrLibraryNewer, have, LibraryVersion)
	}
	if err := rdb.FunctionLoadReplace(ctx, librarySource).Err(); err != nil {
		if isUnavailable(err) {
			return unavailable("load functions", err)
		}
		return fmt.Errorf("redis engine: load function library: %w", err)
	}
	e.log.Info("redis engine: loaded function library", "version", LibraryVersion, "previous", have)
	return nil
}
