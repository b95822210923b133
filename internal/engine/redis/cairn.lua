#!lua name=cairn
-- cairn-version: 7
--
-- Cairn's Redis Function library (docs/REDIS.md). Loaded with FUNCTION LOAD
-- REPLACE by internal/engine/redis when the library in Redis is missing or
-- carries an older cairn-version (the line above; bump it on every change).
--
-- Every function decides and applies in one atomic step: Redis runs one
-- function at a time, so a decision never sees a concurrent write (I1, I2,
-- I4), and Redis replicates the function's effects, not its call, to the AOF.
-- Redis does not roll a function back when a command in it fails, so the one
-- write that can fail on a healthy Redis (the log append: an entry id not
-- above the stream's last, when the seq counter and the log disagree) comes
-- first, through pcall, before any other write: a failing append leaves
-- nothing changed, never a grant or a debit without its event.
-- The decision rules and their order are hunt.DecideClaim's, the distance is
-- geo.DistanceM's (same constants, same order of operations), and times come
-- from the deciding node's clock (ARGV), never from TIME, so a replayed log
-- and the embedded engine agree on every outcome.
--
-- Formats built here (parsed by wire.go; keep both in step):
--   event   "1 kind outcome partition seq at_ms player key fp hunt hotspot lat lon geohash
--            reward points tickets_left amount balance reason"  (reason last: it may hold spaces)
--   answer  "ok <rid of the deciding request> <event>" | "err <code>"
--   idem    "<fp> <partition> <seq> <rid>"
--   ledger  "<claim|spend> <partition> <seq> <at_ms> <amount> <hunt> <hotspot> <reason>"
--   pos     "<lat> <lon> <unix s> <ns>"
-- Numbers that must stay exact travel as strings: fingerprints (uint64),
-- coordinates (Go's shortest round-trip form) and times (20-digit unix ns,
-- compared as strings; '' means no bound).

local GRANTED, ALREADY_CLAIMED, SOLD_OUT, TOO_FAR, NOT_OPEN, IMPLAUSIBLE = 1, 2, 3, 4, 5, 6
local INSUFFICIENT_FUNDS, SPENT = 7, 8
local KIND_CLAIM, KIND_SPEND = 1, 2
local RAD = 0.017453292519943295         -- float64(math.Pi / 180): the bits of Go's constant
local EARTH_DIAMETER_M = 12742017.6      -- 2 * 6371008.8 (exact in binary as a doubling)
local MOVEMENT_GRACE_S = 1               -- hunt.MovementGraceSecs
local LEDGER_LEN_MAX = 1000              -- engine.LedgerLimitMax: older entries are never asked for
local NS_PER_S = 1000000000

local function int(n) return string.format('%d', n) end

local function fields(s)
  local out = {}
  for f in string.gmatch(s, '[^ ]+') do out[#out + 1] = f end
  return out
end

-- Go's math.Sin, math.Cos and math.Asin (pure Go on amd64), ported operation
-- for operation with the same constants, so that distances here have the same
-- bits as geo.DistanceM's and a claim at the edge of the radius is decided the
-- same way by both engines (C's libm differs in the last bit for about a third
-- of all inputs). Arguments here are within [-2*pi, 2*pi]: no huge-argument
-- reduction is needed.
local SIN = { 1.58962301576546568060e-10, -2.50507477628578072866e-8, 2.75573136213857245213e-6,
  -1.98412698295895385996e-4, 8.33333333332211858878e-3, -1.66666666666666307295e-1 }
local COS = { -1.13585365213876817300e-11, 2.08757008419747316778e-9, -2.75573141792967388112e-7,
  2.48015872888517045348e-5, -1.38888888888730564116e-3, 4.16666666666665929218e-2 }
local PI4A, PI4B, PI4C = 7.85398125648498535156e-1, 3.77489470793079817668e-8, 2.69515142907905952645e-15
local FOUR_OVER_PI = 1.2732395447351628  -- float64(4 / math.Pi)
local PI_2 = 1.5707963267948966          -- float64(math.Pi / 2)
local PI_4 = 0.78539816339744828         -- float64(math.Pi / 4)
local MOREBITS = 6.123233995736765886130e-17
local HALF_MOREBITS = 3.061616997868383e-17
local TAN3PIO8 = 2.41421356237309504880

local function sin_poly(z, zz)
  return z + z * zz * ((((((SIN[1] * zz) + SIN[2]) * zz + SIN[3]) * zz + SIN[4]) * zz + SIN[5]) * zz + SIN[6])
end

local function cos_poly(zz)
  return 1.0 - 0.5 * zz + zz * zz * ((((((COS[1] * zz) + COS[2]) * zz + COS[3]) * zz + COS[4]) * zz + COS[5]) * zz + COS[6])
end

-- The octant j and reduced argument z of x >= 0 (Go's sin/cos, x < 2^29).
local function reduce(x)
  local j = math.floor(x * FOUR_OVER_PI)
  local y = j
  if j % 2 == 1 then
    j, y = j + 1, y + 1
  end
  j = j % 8
  return j, ((x - y * PI4A) - y * PI4B) - y * PI4C
end

local function go_sin(x)
  if x == 0 or x ~= x then return x end
  local sign = false
  if x < 0 then x, sign = -x, true end
  local j, z = reduce(x)
  if j > 3 then sign, j = not sign, j - 4 end
  local zz = z * z
  local y
  if j == 1 or j == 2 then y = cos_poly(zz) else y = sin_poly(z, zz) end
  if sign then y = -y end
  return y
end

local function go_cos(x)
  local sign = false
  if x < 0 then x = -x end
  local j, z = reduce(x)
  if j > 3 then j, sign = j - 4, not sign end
  if j > 1 then sign = not sign end
  local zz = z * z
  local y
  if j == 1 or j == 2 then y = sin_poly(z, zz) else y = cos_poly(zz) end
  if sign then y = -y end
  return y
end

local function xatan(x)
  local z = x * x
  z = z * ((((-8.750608600031904122785e-01 * z + -1.615753718733365076637e+01) * z + -7.500855792314704667340e+01) * z +
      -1.228866684490136173410e+02) * z + -6.485021904942025371773e+01) /
      (((((z + 2.485846490142306297962e+01) * z + 1.650270098316988542046e+02) * z + 4.328810604912902668951e+02) * z +
      4.853903996359136964868e+02) * z + 1.945506571482613964425e+02)
  return x * z + x
end

local function satan(x)
  if x <= 0.66 then return xatan(x) end
  if x > TAN3PIO8 then return PI_2 - xatan(1 / x) + MOREBITS end
  return PI_4 + xatan((x - 1) / (x + 1)) + HALF_MOREBITS
end

local function go_asin(x)
  if x == 0 then return x end
  local sign = false
  if x < 0 then x, sign = -x, true end
  if x > 1 then return 0 / 0 end
  local temp = math.sqrt(1 - x * x)
  if x > 0.7 then temp = PI_2 - satan(temp / x) else temp = satan(x / temp) end
  if sign then temp = -temp end
  return temp
end

-- geo.DistanceM, operation for operation.
local function distance_m(lat1, lon1, lat2, lon2)
  local dlat = (lat2 - lat1) * RAD
  local dlon = (lon2 - lon1) * RAD
  local a = go_sin(dlat / 2) * go_sin(dlat / 2) +
      go_cos(lat1 * RAD) * go_cos(lat2 * RAD) * go_sin(dlon / 2) * go_sin(dlon / 2)
  if a > 1 then a = 1 end
  return EARTH_DIAMETER_M * go_asin(math.sqrt(a))
end

-- time.Duration(now - last).Seconds() for times given as (unix s, ns).
local function seconds_between(now_s, now_ns, last_s, last_ns)
  local s, ns = now_s - last_s, now_ns - last_ns
  if s > 0 and ns < 0 then
    s, ns = s - 1, ns + NS_PER_S
  elseif s < 0 and ns > 0 then
    s, ns = s + 1, ns - NS_PER_S
  end
  return s + ns / 1e9
end

local function event(kind, outcome, part, seq, at_ms, player, key, fp, hunt, hotspot, lat, lon, geohash,
                     reward, points, tickets_left, amount, balance, reason)
  return table.concat({ '1', kind, outcome, part, seq, at_ms, player, key, fp, hunt, hotspot, lat, lon, geohash,
    reward, points, tickets_left, amount, balance, reason }, ' ')
end

-- The recorded decision of (player, key), or an error if the key was used for
-- another request. The record is written again (same value): a write, so a
-- node that WAITs for replicas after this call (MinReplicas) waits until the
-- replicas have everything up to here, the replayed decision included.
local function replay(kidem, key, rec, fp)
  local r = fields(rec)
  if r[1] ~= fp then return 'err key_reused' end
  redis.call('HSET', kidem, key, rec)
  local id = r[3] .. '-0'
  local got = redis.call('XRANGE', 'cairn:{p' .. r[2] .. '}:log', id, id)
  if #got == 0 then
    return redis.error_reply('ERR cairn: idempotency record ' .. rec .. ' points at a missing event')
  end
  return 'ok ' .. r[4] .. ' ' .. got[1][2][2]
end

-- Acknowledge the stream entry that carried the request (atomically with its
-- decision: it is never left pending once decided) and tell the waiting node.
local function finish(kreq, group, entry, chan, rid, answer)
  -- An error reply (a corrupt record) is returned as is, the entry left
  -- pending so that it is retried and, in the end, dead-lettered.
  if type(answer) == 'table' then return answer end
  if entry ~= '' then redis.call('XACK', kreq, group, entry) end
  if chan ~= '' then redis.call('PUBLISH', chan, rid .. ' ' .. answer) end
  return answer
end

-- append writes the event with the partition's next seq, before any other
-- write of the caller. On failure it returns nil and the error reply, with
-- nothing written (not even the seq counter).
local function append(kseq, klog, build)
  local seq = int(tonumber(redis.call('GET', kseq) or '0') + 1)
  local e = build(seq)
  local ok = redis.pcall('XADD', klog, seq .. '-0', 'e', e)
  if type(ok) == 'table' and ok.err then
    return nil, redis.error_reply('ERR cairn: log append ' .. klog .. ' ' .. seq .. '-0 failed, nothing changed: ' .. ok.err)
  end
  redis.call('SET', kseq, seq)
  return seq, e
end

-- ledger_push adds a ledger record, trimming the list only when it outgrows
-- its bound (one command less per call than trimming every time).
local function ledger_push(kled, rec)
  if redis.call('LPUSH', kled, rec) > LEDGER_LEN_MAX then
    redis.call('LTRIM', kled, 0, LEDGER_LEN_MAX - 1)
  end
end

-- wallet_touch records that the event (now_ms, part, seq) changed the wallet,
-- keeping the latest change by time, then partition, then seq: partitions
-- race, so "the last one applied" would differ from a fold of the log; the
-- latest is the same both ways, and the same as the embedded engine's.
local function wallet_touch(kwal, now_ms, part, seq)
  local cur = redis.call('HMGET', kwal, 't', 'p', 's')
  local t, p, s = tonumber(cur[1] or '-1'), tonumber(cur[2] or '-1'), tonumber(cur[3] or '-1')
  local nt, np, ns = tonumber(now_ms), tonumber(part), tonumber(seq)
  if nt > t or (nt == t and (np > p or (np == p and ns > s))) then
    redis.call('HSET', kwal, 't', now_ms, 'p', part, 's', seq)
  end
end

-- claim_core decides a claim and applies its partition's effects: the log
-- append first (nothing written if it fails), then the ticket (I1) and the
-- claimer (I2). last is the player's last granted position in the hunt
-- ("<lat> <lon> <unix s> <ns>") or false. Answers seq, event, outcome,
-- reward; or nil and the answer to return ('err <code>' or an error reply).
-- ARGV 1-12: player key fp hunt hotspot lat lon now_ns20 now_s now_ns now_ms partition
local function claim_core(khunt, khs, kcl, kseq, klog, a, last)
  local player, key, fp, hunt_id, hs_id, lat_s, lon_s = a[1], a[2], a[3], a[4], a[5], a[6], a[7]
  local now20, now_s, now_ns, now_ms, part = a[8], tonumber(a[9]), tonumber(a[10]), a[11], a[12]

  local h = redis.call('HMGET', khunt, 'sa', 'ea', 'r', 'v')
  if not h[3] then return nil, 'err unknown_hunt' end
  local s = redis.call('HMGET', khs, 'la', 'lo', 't', 'g', 'rw', 'pt', 'oa', 'ca', 'gh')
  if not s[1] then return nil, 'err unknown_hotspot' end

  local lat, lon = tonumber(lat_s), tonumber(lon_s)
  local tickets, granted = tonumber(s[3]), tonumber(s[4])
  local outcome
  if (h[1] ~= '' and now20 < h[1]) or (h[2] ~= '' and not (now20 < h[2])) or
      (s[7] ~= '' and now20 < s[7]) or (s[8] ~= '' and not (now20 < s[8])) then
    outcome = NOT_OPEN
  elseif redis.call('SISMEMBER', kcl, player) == 1 then
    outcome = ALREADY_CLAIMED
  elseif granted >= tickets then
    outcome = SOLD_OUT
  elseif distance_m(lat, lon, tonumber(s[1]), tonumber(s[2])) > tonumber(h[3]) then
    outcome = TOO_FAR
  else
    outcome = GRANTED
    local vmax = tonumber(h[4])
    if vmax > 0 and last then
      local l = fields(last)
      local dt = seconds_between(now_s, now_ns, tonumber(l[3]), tonumber(l[4]))
      if dt < MOVEMENT_GRACE_S then dt = MOVEMENT_GRACE_S end
      if distance_m(tonumber(l[1]), tonumber(l[2]), lat, lon) / dt > vmax then
        outcome = IMPLAUSIBLE
      end
    end
  end

  local reward, points, left = '0', '0', tickets - granted
  if outcome == GRANTED then
    reward, points, left = s[5], s[6], left - 1
  end
  local seq, e = append(kseq, klog, function(seq)
    return event(KIND_CLAIM, outcome, part, seq, now_ms, player, key, fp, hunt_id, hs_id, lat_s, lon_s, s[9],
      reward, points, int(left), '0', '0', '')
  end)
  if not seq then return nil, e end
  if outcome == GRANTED then
    redis.call('HINCRBY', khs, 'g', 1)
    redis.call('SADD', kcl, player)
  end
  return seq, e, outcome, reward
end

-- KEYS: hunt, hotspot, claimers, seq, log, idem, wallet, ledger, pos, req
-- ARGV: player key fp hunt hotspot lat lon now_ns20 now_s now_ns now_ms partition entry group chan rid
local function claim_decide(keys, a)
  local khunt, khs, kcl, kseq, klog, kidem, kwal, kled, kpos = unpack(keys, 1, 9)
  local key, fp, hunt_id, lat_s, lon_s, now_ms, part, rid = a[2], a[3], a[4], a[6], a[7], a[11], a[12], a[16]

  local rec = redis.call('HGET', kidem, key)
  if rec then return replay(kidem, key, rec, fp) end

  local seq, e, outcome, reward = claim_core(khunt, khs, kcl, kseq, klog, a, redis.call('HGET', kpos, hunt_id))
  if not seq then return e end
  if outcome == GRANTED then
    redis.call('HSET', kpos, hunt_id, lat_s .. ' ' .. lon_s .. ' ' .. a[9] .. ' ' .. a[10])
  end
  if outcome == GRANTED and reward ~= '0' then -- a grant without reward leaves the wallet alone, as embedded does
    redis.call('HINCRBY', kwal, 'b', reward)
    wallet_touch(kwal, now_ms, part, seq)
    ledger_push(kled, table.concat({ 'claim', part, seq, now_ms, reward, hunt_id, a[5], '' }, ' '))
  end
  redis.call('HSET', kidem, key, fp .. ' ' .. part .. ' ' .. seq .. ' ' .. rid)
  return 'ok ' .. rid .. ' ' .. e
end

local function claim(keys, a)
  return finish(keys[10], a[14], a[13], a[15], a[16], claim_decide(keys, a))
end

-- KEYS: seq, log, idem, wallet, ledger, req
-- ARGV: player key fp amount reason now_ms partition entry group chan rid
local function spend_decide(keys, a)
  local kseq, klog, kidem, kwal, kled = unpack(keys, 1, 5)
  local player, key, fp, amount_s, reason, now_ms, part, rid = a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[11]

  local rec = redis.call('HGET', kidem, key)
  if rec then return replay(kidem, key, rec, fp) end

  local balance = tonumber(redis.call('HGET', kwal, 'b') or '0')
  local outcome = SPENT
  if tonumber(amount_s) > balance then outcome = INSUFFICIENT_FUNDS end
  local after = balance
  if outcome == SPENT then after = balance - tonumber(amount_s) end
  local seq, e = append(kseq, klog, function(seq)
    return event(KIND_SPEND, outcome, part, seq, now_ms, player, key, fp, '', '', '0', '0', '',
      '0', '0', '0', amount_s, int(after), reason)
  end)
  if not seq then return e end
  if outcome == SPENT then
    redis.call('HINCRBY', kwal, 'b', '-' .. amount_s)
    wallet_touch(kwal, now_ms, part, seq)
    ledger_push(kled, table.concat({ 'spend', part, seq, now_ms, '-' .. amount_s, '', '', reason }, ' '))
  end
  redis.call('HSET', kidem, key, fp .. ' ' .. part .. ' ' .. seq .. ' ' .. rid)
  return 'ok ' .. rid .. ' ' .. e
end

local function spend(keys, a)
  return finish(keys[6], a[9], a[8], a[10], a[11], spend_decide(keys, a))
end

-- Redis Cluster: a claim whose player keys (in the slot of the player's
-- spend partition) and hotspot (in its partition's slot) are in different
-- slots is three single-slot calls, each idempotent by the claim's key
-- (docs/REDIS.md): reserve (player slot), decide (partition slot), credit
-- (player slot). A player's idempotency record is "<fp> <partition> 0 -"
-- while the claim is reserved and not yet credited.

-- Reserve the key for this request, or refuse a key used for another one,
-- and answer the player's last granted position in the hunt ('' if none).
-- The record is written in every case (the same value when present), so a
-- WAIT after this call covers it.
-- KEYS: idem, pos. ARGV: key fp partition hunt
local function reserve(keys, a)
  local kidem, kpos = keys[1], keys[2]
  local rec = redis.call('HGET', kidem, a[1])
  if rec then
    if fields(rec)[1] ~= a[2] then return 'err key_reused' end
  else
    rec = a[2] .. ' ' .. a[3] .. ' 0 -'
  end
  redis.call('HSET', kidem, a[1], rec)
  return 'ok ' .. (redis.call('HGET', kpos, a[4]) or '')
end

-- Decide a reserved claim in its partition's slot: its own idempotency
-- record ("<player> <key>" -> "<fp> <seq> <rid>") makes a second call a
-- replay; otherwise as cairn_claim without the player's keys, with the last
-- position from the reserve.
-- KEYS: hunt copy, hotspot, claimers, seq, log, partition idem
-- ARGV: player key fp hunt hotspot lat lon now_ns20 now_s now_ns now_ms partition rid last
local function decide(keys, a)
  local kpidem, klog = keys[6], keys[5]
  local field = a[1] .. ' ' .. a[2]
  local rec = redis.call('HGET', kpidem, field)
  if rec then
    local r = fields(rec)
    if r[1] ~= a[3] then return 'err key_reused' end
    redis.call('HSET', kpidem, field, rec)
    local id = r[2] .. '-0'
    local got = redis.call('XRANGE', klog, id, id)
    if #got == 0 then
      return redis.error_reply('ERR cairn: partition idempotency record ' .. rec .. ' points at a missing event')
    end
    return 'ok ' .. r[3] .. ' ' .. got[1][2][2]
  end
  local last = a[14]
  if last == '' then last = false end
  local seq, e = claim_core(keys[1], keys[2], keys[3], keys[4], keys[5], a, last)
  if not seq then return e end
  redis.call('HSET', kpidem, field, a[3] .. ' ' .. seq .. ' ' .. a[13])
  return 'ok ' .. a[13] .. ' ' .. e
end

-- Credit a decided claim to its player, once: unless the player's record
-- is already final, apply the grant (last position if newer, wallet, ledger)
-- and make the record final "<fp> <partition> <seq> <rid>". A rejection
-- only makes the record final. Answers 1 when applied, 0 when it was already.
-- KEYS: idem, wallet, ledger, pos. ARGV: rid (of the deciding request) event
local function credit(keys, a)
  local kidem, kwal, kled, kpos = keys[1], keys[2], keys[3], keys[4]
  local f = fields(a[2])
  local outcome, part, seq, at_ms, key, fp = tonumber(f[3]), f[4], f[5], f[6], f[8], f[9]
  local hunt_id, hs_id, lat_s, lon_s, reward = f[10], f[11], f[12], f[13], f[15]
  if tonumber(f[2]) ~= KIND_CLAIM or not reward then
    return redis.error_reply('ERR cairn: credit of a record that is not a claim: ' .. a[2])
  end
  local rec = redis.call('HGET', kidem, key)
  if rec then
    local r = fields(rec)
    if r[1] ~= fp then
      return redis.error_reply('ERR cairn: credit of ' .. key .. ': the key holds another request ' .. rec)
    end
    if r[3] ~= '0' then
      redis.call('HSET', kidem, key, rec) -- a write, for the caller's WAIT
      return 0
    end
  end
  if outcome == GRANTED then
    local ms = tonumber(at_ms)
    local s, ns = math.floor(ms / 1000), (ms % 1000) * 1000000
    local cur = redis.call('HGET', kpos, hunt_id)
    local newer = true
    if cur then
      local c = fields(cur)
      local cs, cns = tonumber(c[3]), tonumber(c[4])
      newer = s > cs or (s == cs and ns >= cns)
    end
    if newer then redis.call('HSET', kpos, hunt_id, lat_s .. ' ' .. lon_s .. ' ' .. int(s) .. ' ' .. int(ns)) end
    if reward ~= '0' then
      redis.call('HINCRBY', kwal, 'b', reward)
      wallet_touch(kwal, at_ms, part, seq)
      ledger_push(kled, table.concat({ 'claim', part, seq, at_ms, reward, hunt_id, hs_id, '' }, ' '))
    end
  end
  redis.call('HSET', kidem, key, fp .. ' ' .. part .. ' ' .. seq .. ' ' .. a[1])
  return 1
end

-- The sweeper's read: the cursor and the events of the log past it (at most
-- ARGV[1]). When it returns events, or when ARGV[2] is '1', the cursor is
-- written (the same value) so that a WAIT after this call proves every write
-- of this primary before it, the events returned included, is on the
-- replicas; an idle partition costs no write.
-- KEYS: credited, log. ARGV: count touch
local function sweep_read(keys, a)
  local cur = redis.call('GET', keys[1]) or '0'
  local out = { cur }
  for _, m in ipairs(redis.call('XRANGE', keys[2], '(' .. cur .. '-0', '+', 'COUNT', a[1])) do
    out[#out + 1] = m[2][2]
  end
  if #out > 1 or a[2] == '1' then redis.call('SET', keys[1], cur) end
  return out
end

-- Advance the sweeper's cursor to ARGV[1] unless it is already past it.
-- KEYS: credited
local function sweep_advance(keys, a)
  if tonumber(redis.call('GET', keys[1]) or '0') < tonumber(a[1]) then
    redis.call('SET', keys[1], a[1])
    return 1
  end
  return 0
end

-- Cluster import, step 1 (each partition's slot): upsert hotspots whose
-- partition is ARGV[2]; tickets never below granted (I1).
-- KEYS: the partition's seq (for routing). ARGV: hunt partition n, then n times:
-- id lat lon tickets reward points opens_ns20 closes_ns20 geohash
local function import_hotspots(_, a)
  local hunt_id, part, n = a[1], a[2], tonumber(a[3])
  for j = 0, n - 1 do
    local i = 4 + j * 9
    local id, tickets = a[i], a[i + 3]
    local khs = 'cairn:{p' .. part .. '}:hs:' .. hunt_id .. ':' .. id
    local g = redis.call('HGET', khs, 'g')
    if g and tonumber(tickets) < tonumber(g) then tickets = g end
    redis.call('HSET', khs, 'la', a[i + 1], 'lo', a[i + 2], 't', tickets, 'rw', a[i + 4], 'pt', a[i + 5],
      'oa', a[i + 6], 'ca', a[i + 7], 'gh', a[i + 8])
    redis.call('HSETNX', khs, 'g', 0)
  end
  return 'ok'
end

-- Cluster import, step 2 (the hunt's slot): pin each hotspot's partition and
-- update the geo index. A hotspot already pinned to another partition than
-- the one given is skipped and answered as {id, pinned partition}, so the
-- caller writes it there and calls again.
-- KEYS: hunt, hotspot index, geo index, hotspot geohashes. ARGV: n, then n times: id partition geohash
local function import_index(keys, a)
  local khunt, kidx, kgeo, kgh = keys[1], keys[2], keys[3], keys[4]
  if redis.call('EXISTS', khunt) == 0 then return 'err unknown_hunt' end
  local moved = {}
  for j = 0, tonumber(a[1]) - 1 do
    local i = 2 + j * 3
    local id, part, gh = a[i], a[i + 1], a[i + 2]
    local pinned = redis.call('HGET', kidx, id)
    if pinned and pinned ~= part then
      moved[#moved + 1] = id
      moved[#moved + 1] = pinned
    else
      if not pinned then redis.call('HSET', kidx, id, part) end
      local old = redis.call('HGET', kgh, id)
      if old and old ~= gh then redis.call('ZREM', kgeo, old .. '|' .. id .. '|' .. part) end
      redis.call('ZADD', kgeo, 0, gh .. '|' .. id .. '|' .. part)
      redis.call('HSET', kgh, id, gh)
    end
  end
  return moved
end

-- Upsert hotspots of one hunt. A hotspot keeps the partition of its first
-- import (its state lives there); tickets are never set below granted (I1).
-- KEYS: hunt, hotspot index, geo index
-- ARGV: hunt n, then n times: id partition lat lon tickets reward points opens_ns20 closes_ns20 geohash
local function import(keys, a)
  local khunt, kidx, kgeo = keys[1], keys[2], keys[3]
  if redis.call('EXISTS', khunt) == 0 then return 'err unknown_hunt' end
  local hunt_id, n = a[1], tonumber(a[2])
  for j = 0, n - 1 do
    local i = 3 + j * 10
    local id, part, tickets, gh = a[i], a[i + 1], a[i + 4], a[i + 9]
    local pinned = redis.call('HGET', kidx, id)
    if pinned then part = pinned else redis.call('HSET', kidx, id, part) end
    local khs = 'cairn:{p' .. part .. '}:hs:' .. hunt_id .. ':' .. id
    local old = redis.call('HMGET', khs, 'g', 'gh')
    if old[1] and tonumber(tickets) < tonumber(old[1]) then tickets = old[1] end
    redis.call('HSET', khs, 'la', a[i + 2], 'lo', a[i + 3], 't', tickets, 'rw', a[i + 5], 'pt', a[i + 6],
      'oa', a[i + 7], 'ca', a[i + 8], 'gh', gh)
    redis.call('HSETNX', khs, 'g', 0)
    if old[2] and old[2] ~= gh then redis.call('ZREM', kgeo, old[2] .. '|' .. id .. '|' .. part) end
    redis.call('ZADD', kgeo, 0, gh .. '|' .. id .. '|' .. part)
  end
  return 'ok'
end

local function id_less(x, y)
  local xm, xs = string.match(x, '^(%d+)-(%d+)$')
  local ym, ys = string.match(y, '^(%d+)-(%d+)$')
  xm, ym = tonumber(xm), tonumber(ym)
  return xm < ym or (xm == ym and tonumber(xs) < tonumber(ys))
end

-- Trim a request stream below what every group has acknowledged: below the
-- oldest pending entry, or (nothing pending) below the last delivered one.
-- Undelivered entries are above last-delivered-id and always kept. With
-- ARGV[1] > 0 it also removes from each group the consumers idle longer than
-- ARGV[1] ms that hold no pending entry (nodes gone for good: a dead node's
-- pending entries are first reclaimed by the living, then it is removed).
-- KEYS: req. ARGV: dead consumer idle ms (0: keep all). Answers {lag,
-- pending, trimmed, consumers removed} summed over the groups.
local function trim(keys, a)
  local kreq = keys[1]
  if redis.call('EXISTS', kreq) == 0 then return { 0, 0, 0, 0 } end
  local dead_ms = tonumber(a[1] or '0') or 0
  local cut, lag, pending, removed = nil, 0, 0, 0
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', kreq)) do
    local m = {}
    for i = 1, #g, 2 do m[g[i]] = g[i + 1] end
    if dead_ms > 0 then
      for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', kreq, m['name'])) do
        local cm = {}
        for i = 1, #c, 2 do cm[c[i]] = c[i + 1] end
        if cm['pending'] == 0 and cm['idle'] > dead_ms then
          redis.call('XGROUP', 'DELCONSUMER', kreq, m['name'], cm['name'])
          removed = removed + 1
        end
      end
    end
    local c = m['last-delivered-id']
    if m['pending'] > 0 then c = redis.call('XPENDING', kreq, m['name'])[2] end
    if cut == nil or id_less(c, cut) then cut = c end
    pending = pending + m['pending']
    if type(m['lag']) == 'number' then lag = lag + m['lag'] end
  end
  local trimmed = 0
  if cut then trimmed = redis.call('XTRIM', kreq, 'MINID', cut) end
  return { lag, pending, trimmed, removed }
end

-- Move a poison entry to the dead-letter stream, acknowledge it, and tell the
-- node that waits for it. KEYS: req, dead. ARGV: group id deliveries
local function dead(keys, a)
  local kreq, kdead = keys[1], keys[2]
  local got = redis.call('XRANGE', kreq, a[2], a[2])
  -- Only an entry still pending is moved aside: one that a node decided (and
  -- acknowledged) meanwhile must not also be announced as dead.
  if redis.call('XACK', kreq, a[1], a[2]) == 0 then return 0 end
  if #got == 0 then return 0 end
  local f = got[1][2]
  local add = { 'XADD', kdead, '*', 'src', a[2], 'deliveries', a[3] }
  local m = {}
  for i = 1, #f, 2 do
    add[#add + 1] = f[i]
    add[#add + 1] = f[i + 1]
    m[f[i]] = f[i + 1]
  end
  redis.call(unpack(add))
  if m['ch'] and m['rid'] then redis.call('PUBLISH', m['ch'], m['rid'] .. ' err dead_letter') end
  return 1
end

-- The distance as this library computes it, for tests comparing it with geo.DistanceM.
local function distance(_, a)
  return string.format('%.17g', distance_m(tonumber(a[1]), tonumber(a[2]), tonumber(a[3]), tonumber(a[4])))
end

redis.register_function('cairn_claim', claim)
redis.register_function('cairn_spend', spend)
redis.register_function('cairn_import', import)
redis.register_function('cairn_trim', trim)
redis.register_function('cairn_dead', dead)
redis.register_function('cairn_reserve', reserve)
redis.register_function('cairn_decide', decide)
redis.register_function('cairn_credit', credit)
redis.register_function('cairn_sweep_read', sweep_read)
redis.register_function('cairn_sweep_advance', sweep_advance)
redis.register_function('cairn_import_hotspots', import_hotspots)
redis.register_function('cairn_import_index', import_index)
redis.register_function { function_name = 'cairn_distance', callback = distance, flags = { 'no-writes' } }
