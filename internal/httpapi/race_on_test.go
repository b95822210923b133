//go:build race

package httpapi

// raceEnabled: the race detector allows at most 8128 live goroutines, so
// the biggest tests bound their concurrency under it.
const raceEnabled = true
