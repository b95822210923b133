-- wrk script: closed-loop claim ceiling of a Cairn server (not open-loop: do
-- not compare its latencies with cairn load's). Every request is a full
-- durable claim decision: a unique Idempotency-Key per request, so nothing is
-- answered from the idempotency cache. The demo hunt's notre-dame hotspot has
-- 1000 tickets; after that the answers are 409 already_claimed/sold_out, each
-- still decided by the partition and committed.
--
--   TOKEN=$(cairn token --data DIR --player bench) \
--   wrk -t1 -c64 -d20s --latency -s scripts/claim.lua http://127.0.0.1:PORT/
--
-- Env: TOKEN (required), HUNT (default demo), HOTSPOT (default notre-dame),
-- LAT/LON (default Notre-Dame de Paris).
local token   = os.getenv("TOKEN") or error("set TOKEN to a player token (cairn token)")
local hunt    = os.getenv("HUNT") or "demo"
local hotspot = os.getenv("HOTSPOT") or "notre-dame"
local lat     = os.getenv("LAT") or "48.85296"
local lon     = os.getenv("LON") or "2.34990"

local path = "/v1/hunts/" .. hunt .. "/hotspots/" .. hotspot .. "/claim"
local body = '{"lat":' .. lat .. ',"lon":' .. lon .. '}'
local counter = 0
local tid = 0
local threads = {}

function setup(thread)
  tid = tid + 1
  thread:set("tid", tid)
  table.insert(threads, thread)
end

function init(args)
  -- a per-run prefix keeps keys unique across runs on the same data dir
  prefix = string.format("wrk-%d-%d-", os.time(), tid)
  statuses = {}
end

function request()
  counter = counter + 1
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = prefix .. counter,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, n in pairs(s) do
      io.write(string.format("status %d: %d\n", code, n))
    end
  end
end
