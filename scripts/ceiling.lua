-- wrk script: closed-loop ceiling of spread, fresh, durable claims
-- (`scripts/bench.sh ceiling` sets it up and runs it). Every request is a
-- random player of TOKENS, a random hotspot of HOTSPOTS with that hotspot's
-- own lat/lon in the body (never too_far), and a unique Idempotency-Key, so
-- every request is a real durable decision in the hotspot's partition: mostly
-- 201 granted, a few 409 already_claimed when a (player, hotspot) pair comes
-- up twice. Any other answer (and every socket error wrk reports) is an error.
--
--   TOKENS=tokens.txt HOTSPOTS=hotspots.txt \
--   wrk -t1 -c64 -d10s --latency -s scripts/ceiling.lua http://127.0.0.1:PORT/
--
-- Env: TOKENS (one player token a line), HOTSPOTS (lines "id lat lon", the
-- lat/lon written exactly as imported), HUNT (default ceiling), SEED.
-- The request pieces are rendered once in init; a request is one
-- concatenation of four of them (no wrk.format, no table work per request).
local tokens_file = os.getenv("TOKENS") or error("set TOKENS to a file of player tokens, one a line")
local spots_file  = os.getenv("HOTSPOTS") or error("set HOTSPOTS to a file of 'id lat lon' lines")
local hunt        = os.getenv("HUNT") or "ceiling"
local seed        = tonumber(os.getenv("SEED") or "") or os.time()

local tid = 0
local threads = {}

function setup(thread)
  tid = tid + 1
  thread:set("tid", tid)
  table.insert(threads, thread)
end

function init(args)
  local host = wrk.headers["Host"] or (wrk.host .. ":" .. wrk.port)
  -- heads[i] .. auths[j] .. counter .. tails[i] is one whole request.
  heads, tails, auths = {}, {}, {}
  for line in io.lines(spots_file) do
    local id, lat, lon = line:match("^(%S+) (%S+) (%S+)$")
    if id then
      local body = '{"lat":' .. lat .. ',"lon":' .. lon .. '}'
      heads[#heads + 1] = "POST /v1/hunts/" .. hunt .. "/hotspots/" .. id .. "/claim HTTP/1.1\r\n" ..
        "Host: " .. host .. "\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\n"
      tails[#tails + 1] = "\r\n\r\n" .. body
    end
  end
  -- A per-run, per-thread key prefix: keys never repeat across runs on one data dir.
  local prefix = string.format("ceil-%d-%d-", os.time(), tid)
  for tok in io.lines(tokens_file) do
    if #tok > 0 then
      auths[#auths + 1] = "Authorization: Bearer " .. tok .. "\r\nIdempotency-Key: " .. prefix
    end
  end
  nh, na = #heads, #auths
  if nh == 0 or na == 0 then
    error("ceiling.lua: no hotspots or no tokens read")
  end
  math.randomseed(seed + 7919 * tid)
  counter = 0
  statuses = {}
end

function request()
  counter = counter + 1
  local h = math.random(nh)
  return heads[h] .. auths[math.random(na)] .. counter .. tails[h]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local errs, total = 0, 0
  local codes = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do
      codes[code] = (codes[code] or 0) + n
    end
  end
  for code, n in pairs(codes) do
    io.write(string.format("status %d: %d\n", code, n))
    total = total + n
    if not ((code >= 200 and code < 300) or code == 409) then
      errs = errs + n
    end
  end
  local e = summary.errors
  local sock = e.connect + e.read + e.write + e.timeout
  io.write(string.format("ceiling answers: %d, errors: %d (status not 2xx/409: %d, socket: %d)\n",
    total, errs + sock, errs, sock))
end
