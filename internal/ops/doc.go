// Package ops is the live operations console: a web page at /ops/ (static
// assets embedded in the binary, nothing loaded from the internet) and the
// small admin JSON API behind it at /ops/api/, for an operator who wants to
// look at a hunt rather than read curl output.
//
// What the page shows and where it comes from:
//
//   - the map: GET /ops/api/hunts/{hunt}/map answers, for a bounding box and
//     the canvas size in pixels, either the individual hotspots (when at most
//     PointsMax fall in the box, read with engine.Nearby) or per-cell counts
//     and tickets left from a per-hunt cell index (index.go). The answer is
//     bounded by CellsMax whatever the hunt's size, so a 12M-hotspot hunt never
//     reaches the browser whole;
//   - claims flashing on the map and the feed: GET /ops/api/hunts/{hunt}/claims
//     reads the console's own ring of recent claim decisions (feed.go), filled
//     by this package's engine.Sink. It is an admin view: player ids are not
//     pseudonymised;
//   - claims/s by outcome and claim latency p50/p99: GET /ops/api/stats reads a
//     ring of per-second samples (stats.go) that Run takes from the node's
//     Prometheus metrics (the decision counters and the claim latency
//     histogram), so the claim path does no extra work for it;
//   - the top of the leaderboard with its staleness, and the per-partition
//     view of /v1/consistency (commit epoch, inbox depth, projection lag);
//   - hunt admin, which the page does with the API's own admin routes
//     (PUT /v1/admin/hunts/{hunt}, POST /v1/admin/hunts/{hunt}/hotspots), so
//     there is one way to create a hunt or import hotspots.
//
// Every /ops/api/ request needs the admin token (Authorization: Bearer); the
// page keeps it in the browser's session storage, never in a URL. The static
// assets hold no data and are served without it.
//
// Cost to the claim path: the sink returns at once unless a console asked for
// something within the last IdleAfter; while one watches, it copies each claim
// decision into the ring under one mutex per committed batch. The cell index
// is built off the claim path (a scan of the hunt's hotspots on the first map
// request, again after IndexMaxAge or on request after an import) and follows
// grants by reading the ring when a map request comes, not from the sink.
//
// Concurrency: Ops is safe for concurrent use. Run owns the sampler and the
// index builds; it must be running for the stats and the map to fill.
package ops
