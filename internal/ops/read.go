package ops

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mmcloughlin/geohash"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// invalid is a bad query: 400 invalid_request in the API's table.
func invalid(detail string) error { return fmt.Errorf("%w: %s", hunt.ErrInvalid, detail) }

// huntOf reads the {hunt} path value and looks the hunt up.
func (o *Ops) huntOf(r *http.Request) (hunt.Hunt, error) {
	id := r.PathValue("hunt")
	if !hunt.ValidID(id) {
		return hunt.Hunt{}, invalid("the hunt id must be 1-128 characters of [A-Za-z0-9._:-]")
	}
	return o.cfg.Engine.Hunt(r.Context(), hunt.HuntID(id))
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the answer: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// bbox is a query's bounding box in degrees; no box crosses the antimeridian.
type bbox struct{ s, w, n, e float64 }

func parseBBox(v string) (bbox, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 4 {
		return bbox{}, invalid("bbox must be south,west,north,east in degrees")
	}
	var f [4]float64
	for i, p := range parts {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return bbox{}, invalid("bbox must be four finite numbers: south,west,north,east")
		}
		f[i] = x
	}
	b := bbox{f[0], f[1], f[2], f[3]}
	if b.s < -90 || b.n > 90 || b.w < -180 || b.e > 180 || !(b.s < b.n) || !(b.w < b.e) {
		return bbox{}, invalid("bbox must have -90 <= south < north <= 90 and -180 <= west < east <= 180")
	}
	return b, nil
}

func (b bbox) contains(lat, lon float64) bool {
	return lat >= b.s && lat <= b.n && lon >= b.w && lon <= b.e
}

func (b bbox) intersects(x geohash.Box) bool {
	return x.MinLat <= b.n && x.MaxLat >= b.s && x.MinLng <= b.e && x.MaxLng >= b.w
}

// mapAnswer is a /map answer. Cells are [south, west, north, east,
// hotspots, tickets, tickets_left]; points are the hotspots themselves.
type mapAnswer struct {
	Building       bool         `json:"building,omitempty"`
	Mode           string       `json:"mode,omitempty"` // "cells" or "points"
	HuntHotspots   int64        `json:"hunt_hotspots"`
	HuntTickets    int64        `json:"hunt_tickets"`
	HuntLeft       int64        `json:"hunt_tickets_left"`
	InView         int64        `json:"in_view"`
	CellBits       uint         `json:"cell_bits,omitempty"`
	Cells          [][7]float64 `json:"cells,omitempty"`
	Points         []point      `json:"points,omitempty"`
	IndexBuiltAt   time.Time    `json:"index_built_at,omitzero"`
	IndexedBounds  *[4]float64  `json:"hunt_bounds,omitempty"` // south, west, north, east of every cell
	PointsComplete bool         `json:"points_complete,omitempty"`
}

type point struct {
	ID          string  `json:"id"`
	Lat         float64 `json:"lat"`
	Lon         float64 `json:"lon"`
	Tickets     int64   `json:"tickets"`
	TicketsLeft int64   `json:"tickets_left"`
}

// serveMap answers GET /ops/api/hunts/{hunt}/map?bbox=s,w,n,e&width_px=W&height_px=H[&rebuild=1]:
// the hotspots in the box one by one when they are at most PointsMax (and
// the box fits engine.Nearby's radius), else per-cell sums at the finest
// precision whose cells are at least CellPxMin wide on a W-pixel canvas and
// number at most CellsMax. Without bbox it answers the whole hunt's bounds
// and totals (the page's first view). While the hunt's index is built it
// answers {"building": true}; ask again.
func (o *Ops) serveMap(w http.ResponseWriter, r *http.Request) error {
	h, err := o.huntOf(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var box bbox
	hasBox := q.Get("bbox") != ""
	if hasBox {
		if box, err = parseBBox(q.Get("bbox")); err != nil {
			return err
		}
	}
	wpx, hpx := 800, 600
	for _, p := range []struct {
		name string
		dst  *int
	}{{"width_px", &wpx}, {"height_px", &hpx}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > CanvasPxMax {
				return invalid(p.name + " must be 1.." + strconv.Itoa(CanvasPxMax))
			}
			*p.dst = n
		}
	}
	rebuild := q.Get("rebuild") == "1"
	idx, err := o.indexFor(r.Context(), h.ID, rebuild)
	if err != nil {
		return err
	}
	if idx == nil {
		return writeJSON(w, mapAnswer{Building: true})
	}
	idx.mu.Lock()
	o.apply(idx)
	ans := mapAnswer{HuntHotspots: idx.total.n, HuntTickets: idx.total.tickets, HuntLeft: idx.total.left, IndexBuiltAt: idx.built}
	if !hasBox {
		ans.IndexedBounds = idx.bounds()
		idx.mu.Unlock()
		return writeJSON(w, ans)
	}
	lv, cells, inView := idx.cellsIn(box, wpx, o.cfg.CellPxMin, o.cfg.CellsMax)
	idx.mu.Unlock()
	ans.InView = inView
	radius := geo.DistanceM(box.s, box.w, box.n, box.e) / 2
	if inView <= int64(o.cfg.PointsMax) && radius <= engine.NearbyRadiusMMax {
		clat, clon := (box.s+box.n)/2, (box.w+box.e)/2
		vs, err := o.cfg.Engine.Nearby(r.Context(), h.ID, clat, clon, radius+1, o.cfg.PointsMax)
		if err != nil {
			return err
		}
		ans.Mode, ans.Points = "points", make([]point, 0, len(vs))
		for _, v := range vs {
			if box.contains(v.Lat, v.Lon) {
				ans.Points = append(ans.Points, point{ID: string(v.ID), Lat: v.Lat, Lon: v.Lon, Tickets: v.Tickets, TicketsLeft: v.TicketsLeft})
			}
		}
		ans.PointsComplete = len(vs) < o.cfg.PointsMax
		ans.InView = int64(len(ans.Points))
		return writeJSON(w, ans)
	}
	ans.Mode, ans.CellBits, ans.Cells = "cells", lv, cells
	return writeJSON(w, ans)
}

// bounds is the box of every indexed cell at the finest precision kept; nil
// for an empty hunt. Called with idx.mu held.
func (idx *index) bounds() *[4]float64 {
	for _, l := range idx.levels {
		if l.cells == nil {
			continue
		}
		if len(l.cells) == 0 {
			return nil
		}
		b := [4]float64{90, 180, -90, -180}
		for k := range l.cells {
			x := geohash.BoundingBoxIntWithPrecision(k, l.bits)
			b[0], b[1] = min(b[0], x.MinLat), min(b[1], x.MinLng)
			b[2], b[3] = max(b[2], x.MaxLat), max(b[3], x.MaxLng)
		}
		return &b
	}
	return nil
}

// cellsIn picks the finest kept level whose cells are at least cellPxMin
// wide on a canvas wpx wide showing box and of which at most cellsMax
// intersect box, and returns those cells and the hotspots they hold.
// Called with idx.mu held.
func (idx *index) cellsIn(box bbox, wpx, cellPxMin, cellsMax int) (uint, [][7]float64, int64) {
	pxPerDeg := float64(wpx) / (box.e - box.w)
	for i, l := range idx.levels {
		if l.cells == nil {
			continue
		}
		cellDeg := 360 / math.Exp2(float64(l.bits/2))
		last := i == len(idx.levels)-1
		if !last && cellDeg*pxPerDeg < float64(cellPxMin) {
			continue
		}
		var out [][7]float64
		var inView int64
		over := false
		for k, a := range l.cells {
			x := geohash.BoundingBoxIntWithPrecision(k, l.bits)
			if !box.intersects(x) {
				continue
			}
			if len(out) == cellsMax {
				over = true
				break
			}
			out = append(out, [7]float64{x.MinLat, x.MinLng, x.MaxLat, x.MaxLng, float64(a.n), float64(a.tickets), float64(a.left)})
			inView += a.n
		}
		if over && !last {
			continue
		}
		return l.bits, out, inView
	}
	return 0, nil, 0
}

// serveLeaderboard answers GET /ops/api/hunts/{hunt}/leaderboard?limit=N:
// the top N (default 10, at most LeaderboardLimitMax) of the hunt's global
// board, with real player ids (an admin view) and the board's staleness.
func (o *Ops) serveLeaderboard(w http.ResponseWriter, r *http.Request) error {
	h, err := o.huntOf(r)
	if err != nil {
		return err
	}
	limit := 10
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > LeaderboardLimitMax {
			return invalid("limit must be 1.." + strconv.Itoa(LeaderboardLimitMax))
		}
	}
	p := o.cfg.Board.Top(h.ID, "", 0, limit)
	type entry struct {
		Rank   int    `json:"rank"`
		Player string `json:"player"`
		Score  int64  `json:"score"`
	}
	out := make([]entry, len(p.Entries))
	for i, e := range p.Entries {
		out[i] = entry{Rank: e.Rank, Player: string(e.Player), Score: e.Score}
	}
	var last int64
	if !p.LastUpdated.IsZero() {
		last = p.LastUpdated.UnixMilli()
	}
	return writeJSON(w, struct {
		Entries     []entry `json:"entries"`
		LastUpdated int64   `json:"last_updated_epoch"`
		StalenessMs int64   `json:"staleness_ms"`
	}{out, last, p.Staleness.Milliseconds()})
}

// serveConsistency answers GET /ops/api/consistency: /v1/consistency per
// partition, one row each: the writer's last committed seq and time, its
// inbox depth, and how far the leaderboard projection is behind it.
func (o *Ops) serveConsistency(w http.ResponseWriter, r *http.Request) error {
	now := o.cfg.Clock()
	type row struct {
		Partition  int       `json:"partition"`
		Seq        hunt.Seq  `json:"seq"`
		At         time.Time `json:"at,omitzero"`
		InboxDepth int       `json:"inbox_depth"`
		BoardSeq   hunt.Seq  `json:"board_seq"`
		LagEvents  uint64    `json:"lag_events"`
		LagMs      int64     `json:"lag_ms"`
	}
	es := o.cfg.Engine.Status()
	rows := make([]row, len(es))
	byPart := make(map[int]int, len(es))
	for i, st := range es {
		p := partitionOf(st)
		byPart[p] = i
		rows[i] = row{Partition: p, Seq: st.Epoch.Seq, At: st.At, InboxDepth: st.Depth}
	}
	for _, st := range o.cfg.Board.Status() {
		i, ok := byPart[partitionOf(st)]
		if !ok {
			continue
		}
		rw := &rows[i]
		rw.BoardSeq = st.Epoch.Seq
		if rw.Seq > st.Epoch.Seq {
			rw.LagEvents = uint64(rw.Seq - st.Epoch.Seq)
			if st.At.IsZero() {
				rw.LagMs = max(0, now.Sub(rw.At).Milliseconds())
			} else {
				rw.LagMs = max(0, rw.At.Sub(st.At).Milliseconds())
			}
		}
	}
	return writeJSON(w, struct {
		Partitions []row `json:"partitions"`
	}{rows})
}

// partitionOf reads a status's partition from its component name
// ("partition/17", "leaderboard/17"), set even before any event.
func partitionOf(st engine.Status) int {
	if i := strings.LastIndexByte(st.Component, '/'); i >= 0 {
		if p, err := strconv.Atoi(st.Component[i+1:]); err == nil {
			return p
		}
	}
	return int(st.Epoch.Partition)
}
