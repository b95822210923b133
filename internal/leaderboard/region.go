package leaderboard

import (
	"strings"

	"github.com/cairnhq/cairn/internal/hunt"
)

// Region boards are materialised on their first read. Until then a grant
// costs its region boards nothing but one sum in its cell: a cell is the
// finest region of a hunt (the geohash prefix of length RegionLenMax of the
// hotspot, or the whole geohash when shorter) and keeps Σ points per player
// of the grants at hotspots inside it. The first read of a region (Top,
// Around or Score with region != "") builds its board under the write lock
// from the cells inside it, and links the board into those cells' chains;
// from then on it is kept up to date like the hunt's global board (always
// materialised), by the apply path. Reads thus answer exactly what they
// would if every region board had been kept from the start: a board's
// scores are the sums of the applied grants inside its region either way.
//
// A read of a region with no cell (no grant there yet) builds nothing and
// answers an empty page; the board is built by the first read after a grant
// lands there. So reads cannot create boards for regions without grants.
//
// The price is a pause: the build holds the write lock, so the applier and
// every reader wait for it, about 0.1-0.4 µs per (player, cell) pair inside
// the region (measured: 84-92 ms for a one-character region holding 468k
// pairs of the ceiling stream after 1M grants, on a busy 2-core machine).
// It is paid once per region per process (after a restart, by the first
// read of each region), instead of a tree move per grant per region board.

// cell is the finest region of a hunt: what its grants credit.
type cell struct {
	scores map[hunt.PlayerID]int64 // Σ points per player with a grant here; keys shared with the global board
	// chain is every board a grant here credits: the hunt's global board,
	// then the region boards of prefix length 1 up to the cell's, nil while
	// not materialised.
	chain []*board
}

// cellLocked returns the cell of a grant of hunt h at a hotspot with this
// geohash, creating it (and the hunt's global board) on first use.
func (p *Projection) cellLocked(h hunt.HuntID, geohash string) *cell {
	region := geohash[:min(len(geohash), p.regionLenMax)]
	if c, ok := p.mu.cells[boardKey{h, region}]; ok {
		return c
	}
	c := &cell{scores: make(map[hunt.PlayerID]int64), chain: make([]*board, 1+len(region))}
	c.chain[0] = p.globalLocked(h)
	for n := 1; n <= len(region); n++ {
		c.chain[n] = p.mu.boards[boardKey{h, region[:n]}] // materialised already, or nil
	}
	p.mu.cells[boardKey{hunt.HuntID(strings.Clone(string(h))), strings.Clone(region)}] = c
	return c
}

// globalLocked returns the hunt's global board, creating it on first use.
func (p *Projection) globalLocked(h hunt.HuntID) *board {
	if b, ok := p.mu.boards[boardKey{h, ""}]; ok {
		return b
	}
	b := newBoard()
	p.mu.boards[boardKey{hunt.HuntID(strings.Clone(string(h))), ""}] = b
	return b
}

// materialise makes sure the board of a region is built if any grant landed
// in it, taking the write lock only when it is not built yet. The global
// board (region "") is always built.
func (p *Projection) materialise(h hunt.HuntID, region string) {
	if region == "" || len(region) > p.regionLenMax {
		return
	}
	p.mu.RLock()
	_, ok := p.mu.boards[boardKey{h, region}]
	p.mu.RUnlock()
	if ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.materialiseLocked(h, region)
}

// materialiseLocked builds the board of a region (1 <= len(region) <=
// RegionLenMax) from the cells inside it and links it into their chains; it
// does nothing if the board exists or no cell is inside the region. It runs
// between sets (no entry is staged), so the cells' sums are those of the
// applied grants.
func (p *Projection) materialiseLocked(h hunt.HuntID, region string) {
	if _, ok := p.mu.boards[boardKey{h, region}]; ok {
		return
	}
	var cells []*cell
	if len(region) == p.regionLenMax {
		// A cell's region is RegionLenMax long or shorter, so only the
		// region's own cell is inside it.
		if c, ok := p.mu.cells[boardKey{h, region}]; ok {
			cells = append(cells, c)
		}
	} else {
		for k, c := range p.mu.cells {
			if k.hunt == h && strings.HasPrefix(k.region, region) {
				cells = append(cells, c)
			}
		}
	}
	if len(cells) == 0 {
		return
	}
	b := newBoard()
	for _, c := range cells {
		for id, s := range c.scores {
			x, ok := b.byPlayer[id]
			if !ok {
				x = p.mu.stage.newEntry()
				b.enter(x, id)
			}
			x.score += s
		}
	}
	for _, x := range b.byPlayer {
		b.tree.insert(x)
	}
	for _, c := range cells {
		c.chain[len(region)] = b
	}
	p.mu.boards[boardKey{hunt.HuntID(strings.Clone(string(h))), strings.Clone(region)}] = b
}
