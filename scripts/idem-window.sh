#!/usr/bin/env bash
# idem-window.sh: does the server's memory stay flat when idempotency keys expire?
#
# Starts a fresh `cairn serve` (embedded store, temp data dir, a free 127.0.0.1
# port, --claim-rate 0, --idempotency-window WINDOW, --pprof-addr), runs
# `cairn load` for DURATION at RATE requests/s (the hunt scenario: 70 % claims,
# each with a fresh Idempotency-Key, plus retries, reads and spends; PLAYERS
# players, so at most PLAYERS/20+1 tickets per hotspot and the state that
# grants add stops growing once the hotspots sell out, while every claim
# still leaves an idempotency record; the load ends with the server's
# invariant audit, as every load run does), and samples the server every
# INTERVAL: VmRSS from /proc/PID/status and the live heap (HeapAlloc right
# after the collection that /debug/pprof/heap?gc=1 forces). Prints one line
# per sample, then a summary: first/min/max/last of both, and the change
# from t = 2 windows to the end.
#
#   scripts/idem-window.sh                         # 10m at 1000/s, window 1m, a sample every 10 s
#   RATE=500 DURATION=3m WINDOW=30s scripts/idem-window.sh
#
# The hunt scenario retries one of its last 1,024 claims now and then: keep
# WINDOW longer than those take to send (about 1.5 s at 1000/s), or a retry
# past the window is decided afresh and `cairn load`, which does not know the
# window, reports it as answered twice differently.
#
# Env: CAIRN (binary; default: built into the temp dir), RATE, DURATION,
# WINDOW, INTERVAL (seconds), SCENARIO (default hunt), PLAYERS (default 2000).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/cairn-idem.XXXXXX)
RATE=${RATE:-1000}
DURATION=${DURATION:-10m}
WINDOW=${WINDOW:-1m}
INTERVAL=${INTERVAL:-10}
SCENARIO=${SCENARIO:-hunt}
PLAYERS=${PLAYERS:-2000}
server_pid=""
load_pid=""

cleanup() {
  [[ -n "$load_pid" ]] && kill "$load_pid" 2>/dev/null || true
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

if [[ -z "${CAIRN:-}" ]]; then
  CAIRN=$work/cairn
  (cd "$here" && go build -o "$CAIRN" ./cmd/cairn)
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
port=$(free_port)
pprof_port=$(free_port)
data=$work/data
"$CAIRN" serve --data "$data" --addr "127.0.0.1:$port" --claim-rate 0 --idempotency-window "$WINDOW" \
  --pprof-addr "127.0.0.1:$pprof_port" \
  --log-level warn >"$work/server.log" 2>&1 &
server_pid=$!
deadline=$((SECONDS + 30))
until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" == 200 ]]; do
  if ((SECONDS > deadline)) || ! kill -0 "$server_pid" 2>/dev/null; then
    echo "idem-window.sh: server did not become ready; log:" >&2; cat "$work/server.log" >&2; exit 1
  fi
  sleep 0.2
done

CAIRN_DATA=$data "$CAIRN" load --target "http://127.0.0.1:$port" --scenario "$SCENARIO" --rate "$RATE" \
  --players "$PLAYERS" --duration "$DURATION" --json >"$work/load.json" 2>"$work/load.err" &
load_pid=$!

sample() { # prints: elapsed_s rss_kib live_heap_bytes
  local rss heap
  heap=$(curl -s "http://127.0.0.1:$pprof_port/debug/pprof/heap?debug=1&gc=1" | awk '$2 == "HeapAlloc" {print $4}')
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")
  echo "$1 $rss $heap"
}

start=$SECONDS
echo "# t_s rss_MiB live_heap_MiB   (serve --idempotency-window $WINDOW; load --scenario $SCENARIO --rate $RATE --duration $DURATION)"
: >"$work/samples"
while kill -0 "$load_pid" 2>/dev/null; do
  s=$(sample $((SECONDS - start)))
  echo "$s" >>"$work/samples"
  awk '{printf "%5d %8.1f %8.1f\n", $1, $2/1024, $3/1048576}' <<<"$s"
  for _ in $(seq "$((INTERVAL * 5))"); do
    kill -0 "$load_pid" 2>/dev/null || break
    sleep 0.2
  done
done
load_rc=0
wait "$load_pid" || load_rc=$?
load_pid=""

window_s=$(python3 -c "
import re,sys
m=re.fullmatch(r'(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?','$WINDOW')
print(int(m[1] or 0)*3600+int(m[2] or 0)*60+int(m[3] or 0))")
python3 - "$work/samples" "$window_s" <<'PY'
import sys
rows=[tuple(map(int,l.split())) for l in open(sys.argv[1]) if l.strip()]
w=int(sys.argv[2])
def col(i,scale): return [r[i]/scale for r in rows]
for name,i,scale in (("RSS MiB",1,1024),("live heap MiB",2,1048576)):
    v=col(i,scale)
    after=[r[i]/scale for r in rows if r[0]>=2*w]
    grow = f"{after[-1]-after[0]:+.1f} from t={2*w}s to the end" if len(after)>1 else "n/a"
    print(f"{name}: first {v[0]:.1f}, min {min(v):.1f}, max {max(v):.1f}, last {v[-1]:.1f}; {grow} ({len(v)} samples)")
PY
python3 - "$work/load.json" <<'PY'
import json,sys
try:
    r=json.load(open(sys.argv[1]))
except Exception as e:
    print("load: no JSON result:", e); sys.exit(0)
keys=[k for k in ("sent","responses","achieved_rps","errors","outcomes") if k in r]
print("load:", {k:r[k] for k in keys})
v=r.get("verify") or {}
print("audit:", v.get("verdict", v))
PY
if ((load_rc != 0)); then
  echo "idem-window.sh: cairn load exited $load_rc:" >&2; cat "$work/load.err" >&2; exit 1
fi
