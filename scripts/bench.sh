#!/usr/bin/env bash
# bench.sh: reproduce the main figures of docs/BENCHMARKS.md on this machine.
#
# For each named scenario it starts a fresh `cairn serve` (embedded store, fresh
# data dir under a temp dir, a free 127.0.0.1 port, --claim-rate 0 so the
# per-player limit does not shape the load), runs `cairn load ... --json`,
# prints the JSON (which includes the verifier's verdict), scrapes batch size,
# commit latency and projection staleness from /metrics, and stops the server.
# Bounded in time: every load run has a fixed --duration (or storm rounds) and
# the whole script is killed after BENCH_TIMEOUT seconds.
#
#   scripts/bench.sh                 # uniform 5k, 10k, 20k for 30 s; hunt 2000/s 30 s; storm 200 and 10000
#   scripts/bench.sh uniform-ramp    # 2000->30000 claims/s over 30 s, to find the knee
#   scripts/bench.sh uniform:8000:60s hunt:2000:5s storm:200:5 wrk
#   scripts/bench.sh ceiling         # wrk: /healthz, then spread fresh claims; their ratio
#   scripts/bench.sh floor           # the same wrk runs on scripts/floor: the stack without Cairn
#
# Scenario words: uniform:RATE:DURATION, uniform-ramp, hunt:RATE:DURATION,
# storm:CONCURRENCY:ROUNDS, replay:RATE:DURATION, wrk (closed-loop ceiling with
# scripts/claim.lua, needs /usr/bin/wrk), ceiling (closed-loop, wrk: the
# /healthz rate, then the rate of spread durable claims with scripts/ceiling.lua
# over 10,000 hotspots in all partitions and 20,000 players, their ratio, the
# commit figures from /metrics and `cairn verify`; see run_ceiling; it also
# prints the server's CPU per /healthz and per claim, from /proc/PID/stat over
# each wrk run, and wrk's own, from /usr/bin/time), floor (the same two wrk
# runs on scripts/floor, a bare net/http server, at the depths of
# FLOOR_DEPTHS, default all seven; see run_floor).
# Env: CAIRN (binary; default: built into the temp dir), BENCH_TIMEOUT
# (default 1800 s), GOGC (passed to the server), STORE (default embedded; a
# redis:// URL runs the same scenarios on the Redis engine; `redis` starts a
# fresh redis-server per scenario on a free port, appendonly yes, appendfsync
# always, and with `ceiling` also measures the claim Function called directly
# with redis-benchmark, see run_function_ceiling, and prints Redis's commands,
# socket reads and command time per claim and per direct call, see
# redis_per_claim; `redis-cluster` starts a fresh
# Redis Cluster per scenario, 3 primaries and 3 replicas, each as durable, and
# serves with --store redis-cluster://...), REDIS_MODE,
# BENCH_PROFILE (a directory: the server runs with --pprof-addr; `ceiling`
# saves a 4 s CPU profile of the claim run as cpu-ceiling.pprof, the load
# words save the heap after two forced collections as heap-WORD.pprof and
# print the live heap; read them with `go tool pprof -top BINARY FILE`),
# BENCH_CONSOLES (N: `ceiling` runs with N ops consoles open on its hunt in
# headless Chromium, scripts/consoles; needs chromium), BENCH_CONSOLES_NICE
# (the browsers' niceness, default 19; 0 leaves Chromium's own),
# BENCH_CONSOLES_MODE=http (the consoles' polls sent with curl, no browser),
# CEILING_DURATION (each wrk run of `ceiling`, default 10s),
# BENCH_TRACE_RATIO (e.g. 0.01: the server traces that share of requests,
# exported by OTLP/HTTP to scripts/otlp-sink.py on a free port, which prints
# how many export requests and bytes it received at the end).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/cairn-bench.XXXXXX)
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
STORE=${STORE:-embedded}
REDIS_MODE=${REDIS_MODE:-direct}
server_pid=""
consoles_pid=""
redis_pid=""
sink_pid=""
floor_pid=""
store_url=$STORE

cleanup() {
  if [[ -n "$consoles_pid" ]] && kill -0 "$consoles_pid" 2>/dev/null; then
    kill "$consoles_pid"; wait "$consoles_pid" 2>/dev/null || true
  fi
  if [[ -n "$sink_pid" ]] && kill -0 "$sink_pid" 2>/dev/null; then
    kill "$sink_pid"; wait "$sink_pid" 2>/dev/null || true
  fi
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  fi
  if [[ -n "$floor_pid" ]] && kill -0 "$floor_pid" 2>/dev/null; then
    kill "$floor_pid"; wait "$floor_pid" 2>/dev/null || true
  fi
  local p
  for p in $redis_pid; do # one pid, or a cluster's
    if kill -0 "$p" 2>/dev/null; then kill -9 "$p"; wait "$p" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
# Self-imposed wall-clock bound on the whole campaign.
( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep "$BENCH_TIMEOUT" & s=$!; wait $s
  echo "bench.sh: timeout after ${BENCH_TIMEOUT}s" >&2; kill -TERM $$ ) >/dev/null 2>&1 &
watchdog=$!
trap 'kill $watchdog 2>/dev/null || true; cleanup' EXIT
trap 'exit 143' TERM INT

if [[ -z "${CAIRN:-}" ]]; then
  CAIRN=$work/cairn
  (cd "$here" && go build -o "$CAIRN" ./cmd/cairn)
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_redis NAME: a fresh durable redis-server for STORE=redis; sets
# redis_port, redis_pid and store_url.
start_redis() {
  redis_port=$(free_port)
  mkdir -p "$work/redis-$1"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis-$1" --save "" --appendonly yes \
    --appendfsync always --daemonize no --logfile "$work/redis-$1/redis.log" &
  redis_pid=$!
  local deadline=$((SECONDS + 15))
  until [[ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" == PONG ]]; do
    if ((SECONDS > deadline)); then echo "bench.sh: redis-server did not start" >&2; exit 1; fi
    sleep 0.05
  done
  store_url="redis://127.0.0.1:$redis_port/0"
  echo "# redis-server --port $redis_port --appendonly yes --appendfsync always --save \"\" (fresh, for $1)" >&2
}

# cluster_port: a free port p <= 55535 with p + 10000 (its cluster bus) free too.
cluster_port() {
  python3 -c '
import random, socket
for _ in range(200):
    p = random.randint(20000, 55535)
    try:
        a = socket.socket(); a.bind(("127.0.0.1", p)); b = socket.socket(); b.bind(("127.0.0.1", p + 10000))
    except OSError:
        continue
    a.close(); b.close(); print(p); break'
}

# start_redis_cluster NAME: a fresh Redis Cluster for STORE=redis-cluster, 3
# primaries and 3 replicas on 127.0.0.1, each durable like start_redis's;
# sets redis_pid (all six pids) and store_url.
start_redis_cluster() {
  local i p addrs=() deadline
  redis_pid=""
  for i in 0 1 2 3 4 5; do
    p=$(cluster_port)
    mkdir -p "$work/redis-$1-$i"
    redis-server --port "$p" --bind 127.0.0.1 --dir "$work/redis-$1-$i" --save "" --appendonly yes \
      --appendfsync always --daemonize no --logfile "$work/redis-$1-$i/redis.log" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 &
    redis_pid+=" $!"
    addrs+=("127.0.0.1:$p")
    deadline=$((SECONDS + 15))
    until [[ "$(redis-cli -p "$p" ping 2>/dev/null)" == PONG ]]; do
      if ((SECONDS > deadline)); then echo "bench.sh: redis-server did not start" >&2; exit 1; fi
      sleep 0.05
    done
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$work/cluster-$1.log" 2>&1 || {
    echo "bench.sh: redis-cli --cluster create failed:" >&2; cat "$work/cluster-$1.log" >&2; exit 1; }
  deadline=$((SECONDS + 30))
  for a in "${addrs[@]}"; do
    until redis-cli -h "${a%:*}" -p "${a#*:}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; do
      if ((SECONDS > deadline)); then echo "bench.sh: the cluster is not ok" >&2; exit 1; fi
      sleep 0.05
    done
  done
  sleep 2 # the replicas' first acknowledgements (the server WAITs for one)
  store_url="redis-cluster://$(IFS=,; echo "${addrs[*]}")"
  echo "# redis-cli --cluster create (3 primaries + 3 replicas, each --appendonly yes --appendfsync always" \
    "--save \"\" --cluster-node-timeout 5000; fresh, for $1); --store $store_url" >&2
}

start_server() { # $1: name, then extra serve flags; sets port, data, server_pid
  local name=$1; shift
  if [[ "$STORE" == redis ]]; then start_redis "$name"; fi
  if [[ "$STORE" == redis-cluster ]]; then start_redis_cluster "$name"; fi
  port=$(free_port)
  data=$work/data-$name
  rm -rf "$data"
  pprof_flags=()
  if [[ -n "${BENCH_PROFILE:-}" ]]; then
    mkdir -p "$BENCH_PROFILE"
    pprof_port=$(free_port)
    pprof_flags=(--pprof-addr "127.0.0.1:$pprof_port")
  fi
  "$CAIRN" serve --data "$data" --addr "127.0.0.1:$port" --claim-rate 0 "${pprof_flags[@]}" "$@" \
    --store "$store_url" --redis-mode "$REDIS_MODE" --log-level warn >"$work/server-$name.log" 2>&1 &
  server_pid=$!
  local deadline=$((SECONDS + 30))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" == 200 ]]; do
    if ((SECONDS > deadline)) || ! kill -0 "$server_pid" 2>/dev/null; then
      echo "bench.sh: server did not become ready; log:" >&2; cat "$work/server-$name.log" >&2; exit 1
    fi
    sleep 0.1
  done
}

stop_server() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  local p
  for p in $redis_pid; do kill -9 "$p"; wait "$p" 2>/dev/null || true; done
  redis_pid=""
}

metrics_summary() { # batch size, commit latency, staleness and server-side claim p99 from /metrics
  curl -s "http://127.0.0.1:$port/metrics" | python3 -c '
import sys, re
sums, hist = {}, {"staleness": {}, "claim": {}}
for line in sys.stdin:
    if line.startswith("#"): continue
    m = re.match(r"(\w+)(\{[^}]*\})? (\S+)", line)
    if not m: continue
    name, labels, v = m.group(1), m.group(2) or "", float(m.group(3))
    sums[name] = sums.get(name, 0) + v if not name.endswith("_bucket") else sums.get(name, 0)
    which = None
    if name == "cairn_projection_staleness_seconds_bucket":
        which = "staleness"
    elif name == "cairn_request_duration_seconds_bucket" and "operation=\"claim\"" in labels:
        which = "claim"
    if which:
        le = re.search(r"le=\"([^\"]+)\"", labels).group(1)
        hist[which][le] = hist[which].get(le, 0) + v
def ratio(a, b):
    return sums.get(a, 0) / sums[b] if sums.get(b) else float("nan")
def p99_ms(buckets):
    # linear interpolation inside the bucket, as Prometheus histogram_quantile does
    bs = sorted(((float(k), v) for k, v in buckets.items()), key=lambda kv: kv[0])
    total = bs[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in bs:
        if total and n >= 0.99 * total:
            frac = (0.99 * total - prev_n) / (n - prev_n) if n > prev_n else 0
            return 1000 * (prev_le + frac * (le - prev_le)) if le != float("inf") else "> " + str(1000 * prev_le)
        prev_le, prev_n = le, n
    return float("nan")
out = {
  "avg_batch_size": ratio("cairn_batch_size_sum", "cairn_batch_size_count"),
  "avg_commit_ms": 1000 * ratio("cairn_commit_duration_seconds_sum", "cairn_commit_duration_seconds_count"),
  "batches": sums.get("cairn_batch_size_count", 0),
}
if hist["staleness"]:
    out["staleness_p99_ms"] = p99_ms(hist["staleness"])
    out["staleness_samples"] = max(hist["staleness"].values())
if hist["claim"]:
    out["server_claim_p99_ms"] = p99_ms(hist["claim"])
import json; print(json.dumps(out))
'
}

run_load() { # $@: cairn load flags
  echo "# cairn load --target http://127.0.0.1:$port $* --json" >&2
  "$CAIRN" load --target "http://127.0.0.1:$port" --data "$data" "$@" --json
}

# ceiling_setup: on the running server, hunt "ceiling" (claim radius 1 km, no
# speed check, always open) with CEILING_HOTSPOTS hotspots spread uniformly over
# lat [36, 60] x lon [-10, 30], the box of the `uniform` scenario, so they land
# in every partition: partitions follow the geohash's first 4 characters
# (cells of ~20 x 40 km), so a single city would fill only a handful of them.
# 1,000,000 tickets each (nothing sells out); points 1..20. Writes
# $work/ceiling-hotspots.txt ("id lat lon", the lat/lon exactly as imported)
# and $work/ceiling-tokens.txt: CEILING_PLAYERS HS256 tokens (sub p00000...,
# iat, exp in 24 h) minted here with the server's secret rather than one
# `cairn token` process per player.
ceiling_setup() {
  CEILING_HOTSPOTS=${CEILING_HOTSPOTS:-10000} CEILING_PLAYERS=${CEILING_PLAYERS:-20000} \
  python3 - "$data" "$port" "$work" <<'PY'
import base64, hashlib, hmac, json, os, random, sys, time, urllib.request
data, port, work = sys.argv[1:4]
n_spots, n_players = int(os.environ["CEILING_HOTSPOTS"]), int(os.environ["CEILING_PLAYERS"])
base = "http://127.0.0.1:%s" % port
# The server's own rule: the environment wins over <data>/secrets.env.
env = {}
for line in open(os.path.join(data, "secrets.env")):
    k, _, v = line.strip().partition("=")
    env[k] = v
secret = (os.environ.get("CAIRN_SECRET") or env["CAIRN_SECRET"]).encode()
admin = os.environ.get("CAIRN_ADMIN_TOKEN") or env["CAIRN_ADMIN_TOKEN"]

def call(method, path, body, ctype):
    req = urllib.request.Request(base + path, data=body, method=method,
                                 headers={"Authorization": "Bearer " + admin, "Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read()

call("PUT", "/v1/admin/hunts/ceiling",
     json.dumps({"name": "ceiling", "claim_radius_m": 1000, "max_speed_mps": 0}).encode(), "application/json")
rng = random.Random(20261)
rows, lines = [], []
for i in range(n_spots):
    lat, lon = "%.6f" % rng.uniform(36, 60), "%.6f" % rng.uniform(-10, 30)
    rows.append('{"id":"c%d","lat":%s,"lon":%s,"tickets":1000000,"reward":1,"points":%d}\n'
                % (i, lat, lon, rng.randint(1, 20)))
    lines.append("c%d %s %s\n" % (i, lat, lon))
status, out = call("POST", "/v1/admin/hunts/ceiling/hotspots", "".join(rows).encode(), "application/x-ndjson")
imported = json.loads(out).get("imported")
if imported != n_spots:
    sys.exit("ceiling: imported %r of %d hotspots: %s" % (imported, n_spots, out[:300]))
open(os.path.join(work, "ceiling-hotspots.txt"), "w").write("".join(lines))

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")
head = b64(b'{"alg":"HS256","typ":"JWT"}')
now = int(time.time())
with open(os.path.join(work, "ceiling-tokens.txt"), "w") as f:
    for i in range(n_players):
        claims = b64(json.dumps({"sub": "p%05d" % i, "iat": now, "exp": now + 86400}, separators=(",", ":")).encode())
        signing = head + b"." + claims
        f.write((signing + b"." + b64(hmac.new(secret, signing, hashlib.sha256).digest())).decode() + "\n")
print("# ceiling: hunt ceiling, %d hotspots imported, %d player tokens" % (n_spots, n_players), file=sys.stderr)
PY
}

# ceiling_summary FILE...: healthz and claims rate and p99 from the two wrk
# outputs, their ratio, and from the /metrics scrapes taken just before and
# just after the claim run (so only the claims count): average events per
# partition batch (cairn_batch_size), per synced group commit
# (cairn_commit_group_size, when the binary has it) and the average commit
# latency, and the CPU per answer of the server and of wrk in each run.
# Exits 1 if the claim run had errors.
ceiling_summary() {
  python3 - "$@" <<'PY'
import json, re, sys
healthz, claims, m0, m1 = (open(f).read() for f in sys.argv[1:5])
def wrk(text):
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    return rate, p99
def metrics(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"(\w+)(\{[^}]*\})? (\S+)$", line)
        if m and not line.startswith("#") and not m.group(1).endswith("_bucket"):
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(3))
    return out
a, b = metrics(m0), metrics(m1)
def delta(n):
    return b.get(n, 0) - a.get(n, 0)
def avg(name, scale=1):
    c = delta(name + "_count")
    return round(scale * delta(name + "_sum") / c, 2) if c > 0 else None
h_rate, h_p99 = wrk(healthz)
c_rate, c_p99 = wrk(claims)
out = {
    "healthz_per_s": round(h_rate), "healthz_p99_ms": round(h_p99, 2),
    "claims_per_s": round(c_rate), "claims_p99_ms": round(c_p99, 2),
    "ratio": round(c_rate / h_rate, 3),
    "avg_batch_size": avg("cairn_batch_size"), "batches": int(delta("cairn_batch_size_count")),
    "avg_commit_ms": avg("cairn_commit_duration_seconds", 1000),
}
if "cairn_commit_group_size_count" in b:
    out["avg_commit_group_size"] = avg("cairn_commit_group_size")
    out["commit_groups"] = int(delta("cairn_commit_group_size_count"))
if "cairn_commit_group_batches_count" in b:
    out["avg_commit_group_batches"] = avg("cairn_commit_group_batches")
# CPU per answer (µs): the server's (utime + stime from /proc/PID/stat over
# each wrk run) and wrk's own (its user + system time from /usr/bin/time).
def answers(text):
    return int(re.search(r"(\d+) requests in", text).group(1))
def cpu_us(text, n):
    out = {}
    m = re.search(r"cpu ticks: server (\d+) .*clk_tck (\d+)", text)
    if m and n:
        out["server"] = round(1e6 * int(m.group(1)) / int(m.group(2)) / n, 1)
    m = re.search(r"wrk cpu: ([\d.]+) ([\d.]+)", text)
    if m and n:
        out["wrk"] = round(1e6 * (float(m.group(1)) + float(m.group(2))) / n, 1)
    return out
for name, text in (("healthz", healthz), ("claim", claims)):
    for k, v in cpu_us(text, answers(text)).items():
        out["%s_cpu_us_per_%s" % (k, name)] = v
m = re.search(r"ceiling answers: (\d+), errors: (\d+)", claims)
out["claim_answers"], out["claim_errors"] = (int(m.group(1)), int(m.group(2))) if m else (None, None)
out["status"] = {k: int(v) for k, v in re.findall(r"^status (\d+): (\d+)$", claims, re.M)}
print(json.dumps(out))
print("ceiling: healthz %(healthz_per_s)d/s p99 %(healthz_p99_ms)s ms; claims %(claims_per_s)d/s p99 %(claims_p99_ms)s ms; "
      "ratio %(ratio)s; avg batch %(avg_batch_size)s, avg commit %(avg_commit_ms)s ms" % out
      + "".join("; %s %s us" % (k, out[k]) for k in ("server_cpu_us_per_healthz", "server_cpu_us_per_claim",
                                                       "wrk_cpu_us_per_healthz", "wrk_cpu_us_per_claim") if k in out)
      + ("; avg commit group %s events" % out["avg_commit_group_size"] if "avg_commit_group_size" in out else ""))
if out["claim_errors"] != 0:
    sys.exit("ceiling: the claim run had %s errors (status not 2xx/409, or socket errors)" % out["claim_errors"])
PY
}

# run_ceiling: the `ceiling` word, on a server started without --demo.
# start_consoles: BENCH_CONSOLES ops consoles (headless Chromium, scripts/consoles)
# signed in and showing the ceiling hunt, until stop_consoles.
start_consoles() {
  if [[ ${BENCH_CONSOLES_MODE:-browser} == http ]]; then start_console_polls; return; fi
  (cd "$here" && go build -o "$work/consoles" ./scripts/consoles) || return 1
  "$work/consoles" --url "http://127.0.0.1:$port/ops/" --data "$data" --hunt ceiling \
    --n "$BENCH_CONSOLES" --for 600s >"$work/consoles.log" 2>&1 &
  consoles_pid=$!
  local deadline=$((SECONDS + 120))
  until grep -q "open on hunt" "$work/consoles.log"; do
    if ((SECONDS > deadline)) || ! kill -0 "$consoles_pid" 2>/dev/null; then
      echo "bench.sh: the consoles did not open; log:" >&2; cat "$work/consoles.log" >&2; return 1
    fi
    sleep 0.2
  done
  sleep 5 # the consoles' first map (the hunt's index) and polls under way
  renice_consoles
  echo "# $BENCH_CONSOLES ops consoles open on hunt ceiling (scripts/consoles)," \
    "browsers at nice ${BENCH_CONSOLES_NICE:-19}" >&2
}

# start_console_polls: BENCH_CONSOLES_MODE=http sends what BENCH_CONSOLES
# open consoles ask the server (the page's polls, at its cadence) with curl,
# without browsers: the server's side of the consoles alone.
start_console_polls() {
  local admin api="http://127.0.0.1:$port/ops/api"
  admin=${CAIRN_ADMIN_TOKEN:-$(sed -n 's/^CAIRN_ADMIN_TOKEN=//p' "$data/secrets.env")}
  (
    trap 'exit 0' TERM
    declare -A cursor
    tick=0
    while :; do
      for ((c = 0; c < BENCH_CONSOLES; c++)); do
        cursor[$c]=$(curl -s -H "Authorization: Bearer $admin" "$api/hunts/ceiling/claims?after=${cursor[$c]:-0}" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["cursor"])' 2>/dev/null || echo 0)
        if ((tick % 4 == 0)); then
          for q in stats?seconds=300 hunts/ceiling/leaderboard?limit=10 consistency; do
            curl -s -o /dev/null -H "Authorization: Bearer $admin" "$api/$q"
          done
        fi
        if ((tick % 6 == 0)); then
          curl -s -o /dev/null -H "Authorization: Bearer $admin" \
            "$api/hunts/ceiling/map?bbox=34,-20,62,40&width_px=1100&height_px=520"
        fi
      done
      tick=$((tick + 1))
      sleep 0.5
    done
  ) &
  consoles_pid=$!
  sleep 5
  echo "# $BENCH_CONSOLES consoles' polls (curl, no browser) on hunt ceiling" >&2
}

# renice_consoles: the consoles' browsers yield the CPU to the server (they
# stand in for operators' own machines); Chromium sets its processes'
# niceness itself, so they are reniced once they run. BENCH_CONSOLES_NICE=0
# leaves them as Chromium set them.
renice_consoles() {
  local pid tids=()
  [[ ${BENCH_CONSOLES_NICE:-19} == 0 ]] && return 0
  # Niceness is per thread on Linux: renice every thread of every browser process.
  for pid in $(pgrep -f cairn-console-chromium- || true); do
    tids+=($(ls "/proc/$pid/task" 2>/dev/null || true))
  done
  if ((${#tids[@]})); then renice -n "${BENCH_CONSOLES_NICE:-19}" -p "${tids[@]}" >/dev/null 2>&1 || true; fi
}

stop_consoles() {
  if [[ -n "$consoles_pid" ]]; then kill "$consoles_pid"; wait "$consoles_pid" 2>/dev/null || true; consoles_pid=""; fi
}

# timed FILE CMD...: runs CMD, writing its user and system CPU seconds to
# FILE as "wrk cpu: U S" (FILE stays empty without /usr/bin/time).
timed() {
  local f=$1; shift
  if [[ -x /usr/bin/time ]]; then /usr/bin/time -f "wrk cpu: %U %S" -o "$f" "$@"; else : >"$f"; "$@"; fi
}

run_ceiling() {
  local base="http://127.0.0.1:$port" d=${CEILING_DURATION:-10s} rc=0
  ceiling_setup || return 1
  if [[ ${BENCH_CONSOLES:-0} -gt 0 ]]; then start_consoles || return 1; fi
  echo "# wrk -t1 -c64 -d$d --latency $base/healthz" >&2
  local server_h0
  server_h0=$(cpu_ticks "$server_pid")
  timed "$work/ceiling-healthz-time.txt" wrk -t1 -c64 -d"$d" --latency "$base/healthz" >"$work/ceiling-healthz.txt" || return 1
  echo "cpu ticks: server $(( $(cpu_ticks "$server_pid") - server_h0 )) clk_tck $(getconf CLK_TCK)" >>"$work/ceiling-healthz.txt"
  cat "$work/ceiling-healthz-time.txt" >>"$work/ceiling-healthz.txt"
  cat "$work/ceiling-healthz.txt"
  curl -sf "$base/metrics" >"$work/ceiling-metrics-0.txt" || return 1
  if [[ -n "$consoles_pid" ]]; then renice_consoles; fi
  echo "# TOKENS=ceiling-tokens.txt HOTSPOTS=ceiling-hotspots.txt wrk -t1 -c64 -d$d --latency -s scripts/ceiling.lua $base/" >&2
  HUNT=ceiling TOKENS=$work/ceiling-tokens.txt HOTSPOTS=$work/ceiling-hotspots.txt \
    timed "$work/ceiling-claims-time.txt" wrk -t1 -c64 -d"$d" --latency -s "$here/scripts/ceiling.lua" "$base/" >"$work/ceiling-claims.txt" &
  local wrk_pid=$! redis_t0="" server_t0
  if [[ "$STORE" == redis ]]; then redis_stats >"$work/ceiling-redis-0.txt"; fi
  server_t0=$(cpu_ticks "$server_pid")
  if [[ -n "$redis_pid" ]]; then redis_t0=$(cpu_ticks $redis_pid); fi
  if [[ -n "${BENCH_PROFILE:-}" ]]; then
    sleep 2 # into the run, past wrk's connection set-up
    curl -sf "http://127.0.0.1:$pprof_port/debug/pprof/profile?seconds=4" >"$BENCH_PROFILE/cpu-ceiling.pprof" ||
      echo "bench.sh: CPU profile failed" >&2
    echo "# CPU profile of the claim run: $BENCH_PROFILE/cpu-ceiling.pprof" >&2
  fi
  wait "$wrk_pid" || return 1
  stop_consoles
  # CPU per claim of the server and of Redis: robust to a busy machine, where rates are not.
  echo "cpu ticks: server $(( $(cpu_ticks "$server_pid") - server_t0 ))" \
    "redis $([[ -n "$redis_t0" ]] && echo $(( $(cpu_ticks $redis_pid) - redis_t0 )) || echo -)" \
    "clk_tck $(getconf CLK_TCK)" >>"$work/ceiling-claims.txt"
  cat "$work/ceiling-claims-time.txt" >>"$work/ceiling-claims.txt"
  cat "$work/ceiling-claims.txt"
  if [[ "$STORE" == redis ]]; then
    redis_stats >"$work/ceiling-redis-1.txt"
    redis_per_claim "$work/ceiling-claims.txt" "$work/ceiling-redis-0.txt" "$work/ceiling-redis-1.txt"
  fi
  curl -sf "$base/metrics" >"$work/ceiling-metrics-1.txt" || return 1
  ceiling_summary "$work/ceiling-healthz.txt" "$work/ceiling-claims.txt" \
    "$work/ceiling-metrics-0.txt" "$work/ceiling-metrics-1.txt" || rc=1
  echo "# $CAIRN verify --target $base --data DATA" >&2
  if ! "$CAIRN" verify --target "$base" --data "$data"; then
    echo "bench.sh: ceiling FAILED: cairn verify reported a violation (or could not check)" >&2
    rc=1
  fi
  # After verify: its calls credit players whose keys are not Cairn's.
  if [[ "$STORE" == redis ]]; then run_function_ceiling || rc=1; fi
  return "$rc"
}

# run_floor: the `floor` word. The ceiling's hotspots and tokens are made on
# a Cairn server, which is then stopped; scripts/floor (a bare net/http
# server, see its doc comment) answers the same wrk runs as `ceiling` at each
# depth of FLOOR_DEPTHS: `http` (net/http alone), `http+wal` (and each
# claim appended to a group-committed, fdatasynced plain file),
# `http+pebble:N` (or N synced Pebble keys per claim), `auth` (and the token
# check and JSON body), `auth+wal`, `auth+pebble:N`. Its claims per second
# bound what a server doing that much of a claim's work reaches on this
# machine; compare them with Cairn's /healthz rate from `ceiling` (the
# floor's own /healthz is cheaper than Cairn's).
run_floor() {
  local d=${CEILING_DURATION:-10s} rc=0 depth fport secret auth store keys t0 deadline
  ceiling_setup || return 1
  secret=${CAIRN_SECRET:-$(sed -n 's/^CAIRN_SECRET=//p' "$data/secrets.env")}
  stop_server
  (cd "$here" && go build -o "$work/floor" ./scripts/floor) || return 1
  for depth in ${FLOOR_DEPTHS:-http http+wal http+pebble:1 auth auth+wal auth+pebble:1 auth+pebble:3}; do
    keys=1
    case $depth in
      http | auth) store=none ;;
      http+wal | auth+wal) store=wal ;;
      http+pebble:[1-8] | auth+pebble:[1-8]) store=pebble keys=${depth##*:} ;;
      *) echo "bench.sh: unknown floor depth $depth (http, auth, each alone or +wal or +pebble:N, N 1..8)" >&2; return 1 ;;
    esac
    auth=false
    [[ $depth == auth* ]] && auth=true
    fport=$(free_port)
    rm -rf "$work/floor-data"
    CAIRN_SECRET=$secret "$work/floor" --addr "127.0.0.1:$fport" --dir "$work/floor-data" \
      --auth="$auth" --store "$store" --keys "$keys" >"$work/floor.log" 2>&1 &
    floor_pid=$!
    deadline=$((SECONDS + 30))
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$fport/healthz")" == 200 ]]; do
      if ((SECONDS > deadline)) || ! kill -0 "$floor_pid" 2>/dev/null; then
        echo "bench.sh: floor did not start; log:" >&2; cat "$work/floor.log" >&2; return 1 # cleanup stops it
      fi
      sleep 0.1
    done
    echo "# floor $depth: wrk -t1 -c64 -d$d on /healthz, then scripts/ceiling.lua" >&2
    t0=$(cpu_ticks "$floor_pid")
    timed "$work/floor-healthz-time.txt" wrk -t1 -c64 -d"$d" --latency "http://127.0.0.1:$fport/healthz" >"$work/floor-healthz.txt" || rc=1
    echo "cpu ticks: server $(( $(cpu_ticks "$floor_pid") - t0 )) clk_tck $(getconf CLK_TCK)" >>"$work/floor-healthz.txt"
    cat "$work/floor-healthz-time.txt" >>"$work/floor-healthz.txt"
    t0=$(cpu_ticks "$floor_pid")
    HUNT=ceiling TOKENS=$work/ceiling-tokens.txt HOTSPOTS=$work/ceiling-hotspots.txt \
      timed "$work/floor-claims-time.txt" wrk -t1 -c64 -d"$d" --latency -s "$here/scripts/ceiling.lua" \
      "http://127.0.0.1:$fport/" >"$work/floor-claims.txt" || rc=1
    echo "cpu ticks: server $(( $(cpu_ticks "$floor_pid") - t0 )) clk_tck $(getconf CLK_TCK)" >>"$work/floor-claims.txt"
    cat "$work/floor-claims-time.txt" >>"$work/floor-claims.txt"
    : >"$work/floor-metrics.txt" # the floor has no /metrics: no batch or commit figures
    ceiling_summary "$work/floor-healthz.txt" "$work/floor-claims.txt" "$work/floor-metrics.txt" "$work/floor-metrics.txt" |
      sed -e "s/^ceiling:/floor $depth:/" -e 's/; avg batch None, avg commit None ms//' || rc=1
    kill "$floor_pid"; wait "$floor_pid" 2>/dev/null || true
    floor_pid=""
  done
  return "$rc"
}

# redis_stats: INFO commandstats and INFO stats of the Redis of this run.
redis_stats() { redis-cli -p "$redis_port" info commandstats; redis-cli -p "$redis_port" info stats; }

# redis_per_claim CLAIMS BEFORE AFTER: what Redis did per claim answered
# during the claim run (wrk's count; the snapshots bracket the run, so the
# few calls of the scrape itself count too): calls of each command (FCALL is
# the decision; XREAD the log tailer's rounds; XREADGROUP the idle stream
# readers' BLOCK timeouts), reads of a client socket (total_reads_processed:
# how many event-loop reads the claims cost, so how well they are batched)
# and the CPU microseconds Redis spent inside commands (usec in commandstats).
redis_per_claim() {
  python3 - "$@" <<'PY'
import json, re, sys
claims, a, b = (open(f).read() for f in sys.argv[1:4])
n = int(re.search(r"ceiling answers: (\d+)", claims).group(1))
def parse(t):
    cmds = {m.group(1).upper(): (int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"cmdstat_([\w|]+):calls=(\d+),usec=(\d+)", t)}
    reads = int(re.search(r"total_reads_processed:(\d+)", t).group(1))
    return cmds, reads
(ca, ra), (cb, rb) = parse(a), parse(b)
per = {k: round((cb[k][0] - ca.get(k, (0, 0))[0]) / n, 3) for k in cb if cb[k][0] > ca.get(k, (0, 0))[0]}
usec = sum(v[1] for v in cb.values()) - sum(v[1] for v in ca.values())
print("redis per claim: " + json.dumps({"calls": dict(sorted(per.items(), key=lambda kv: -kv[1])),
      "socket_reads": round((rb - ra) / n, 3), "command_us": round(usec / n, 1)}))
PY
}

# run_function_ceiling: the same claim Function, called directly by
# redis-benchmark (64 connections, one call in flight on each, as wrk's 64
# connections to Cairn) on the Redis of this run, right after the claim run:
# fresh players (random ids) at hotspot c0 of the ceiling hunt, granted
# every time, so each call is the whole grant (tickets, claimers, position,
# log append, wallet, ledger, idempotency record) fsynced like Cairn's. Prints
# the Function's rate and p99 and Cairn's share of it.
run_function_ceiling() {
  local p lat lon now_s now_ns n=${FUNCTION_CALLS:-100000}
  p=$(redis-cli -p "$redis_port" hget cairn:hsidx:ceiling c0)
  read -r _ lat lon < <(head -1 "$work/ceiling-hotspots.txt")
  now_s=$(date +%s); now_ns=0
  local t="cairn:{p$p}:" u="cairn:{u:d__rand_int__}:"
  echo "# redis-benchmark -p PORT -c 64 -n $n -r 100000000 FCALL cairn_claim 10 <keys of c0 and a random player> <args>" >&2
  local redis_t0
  redis_stats >"$work/function-redis-0.txt"
  redis_t0=$(cpu_ticks "$redis_pid")
  redis-benchmark -p "$redis_port" -c 64 -n "$n" -r 100000000 --precision 2 \
    FCALL cairn_claim 10 cairn:hunt:ceiling "${t}hs:ceiling:c0" "${t}cl:ceiling:c0" "${t}seq" "${t}log" \
    "${u}idem" "${u}w" "${u}led" "${u}pos" "${t}req" \
    d__rand_int__ k__rand_int__ 1 ceiling c0 "$lat" "$lon" "$(printf '%020d' $((now_s * 1000000000)))" "$now_s" "$now_ns" \
    "$((now_s * 1000))" "$p" "" ClaimProcessor "" bench.1 >"$work/function-ceiling.txt" 2>&1 || return 1
  echo "cpu ticks: redis $(( $(cpu_ticks "$redis_pid") - redis_t0 )) calls $n" >>"$work/function-ceiling.txt"
  redis_stats >"$work/function-redis-1.txt"
  echo "ceiling answers: $n" >"$work/function-n.txt"
  redis_per_claim "$work/function-n.txt" "$work/function-redis-0.txt" "$work/function-redis-1.txt" | sed 's/per claim/per direct call/'
  python3 - "$work/ceiling-claims.txt" "$work/function-ceiling.txt" <<'PY'
import json, re, sys
claims, fn = (open(f).read() for f in sys.argv[1:3])
c_rate = float(re.search(r"Requests/sec:\s+([\d.]+)", claims).group(1))
m = re.search(r"throughput summary: ([\d.]+) requests per second", fn)
if not m:
    sys.exit("function ceiling: no summary in redis-benchmark output: " + fn[-500:])
f_rate = float(m.group(1))
lat = re.search(r"latency summary \(msec\):\s*\n\s*avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", fn)
out = {"function_per_s": round(f_rate), "function_p99_ms": float(lat.group(5)) if lat else None,
       "claims_per_s": round(c_rate), "share_of_function": round(c_rate / f_rate, 3)}
# Redis CPU per call: the direct calls against Cairn's claims (answers counted by wrk).
tck = re.search(r"cpu ticks: server (\d+) redis (\d+) clk_tck (\d+)", claims)
ftck = re.search(r"cpu ticks: redis (\d+) calls (\d+)", fn)
n_claims = re.search(r"ceiling answers: (\d+)", claims)
if tck and ftck and n_claims:
    hz = int(tck.group(3))
    out["redis_cpu_us_per_claim"] = round(1e6 * int(tck.group(2)) / hz / int(n_claims.group(1)), 1)
    out["server_cpu_us_per_claim"] = round(1e6 * int(tck.group(1)) / hz / int(n_claims.group(1)), 1)
    out["redis_cpu_us_per_function_call"] = round(1e6 * int(ftck.group(1)) / hz / int(ftck.group(2)), 1)
print(json.dumps(out))
print("function ceiling: %(function_per_s)d calls/s p99 %(function_p99_ms)s ms; Cairn's claims are %(share_of_function)s of it" % out)
PY
}

cpu_ticks() { # utime + stime of the PIDs given, summed, in clock ticks
  local p files=()
  for p in "$@"; do files+=("/proc/$p/stat"); done
  awk '{s += $14 + $15} END {print s}' "${files[@]}"
}

run_one() {
  local word=$1 kind rest a b
  kind=${word%%:*}; rest=${word#*:}
  [[ "$rest" == "$word" ]] && rest=""
  a=${rest%%:*}; b=${rest#*:}
  if [[ "$kind" == ceiling ]]; then
    start_server "$kind"
    local rc=0
    run_ceiling || rc=$?
    stop_server
    return "$rc"
  fi
  if [[ "$kind" == floor ]]; then
    start_server "$kind"
    local rc=0
    run_floor || rc=$?
    return "$rc"
  fi
  start_server "$kind" --demo
  case "$kind" in
    uniform)      run_load --scenario uniform --rate "${a:-10000}" --duration "${b:-30s}" ;;
    uniform-ramp) run_load --scenario uniform --rate 2000:30000 --duration 30s ;;
    replay)       run_load --scenario replay --rate "${a:-2000}" --duration "${b:-30s}" ;;
    hunt)         run_load --scenario hunt --rate "${a:-2000}" --duration "${b:-30s}" ;;
    storm)        run_load --scenario storm --concurrency "${a:-200}" --rounds "${b:-5}" ;;
    wrk)
      local token
      token=$(CAIRN_SECRET= "$CAIRN" token --data "$data" --player wrk-bench)
      echo "# TOKEN=... wrk -t1 -c64 -d20s --latency -s scripts/claim.lua http://127.0.0.1:$port/" >&2
      TOKEN=$token wrk -t1 -c64 -d20s --latency -s "$here/scripts/claim.lua" "http://127.0.0.1:$port/" ;;
    *) echo "bench.sh: unknown scenario $word" >&2; stop_server; return 1 ;;
  esac || echo "bench.sh: $word FAILED (exit $?): a violated invariant fails the run" >&2
  echo "# /metrics after $word:" >&2
  metrics_summary
  if [[ -n "${BENCH_PROFILE:-}" ]]; then
    curl -sf "http://127.0.0.1:$pprof_port/debug/pprof/heap?gc=1" >/dev/null
    curl -sf "http://127.0.0.1:$pprof_port/debug/pprof/heap?gc=1" >"$BENCH_PROFILE/heap-$word.pprof"
    echo "# live heap after $word (two forced collections): $(curl -s "http://127.0.0.1:$port/metrics" |
      awk '/^go_memstats_heap_alloc_bytes /{printf "%.1f MB", $2/1e6}'); profile $BENCH_PROFILE/heap-$word.pprof" >&2
  fi
  stop_server
}

if (($# == 0)); then
  set -- uniform:5000:30s uniform:10000:30s uniform:20000:30s hunt:2000:30s storm:200:5 storm:10000:3
fi
if [[ -n "${BENCH_TRACE_RATIO:-}" ]]; then
  sink_port=$(free_port)
  python3 "$here/scripts/otlp-sink.py" "$sink_port" &
  sink_pid=$!
  export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port
  export OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=$BENCH_TRACE_RATIO
  echo "# tracing on: OTEL_EXPORTER_OTLP_ENDPOINT=$OTEL_EXPORTER_OTLP_ENDPOINT OTEL_TRACES_SAMPLER=$OTEL_TRACES_SAMPLER OTEL_TRACES_SAMPLER_ARG=$OTEL_TRACES_SAMPLER_ARG" >&2
fi
for w in "$@"; do run_one "$w"; done
