package embedded

import "github.com/cairnhq/cairn/internal/hunt"

// Who has been granted which hotspot (I2), per partition and owned by its
// writer: players are numbered by the partition (an arena of their ids and
// an open-addressing table), and each grant is one uint64 (hotspot index + 1,
// player number) in an open-addressing set. No map or pointer per hotspot,
// per player or per grant.

// players numbers the players a partition has granted something.
type players struct {
	arena []byte
	end   []uint32 // end[i] is where player i's id ends in arena
	table []uint32 // 0 empty, else number+1; len a power of two
}

func (ps *players) idOf(i uint32) []byte {
	start := uint32(0)
	if i > 0 {
		start = ps.end[i-1]
	}
	return ps.arena[start:ps.end[i]]
}

// number returns p's number, adding p when add is set; ok is false when p is
// unknown and add is not set.
func (ps *players) number(p hunt.PlayerID, add bool) (uint32, bool) {
	if len(ps.table) > 0 {
		mask := uint32(len(ps.table) - 1)
		for j := fnv32(fnv32Offset, string(p)) & mask; ; j = (j + 1) & mask {
			v := ps.table[j]
			if v == 0 {
				break
			}
			if string(ps.idOf(v-1)) == string(p) {
				return v - 1, true
			}
		}
	}
	if !add {
		return 0, false
	}
	i := uint32(len(ps.end))
	ps.arena = append(ps.arena, p...)
	ps.end = append(ps.end, uint32(len(ps.arena)))
	if (len(ps.end))*2 > len(ps.table) {
		ps.table = make([]uint32, max(64, len(ps.table)*2))
		for x := range uint32(len(ps.end)) {
			ps.put(x)
		}
	} else {
		ps.put(i)
	}
	return i, true
}

func (ps *players) put(i uint32) {
	mask := uint32(len(ps.table) - 1)
	j := fnv32(fnv32Offset, string(ps.idOf(i))) & mask
	for ps.table[j] != 0 {
		j = (j + 1) & mask
	}
	ps.table[j] = i + 1
}

// grants is a set of (hotspot, player number) pairs.
type grants struct {
	table []uint64 // 0 empty
	n     int
	// meta, kept by a snapshot builder only (keepMeta), is what each grant's
	// event said beyond the pair, in the slot of its key: what a log
	// truncated at a snapshot still owes its readers (retention.go).
	meta     []grantMeta
	keepMeta bool
}

// grantMeta is a grant's geohash (geo.HashToBits of the event's), reward and points.
type grantMeta struct {
	gh             uint64
	reward, points uint32
}

func grantKey(spot, player uint32) uint64 { return uint64(spot+1)<<32 | uint64(player) }

func mix(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	return k
}

func (g *grants) has(k uint64) bool {
	if len(g.table) == 0 {
		return false
	}
	mask := uint64(len(g.table) - 1)
	for j := mix(k) & mask; ; j = (j + 1) & mask {
		switch g.table[j] {
		case 0:
			return false
		case k:
			return true
		}
	}
}

// add inserts k, which must not be in the set, with m when meta is kept.
func (g *grants) add(k uint64, m grantMeta) {
	if (g.n+1)*2 > len(g.table) {
		g.grow(max(64, len(g.table)*2))
	}
	j := g.put(k)
	if g.keepMeta {
		g.meta[j] = m
	}
	g.n++
}

// grow rehashes the set into a table of size slots.
func (g *grants) grow(size int) {
	old, oldMeta := g.table, g.meta
	g.table = make([]uint64, size)
	if g.keepMeta {
		g.meta = make([]grantMeta, size)
	}
	for i, x := range old {
		if x != 0 {
			j := g.put(x)
			if g.keepMeta {
				g.meta[j] = oldMeta[i]
			}
		}
	}
}

func (g *grants) put(k uint64) int {
	mask := uint64(len(g.table) - 1)
	j := mix(k) & mask
	for g.table[j] != 0 {
		j = (j + 1) & mask
	}
	g.table[j] = k
	return int(j)
}

// each calls fn for every pair (tests).
func (g *grants) each(fn func(spot, player uint32)) {
	for _, k := range g.table {
		if k != 0 {
			fn(uint32(k>>32)-1, uint32(k))
		}
	}
}
