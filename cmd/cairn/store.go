package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// closingEngine is an engine that can be closed (every engine can).
type closingEngine = engine.Engine

func openEngine(ctx context.Context, f serveFlags, log *slog.Logger, m *telemetry.Metrics) (closingEngine, error) {
	switch {
	case f.store == "embedded":
		return embedded.Open(embedded.Config{
			Dir: filepath.Join(f.data, "store"), Partitions: f.partitions, Logger: log, Metrics: m,
		})
	default:
		return nil, fmt.Errorf("--store %q: want embedded or redis://host:port/db", f.store)
	}
}

