package httpapi

import (
	"context"
	"fmt"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/leaderboard"
)

// Assemble wires a node's read side and API over an opened engine, the one
// way every Cairn node (cmd/cairn serve through internal/node, and the
// tests) is built: the leaderboard projection from board (its Partitions,
// and its Logger and Metrics when unset, come from the engine and cfg), the
// API from cfg (Engine and Board are eng and the projection unless the
// caller put a stand-in there, as tests do), both subscribed to the engine,
// and the projection rebuilt from the log. The caller runs the engine and
// the projection (Run) and serves the API's handlers.
func Assemble(ctx context.Context, eng engine.Engine, board leaderboard.Options, cfg Config) (*leaderboard.Projection, *Server, error) {
	board.Partitions = eng.Partitions()
	if board.Logger == nil {
		board.Logger = cfg.Logger
	}
	if board.Metrics == nil {
		board.Metrics = cfg.Metrics
	}
	proj, err := leaderboard.New(board)
	if err != nil {
		return nil, nil, err
	}
	eng.Subscribe(proj)
	if cfg.Engine == nil {
		cfg.Engine = eng
	}
	if cfg.Board == nil {
		cfg.Board = proj
	}
	api, err := New(cfg)
	if err != nil {
		return nil, nil, err
	}
	eng.Subscribe(api.Feed())
	if err := proj.Rebuild(ctx, eng); err != nil {
		return nil, nil, fmt.Errorf("rebuilding the leaderboard: %w", err)
	}
	return proj, api, nil
}
