#!/usr/bin/env bash
# The HTTP API's latency under load while sensors stream, and what the HTTP
# load costs ingest.
#   bench/http_load.sh [BUILD_DIR]        (default <repo>/build)
# Starts garda-aggregator on loopback (fresh RocksDB dir, HTTP on, one viewer
# token from `garda token new`), then:
#   1. ingest alone: bench ingest_load with GARDA_HTTP_SENSORS sensors for
#      GARDA_HTTP_SECONDS -> acked summaries/s (baseline);
#   2. the same ingest while wrk (Debian wrk) runs GARDA_HTTP_CLIENTS
#      concurrent keep-alive clients against each path in GARDA_HTTP_PATHS ->
#      the API's requests/s, p50, p99 and the summaries/s during it.
# Prints one line per figure. Loopback only. Needs wrk.
# Environment: GARDA_HTTP_SENSORS (20), GARDA_HTTP_SECONDS (10),
# GARDA_HTTP_CLIENTS ("8 64"), GARDA_HTTP_RATE (summaries/s per sensor, 0 =
# as fast as acks allow; default 50), GARDA_HTTP_PATHS
# ("/api/v1/status /api/v1/history?points=100 /metrics"), GARDA_HTTP_KEEP=1
# keeps the temp dir.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bin=$build/bin
sensors=${GARDA_HTTP_SENSORS:-20}
seconds=${GARDA_HTTP_SECONDS:-10}
clients=${GARDA_HTTP_CLIENTS:-"8 64"}
rate=${GARDA_HTTP_RATE:-50}
paths=${GARDA_HTTP_PATHS:-"/api/v1/status /api/v1/history?points=100 /metrics"}
for b in garda garda-aggregator ingest_load; do
  [[ -x $bin/$b ]] || { echo "http_load.sh: $bin/$b not built (ninja -C $build $b)" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "http_load.sh: wrk not installed (apt-get install wrk)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/garda-http-load.XXXXXX")
agg_pid=
load_pid=
cleanup() {
  local rc=$?
  set +e
  [[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
  [[ -n $agg_pid ]] && kill "$agg_pid" 2>/dev/null && wait "$agg_pid" 2>/dev/null
  if [[ ${GARDA_HTTP_KEEP:-0} == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

keys=$work/keys
"$bin/garda" keygen --out "$keys" --name aggregator >/dev/null
for ((i = 0; i < sensors; i++)); do "$bin/garda" keygen --out "$keys" --name "sensor-$i" >/dev/null; done
"$bin/garda" --json token new --name bench --role viewer >"$work/token.json"
token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$work/token.json")
read -r sport cport hport < <(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
{
  echo "[aggregator]"
  echo "listen_sensors = \"tcp://127.0.0.1:$sport\""
  echo "listen_console = \"tcp://127.0.0.1:$cport\""
  echo "http = \"127.0.0.1:$hport\""
  echo "secret_key = \"$keys/aggregator.key\""
  echo "data_dir = \"$work/data\""
  echo "log_level = \"warn\""
  echo "sensor_rate_limit = 10000000"
  for ((i = 0; i < sensors; i++)); do
    printf '\n[[sensor]]\nid = "load-%d"\npublic_key = "%s/sensor-%d.pub"\n' "$i" "$keys" "$i"
  done
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"])' "$work/token.json"
} >"$work/aggregator.toml"

"$bin/garda-aggregator" --config "$work/aggregator.toml" >"$work/aggregator.log" 2>&1 &
agg_pid=$!
for _ in $(seq 100); do
  curl -fsS -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$hport/api/v1/status" 2>/dev/null && break
  sleep 0.1
done

ingest() {  # tag: runs ingest_load in the background, output in $work/ingest-TAG.out
  "$bin/ingest_load" --aggregator "tcp://127.0.0.1:$sport" --server-key "$keys/aggregator.pub" \
    --keys-dir "$keys" --sensors "$sensors" --seconds "$seconds" --rate "$rate" \
    >"$work/ingest-$1.out" 2>&1 &
  load_pid=$!
}
acked() { grep -o 'acked_per_s=[0-9.]*' "$work/ingest-$1.out" | cut -d= -f2; }
ingest_wait() { wait "$load_pid" || echo "ingest_load exit $? ($(tail -1 "$work/ingest-$1.out"))"; load_pid=; }

echo "# http_load: sensors=$sensors rate_per_sensor=$rate seconds=$seconds cpus=$(nproc) $(date -u +%FT%TZ)"
ingest base
ingest_wait base
echo "ingest_alone acked_per_s=$(acked base)"

for c in $clients; do
  for p in $paths; do
    tag="c$c-$(echo "$p" | tr -c 'a-z0-9' '_')"
    ingest "$tag"
    sleep 2  # ingest warmed up before the HTTP load starts
    wrk -t2 -c "$c" -d "$((seconds - 3))s" --latency -H "Authorization: Bearer $token" \
      "http://127.0.0.1:$hport$p" >"$work/wrk-$tag.out" 2>&1 || true
    ingest_wait "$tag"
    p50=$(awk '$1 == "50%" { print $2 }' "$work/wrk-$tag.out")
    p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk-$tag.out")
    rps=$(awk '/Requests\/sec/ { print $2 }' "$work/wrk-$tag.out")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$work/wrk-$tag.out")
    echo "http clients=$c path=$p requests_per_s=$rps p50=$p50 p99=$p99 non_2xx=${non2xx:-0}" \
      "ingest_acked_per_s_during=$(acked "$tag")"
  done
done
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$hport/metrics" |
  grep -E '^garda_(http_busy_total|queue_depth)' || true
