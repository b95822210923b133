#!/usr/bin/env bash
# restart.sh: the import, memory and restart figures of docs/BENCHMARKS.md.
#
#   scripts/restart.sh MILLIONS [MORE_SERVE_FLAGS...]
#
# Starts a fresh `cairn serve` (embedded store in a temp dir, a free 127.0.0.1
# port), creates hunt "big", imports MILLIONS × 1,000,000 hotspots from
# scripts/gen-hotspots.py (one NDJSON request per million, timed; and the
# server's CPU seconds for it), prints the RSS after import, stops the server (SIGTERM), starts it again on the same
# data and prints the time until /readyz answers 200 (polled every 20 ms), the
# CPU seconds the server used until then, the store load time it logs, and the
# RSS after the restart. Ends with
# `cairn verify --data` on the stopped store. Env: CAIRN (binary; default:
# built into the temp dir), KEEP=1 keeps the temp dir.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
millions=${1:?usage: scripts/restart.sh MILLIONS [serve flags]}
shift
work=$(mktemp -d /tmp/cairn-restart.XXXXXX)
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
  [[ -n "${KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT
if [[ -z "${CAIRN:-}" ]]; then
  CAIRN=$work/cairn
  (cd "$here" && go build -o "$CAIRN" ./cmd/cairn)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
data=$work/data
base=http://127.0.0.1:$port

start() { # $1: log file
  "$CAIRN" serve --data "$data" --addr "127.0.0.1:$port" --claim-rate 0 --log-level info "$@" >"$1" 2>&1 &
  pid=$!
}
wait_ready() { # prints seconds until /readyz is 200
  python3 - "$base" "$pid" <<'PY'
import sys, time, urllib.request, os
base, pid = sys.argv[1], int(sys.argv[2])
t0 = time.time()
while True:
    try:
        if urllib.request.urlopen(base + "/readyz", timeout=1).status == 200:
            break
    except Exception:
        pass
    os.kill(pid, 0)
    if time.time() - t0 > 600:
        sys.exit("not ready after 600 s")
    time.sleep(0.02)
print("%.2f" % (time.time() - t0))
PY
}
rss_mib() { echo $(( $(ps -o rss= -p "$pid") / 1024 )); }
# CPU seconds (user + system) the server has used: on a shared machine a
# steadier figure than wall time.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$pid/stat"; }

start "$work/serve-1.log" "$@"
wait_ready >/dev/null
admin=$(grep '^CAIRN_ADMIN_TOKEN=' "$data/secrets.env" | cut -d= -f2-)
admin=${CAIRN_ADMIN_TOKEN:-$admin}
curl -sf -X PUT -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  --data '{"name":"big","claim_radius_m":50}' "$base/v1/admin/hunts/big" >/dev/null
total=0
cpu0=$(cpu_s)
for ((k = 0; k < millions; k++)); do
  python3 "$here/scripts/gen-hotspots.py" 1000000 $((k * 1000000)) >"$work/part.ndjson"
  t=$(curl -sf -o "$work/import.json" -w '%{time_total}' -X POST -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/x-ndjson' --data-binary @"$work/part.ndjson" "$base/v1/admin/hunts/big/hotspots")
  echo "# import part $k: ${t} s: $(head -c 200 "$work/import.json")"
  total=$(python3 -c "print($total + $t)")
done
cpu1=$(cpu_s)
echo "hotspots=${millions}000000 import_s=$total import_per_s=$(python3 -c "print(int(${millions}e6 / $total))") server_cpu_s=$(python3 -c "print(round($cpu1 - $cpu0, 2))") rss_after_import_mib=$(rss_mib)"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
echo "store_on_disk_mib=$(du -sm "$data" | cut -f1)"
start "$work/serve-2.log" "$@"
ready=$(wait_ready)
load=$(grep -o 'load=[^ ]*' "$work/serve-2.log" | head -1)
echo "restart_to_ready_s=$ready cpu_to_ready_s=$(cpu_s) store_${load} rss_after_restart_mib=$(rss_mib)"
sleep 2
echo "rss_2s_after_ready_mib=$(rss_mib) heap_alloc_mib=$(curl -s "$base/metrics" | awk '/^go_memstats_heap_alloc_bytes /{printf "%d", $2/1048576}')"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
"$CAIRN" verify --data "$data" | tail -3
