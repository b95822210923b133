package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Resharding, as an operator does it (docs/REDIS.md, "Adding a shard and
// moving slots"): a new primary and its replica joined by CLUSTER MEET and
// CLUSTER REPLICATE, and the slot migration procedure of the Redis Cluster
// specification for one slot at a time (CLUSTER SETSLOT IMPORTING /
// MIGRATING, MIGRATE of the slot's keys, CLUSTER SETSLOT NODE), which is what
// redis-cli --cluster reshard runs for each slot it moves.

// opTimeout bounds each command of a resharding step.
const opTimeout = 10 * time.Second

func client(addr string) *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: opTimeout, WriteTimeout: opTimeout})
}

// NodeID is the cluster node id of s (CLUSTER MYID).
func NodeID(s *Server) (string, error) { return Info(s.Addr(), "CLUSTER", "MYID") }

// KeySlot is the cluster slot of key (CLUSTER KEYSLOT, asked of the first server).
func (c *Cluster) KeySlot(key string) (int, error) {
	cl := client(c.Servers[0].Addr())
	defer cl.Close()
	n, err := cl.ClusterKeySlot(context.Background(), key).Result()
	return int(n), err
}

// SlotOwner is the primary that owns slot, as the first running server's
// CLUSTER NODES reports it, or nil.
func (c *Cluster) SlotOwner(slot int) (*Server, error) {
	for _, s := range c.Servers {
		if s.cmd == nil {
			continue
		}
		text, err := Info(s.Addr(), "CLUSTER", "NODES")
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(line)
			if len(f) < 8 || !strings.Contains(f[2], "master") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, isRange := strings.Cut(r, "-")
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if !isRange {
					b, err2 = a, nil
				}
				if err1 != nil || err2 != nil || slot < a || slot > b {
					continue // a migration marker "[slot->-id]", or another range
				}
				addr, _, _ := strings.Cut(f[1], "@")
				for _, o := range c.Servers {
					if o.Addr() == addr {
						return o, nil
					}
				}
				return nil, fmt.Errorf("redistest: slot %d is owned by %s, not a server of this cluster", slot, addr)
			}
		}
		return nil, nil
	}
	return nil, fmt.Errorf("redistest: no running server")
}

// MoveSlot migrates slot, keys and ownership, from its owner to primary to,
// while the cluster serves: SETSLOT IMPORTING on to, MIGRATING on the owner,
// MIGRATE of the slot's keys in batches, then SETSLOT NODE on to, the owner
// and every other primary. During the move the owner answers a call whose
// keys have left with -ASK and a call whose keys are split with -TRYAGAIN.
func (c *Cluster) MoveSlot(slot int, to *Server) error {
	from, err := c.SlotOwner(slot)
	if err != nil || from == nil {
		return fmt.Errorf("redistest: owner of slot %d: %v", slot, err)
	}
	if from == to {
		return nil
	}
	fromID, err1 := NodeID(from)
	toID, err2 := NodeID(to)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("redistest: node ids: %v, %v", err1, err2)
	}
	ctx := context.Background()
	src, dst := client(from.Addr()), client(to.Addr())
	defer src.Close()
	defer dst.Close()
	if err := dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID).Err(); err != nil {
		return fmt.Errorf("redistest: SETSLOT %d IMPORTING on %s: %w", slot, to.Addr(), err)
	}
	if err := src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID).Err(); err != nil {
		return fmt.Errorf("redistest: SETSLOT %d MIGRATING on %s: %w", slot, from.Addr(), err)
	}
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			return fmt.Errorf("redistest: GETKEYSINSLOT %d: %w", slot, err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", to.Port, "", 0, opTimeout.Milliseconds(), "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("redistest: MIGRATE slot %d: %w", slot, err)
		}
	}
	// The new owner first, then the old one, then the others (they would
	// learn it by gossip; telling them saves them a redirect).
	order := []*Server{to, from}
	for _, s := range c.Primaries() {
		if s != to && s != from {
			order = append(order, s)
		}
	}
	for _, s := range order {
		cl := client(s.Addr())
		err := cl.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err()
		cl.Close()
		if err != nil {
			return fmt.Errorf("redistest: SETSLOT %d NODE on %s: %w", slot, s.Addr(), err)
		}
	}
	return nil
}

// AddShard starts a new primary and its replica and joins them as the
// cluster protocol does it: CLUSTER MEET from each to a member, then
// CLUSTER REPLICATE on the replica. The primary owns no slot until slots
// are moved to it, and it has no function library: redis-cli --cluster
// add-node copies the library to a new primary (Redis 7), a bare CLUSTER
// MEET does not, so the test sees the node's own loading. It waits until
// every server agrees and the replica is online, failing the test after 30 s.
func (c *Cluster) AddShard() (primary, replica *Server) {
	c.t.Helper()
	seed := c.Primaries()[0]
	primary = c.startServer()
	c.meet(primary, seed)
	c.Servers = append(c.Servers, primary)
	c.waitAgree()
	id, err := NodeID(primary)
	if err != nil {
		c.t.Fatalf("redistest: node id of %s: %v", primary.Addr(), err)
	}
	replica = c.startServer()
	c.meet(replica, seed)
	c.Servers = append(c.Servers, replica)
	c.waitAgree()
	deadline := time.Now().Add(30 * time.Second)
	for { // the replica learns of the primary by gossip
		_, err := Info(replica.Addr(), "CLUSTER", "REPLICATE", id)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: CLUSTER REPLICATE on %s: %v", replica.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond) // polling the gossip, not a wait for an event
	}
	for {
		info, _ := Info(primary.Addr(), "INFO", "replication")
		if strings.Contains(info, "connected_slaves:1\r\n") && strings.Contains(info, "state=online") {
			c.waitAgree()
			return primary, replica
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: the replica %s of the new primary %s is not online within 30s", replica.Addr(), primary.Addr())
		}
		time.Sleep(20 * time.Millisecond) // polling the link, not a wait for an event
	}
}

// meet has s join the cluster of member (CLUSTER MEET).
func (c *Cluster) meet(s, member *Server) {
	c.t.Helper()
	if _, err := Info(s.Addr(), "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(member.Port)); err != nil {
		c.t.Fatalf("redistest: CLUSTER MEET from %s: %v", s.Addr(), err)
	}
}

// waitAgree waits until redis-cli --cluster check passes (every node
// agrees on the configuration, every slot covered, none open), failing the
// test after 30 s.
func (c *Cluster) waitAgree() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command(c.cli, "--cluster", "check", c.Primaries()[0].Addr()).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: redis-cli --cluster check fails after 30s: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond) // polling the gossip, not a wait for an event
	}
}
