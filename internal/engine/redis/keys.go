package redis

import (
	"strconv"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Key layout (docs/REDIS.md is the reference; cairn.lua builds the same names
// for hotspots and log streams, keep them in step).
//
// Partition-scoped keys carry the partition as a hash tag, "{p17}", so that
// under Redis Cluster one partition's keys share a slot. Player-scoped keys
// carry "{u:<player>}" for the same reason. Hunts and the hotspot indexes are
// global (cluster: see the doc).
//
//	cairn:meta                      hash   partitions, prefix_len, format
//	cairn:hunts                     set    hunt ids
//	cairn:hunt:<hunt>               hash   j (JSON of hunt.Hunt), sa, ea (ns20 or ""), r (claim radius m), v (max speed m/s)
//	cairn:hsidx:<hunt>              hash   hotspot id -> partition (pinned at first import)
//	cairn:geo:<hunt>                zset   "<geohash9>|<hotspot>|<partition>", score 0, read by lex range
//	cairn:{pN}:hs:<hunt>:<hotspot>  hash   la lo t g rw pt oa ca gh (g: tickets granted)
//	cairn:{pN}:cl:<hunt>:<hotspot>  set    players holding a ticket
//	cairn:{pN}:seq                  string last sequence number of partition N
//	cairn:{pN}:log                  stream the event log (I7): entry id "<seq>-0", field e = event record
//	cairn:{pN}:req                  stream ClaimRequested / SpendRequested, group ClaimProcessor
//	cairn:{pN}:dead                 stream entries that failed DeliveriesMax times
//	cairn:{u:<player>}:idem         hash   Idempotency-Key -> "<fp> <partition> <seq> <rid>"
//	cairn:{u:<player>}:w            hash   b (balance), p, s (epoch of the last change)
//	cairn:{u:<player>}:led          list   ledger records, newest first, at most LedgerLimitMax
//	cairn:{u:<player>}:pos          hash   hunt -> "<lat> <lon> <unix s> <ns>" of the last grant
//	cairn:done:<consumer>           pubsub answers for the requests a node waits for
//	cairn:revoked                   set    players with a token revocation
//	cairn:{u:<player>}:rev          string unix ms: the player's tokens issued before it are refused
const (
	keyMeta  = "cairn:meta"
	keyHunts = "cairn:hunts"
	// keyRevoked lists the players with a token revocation (revoke.go).
	keyRevoked = "cairn:revoked"
	// Group is the consumer group every node joins on every request stream.
	Group = "ClaimProcessor"
)

func keyHunt(h hunt.HuntID) string    { return "cairn:hunt:" + string(h) }
func keyHsIndex(h hunt.HuntID) string { return "cairn:hsidx:" + string(h) }
func keyGeo(h hunt.HuntID) string     { return "cairn:geo:" + string(h) }
func keyDone(consumer string) string  { return "cairn:done:" + consumer }

// partitionTag is the prefix of a partition's keys, "cairn:{pN}:"; its hash
// tag keeps them in one cluster slot.
func partitionTag(p geo.Partition) string {
	return "cairn:{p" + strconv.FormatUint(uint64(p), 10) + "}:"
}

// playerTag is the prefix of a player's keys, "cairn:{u:<player>}:", hash
// tagged like partitionTag.
func playerTag(pl hunt.PlayerID) string { return "cairn:{u:" + string(pl) + "}:" }

func keySeq(p geo.Partition) string     { return partitionTag(p) + "seq" }
func keyLog(p geo.Partition) string     { return partitionTag(p) + "log" }
func keyReq(p geo.Partition) string     { return partitionTag(p) + "req" }
func keyDead(p geo.Partition) string    { return partitionTag(p) + "dead" }
func keyIdem(pl hunt.PlayerID) string   { return playerTag(pl) + "idem" }
func keyWallet(pl hunt.PlayerID) string { return playerTag(pl) + "w" }
func keyLedger(pl hunt.PlayerID) string { return playerTag(pl) + "led" }
func keyPos(pl hunt.PlayerID) string    { return playerTag(pl) + "pos" }

func keyHotspot(p geo.Partition, h hunt.HuntID, s hunt.HotspotID) string {
	return partitionTag(p) + "hs:" + string(h) + ":" + string(s)
}

func keyClaimers(p geo.Partition, h hunt.HuntID, s hunt.HotspotID) string {
	return partitionTag(p) + "cl:" + string(h) + ":" + string(s)
}

// logID is the log stream id of an event: the sequence number is the id's
// time part, so XRANGE by id is a range by sequence number.
func logID(seq hunt.Seq) string { return strconv.FormatUint(uint64(seq), 10) + "-0" }

// keyspace names the keys whose layout differs under Redis Cluster
// (docs/REDIS.md, "Redis Cluster"): a hunt's keys share the hash tag
// {h:<hunt>}, a player's keys move to the slot of the player's spend
// partition ({pS}, so that a spend is one call), and the claim Function
// reads the hunt's decision fields from a copy in the hotspot's partition
// slot. Partition keys are the same in both layouts. Single instance: the
// free functions above, unchanged.
type keyspace struct {
	cluster    bool
	partitions int
}

func (k keyspace) hunt(h hunt.HuntID) string {
	if k.cluster {
		return "cairn:{h:" + string(h) + "}:hunt"
	}
	return keyHunt(h)
}

func (k keyspace) hsIndex(h hunt.HuntID) string {
	if k.cluster {
		return "cairn:{h:" + string(h) + "}:hsidx"
	}
	return keyHsIndex(h)
}

func (k keyspace) geo(h hunt.HuntID) string {
	if k.cluster {
		return "cairn:{h:" + string(h) + "}:geo"
	}
	return keyGeo(h)
}

// hsGeohash (cluster only) maps hotspot id -> its geohash in the index, so
// the index step of an import removes a moved hotspot's old geo member
// without reading the hotspot's hash in another slot.
func (k keyspace) hsGeohash(h hunt.HuntID) string { return "cairn:{h:" + string(h) + "}:hsgh" }

// claimHunt is the hash the claim Function reads the hunt's decision fields
// from: the hunt itself, or (cluster) its copy in partition p's slot.
func (k keyspace) claimHunt(p geo.Partition, h hunt.HuntID) string {
	if k.cluster {
		return huntCopy(p, h)
	}
	return keyHunt(h)
}

// huntCopy (cluster only) is hunt h's decision fields (sa, ea, r, v) in partition p's slot.
func huntCopy(p geo.Partition, h hunt.HuntID) string { return partitionTag(p) + "hunt:" + string(h) }

// player is the prefix of a player's keys: "cairn:{u:<player>}:", or
// (cluster) "cairn:{pS}:u:<player>:" with S the player's spend partition.
func (k keyspace) player(pl hunt.PlayerID) string {
	if k.cluster {
		return partitionTag(spendPartition(pl, k.partitions)) + "u:" + string(pl) + ":"
	}
	return playerTag(pl)
}

func (k keyspace) idem(pl hunt.PlayerID) string   { return k.player(pl) + "idem" }
func (k keyspace) wallet(pl hunt.PlayerID) string { return k.player(pl) + "w" }
func (k keyspace) ledger(pl hunt.PlayerID) string { return k.player(pl) + "led" }
func (k keyspace) pos(pl hunt.PlayerID) string    { return k.player(pl) + "pos" }
func (k keyspace) revoke(pl hunt.PlayerID) string { return k.player(pl) + "rev" }

// Cluster-only partition keys of the split claim (docs/REDIS.md).
//
//	cairn:{pN}:idem      hash   "<player> <key>" -> "<fp> <seq> <rid>": the partition's decisions
//	cairn:{pN}:credited  string the seq below which every claim of the log is credited (the sweeper's cursor)
func keyPartIdem(p geo.Partition) string { return partitionTag(p) + "idem" }
func keyCredited(p geo.Partition) string { return partitionTag(p) + "credited" }
