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
#
# Scenario words: uniform:RATE:DURATION, uniform-ramp, hunt:RATE:DURATION,
# storm:CONCURRENCY:ROUNDS, replay:RATE:DURATION, wrk (closed-loop ceiling with
# scripts/claim.lua, needs /usr/bin/wrk).
# Env: CAIRN (binary; default: built into the temp dir), BENCH_TIMEOUT
# (default 1800 s), GOGC (passed to the server), STORE (default embedded; a
# redis:// URL runs the same scenarios on the Redis engine), REDIS_MODE.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/cairn-bench.XXXXXX)
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
STORE=${STORE:-embedded}
REDIS_MODE=${REDIS_MODE:-direct}
server_pid=""

cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  fi
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

start_server() { # $1: name; sets port, data, server_pid
  port=$(free_port)
  data=$work/data-$1
  rm -rf "$data"
  "$CAIRN" serve --data "$data" --addr "127.0.0.1:$port" --claim-rate 0 --demo \
    --store "$STORE" --redis-mode "$REDIS_MODE" --log-level warn >"$work/server-$1.log" 2>&1 &
  server_pid=$!
  local deadline=$((SECONDS + 30))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" == 200 ]]; do
    if ((SECONDS > deadline)) || ! kill -0 "$server_pid" 2>/dev/null; then
      echo "bench.sh: server did not become ready; log:" >&2; cat "$work/server-$1.log" >&2; exit 1
    fi
    sleep 0.1
  done
}

stop_server() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

metrics_summary() { # batch size, commit latency, staleness p99 from /metrics
  curl -s "http://127.0.0.1:$port/metrics" | python3 -c '
import sys, re
sums, buckets = {}, {}
for line in sys.stdin:
    if line.startswith("#"): continue
    m = re.match(r"(\w+)(\{[^}]*\})? (\S+)", line)
    if not m: continue
    name, labels, v = m.group(1), m.group(2) or "", float(m.group(3))
    sums[name] = sums.get(name, 0) + v if not name.endswith("_bucket") else sums.get(name, 0)
    if name == "cairn_projection_staleness_seconds_bucket":
        le = re.search(r"le=\"([^\"]+)\"", labels).group(1)
        buckets[le] = buckets.get(le, 0) + v
def ratio(a, b):
    return sums.get(a, 0) / sums[b] if sums.get(b) else float("nan")
out = {
  "avg_batch_size": ratio("cairn_batch_size_sum", "cairn_batch_size_count"),
  "avg_commit_ms": 1000 * ratio("cairn_commit_duration_seconds_sum", "cairn_commit_duration_seconds_count"),
  "batches": sums.get("cairn_batch_size_count", 0),
}
if buckets:
    bs = sorted(((float(k), v) for k, v in buckets.items()), key=lambda kv: kv[0])
    total = bs[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in bs:
        if total and n >= 0.99 * total:
            # linear interpolation inside the bucket, as Prometheus histogram_quantile does
            frac = (0.99 * total - prev_n) / (n - prev_n) if n > prev_n else 0
            out["staleness_p99_ms"] = 1000 * (prev_le + frac * (le - prev_le)) if le != float("inf") else "> " + str(1000 * prev_le)
            break
        prev_le, prev_n = le, n
    out["staleness_samples"] = total
import json; print(json.dumps(out))
'
}

run_load() { # $@: cairn load flags
  echo "# cairn load --target http://127.0.0.1:$port $* --json" >&2
  "$CAIRN" load --target "http://127.0.0.1:$port" --data "$data" "$@" --json
}

run_one() {
  local word=$1 kind rest a b
  kind=${word%%:*}; rest=${word#*:}
  [[ "$rest" == "$word" ]] && rest=""
  a=${rest%%:*}; b=${rest#*:}
  start_server "$kind"
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
  stop_server
}

if (($# == 0)); then
  set -- uniform:5000:30s uniform:10000:30s uniform:20000:30s hunt:2000:30s storm:200:5 storm:10000:3
fi
for w in "$@"; do run_one "$w"; done
