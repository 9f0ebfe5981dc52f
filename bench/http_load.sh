#!/usr/bin/env bash
# The HTTP API's latency under load while sensors stream, and what the HTTP
# load costs ingest.
#   bench/http_load.sh [BUILD_DIR]        (default <repo>/build)
# Starts garda-aggregator on loopback (fresh RocksDB dir, HTTP on, one viewer
# token from `garda token new`), then:
#   1. ingest alone: GARDA_HTTP_SENSORS garda-sensor processes replaying
#      GARDA_HTTP_PCAP (fast, over and over) for GARDA_HTTP_SECONDS ->
#      summaries stored per second (the aggregator's own counter);
#   2. the same while wrk (Debian wrk) runs GARDA_HTTP_CLIENTS concurrent
#      keep-alive clients against each path in GARDA_HTTP_PATHS -> the API's
#      requests/s, p50, p99 and the summaries/s stored during it.
# Prints one line per figure. Loopback only. Needs wrk and curl.
# Environment: GARDA_HTTP_SENSORS (4), GARDA_HTTP_SECONDS (10),
# GARDA_HTTP_CLIENTS ("8 64"), GARDA_HTTP_PCAP (../shared/data/pcaps/amp.TCP.
# syn.optionallyACK.optionallysamePort.pcapng: 818 s, 819 windows), GARDA_HTTP_PATHS ("/api/v1/status
# /api/v1/history?points=100 /metrics"), GARDA_HTTP_KEEP=1 keeps the temp dir.
# The sensors are real garda-sensor processes (bench/ingest_load measures
# ingest alone, with simulated sensors).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bin=$build/bin
sensors=${GARDA_HTTP_SENSORS:-4}
pcap=${GARDA_HTTP_PCAP:-$root/../shared/data/pcaps/amp.TCP.syn.optionallyACK.optionallysamePort.pcapng}
seconds=${GARDA_HTTP_SECONDS:-10}
clients=${GARDA_HTTP_CLIENTS:-"8 64"}
paths=${GARDA_HTTP_PATHS:-"/api/v1/status /api/v1/history?points=100 /metrics"}
for b in garda garda-aggregator garda-sensor; do
  [[ -x $bin/$b ]] || { echo "http_load.sh: $bin/$b not built (ninja -C $build $b)" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "http_load.sh: wrk not installed (apt-get install wrk)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/garda-http-load.XXXXXX")
agg_pid=
load_pid=
cleanup() {
  local rc=$?
  set +e
  for p in $load_pid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
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

# Streaming sensors: each of GARDA_HTTP_SENSORS garda-sensor processes
# replays GARDA_HTTP_PCAP (fast) over and over for the phase (a new boot
# each time, so every replay is stored again). Ingest's rate is read from the
# aggregator's own counter (garda_ingest_accepted_total{kind="summary"}).
scrape() {
  curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$hport/metrics" |
    awk '$1 == "garda_ingest_accepted_total{kind=\"summary\"}" { print $2 }'
}
ingest() {  # seconds: sensors replay in a loop in the background
  local end=$(($(date +%s) + $1))
  load_pid=
  for ((i = 0; i < sensors; i++)); do
    (while (($(date +%s) < end)); do
      "$bin/garda-sensor" --config "$work/sensor-$i.toml" >/dev/null 2>&1 || true
    done) &
    load_pid="$load_pid $!"
  done
  ingest_t0=$(date +%s.%N)
  ingest_s0=$(scrape)
}
ingest_wait() {  # sets ingest_rate; not in $(...): a subshell cannot wait for the loops
  local pid t1 s1
  for pid in $load_pid; do wait "$pid" || true; done
  load_pid=
  t1=$(date +%s.%N)
  s1=$(scrape)
  ingest_rate=$(echo "($s1 - $ingest_s0) / ($t1 - $ingest_t0)" | bc -l | xargs printf %.0f)
}
for ((i = 0; i < sensors; i++)); do
  {
    printf '[sensor]\nid = "load-%d"\nprotected = ["10.10.10.0/24"]\n' "$i"
    printf '[capture]\nsource = "pcap"\npcap_file = "%s"\nreplay = "fast"\n' "$pcap"
    printf '[uplink]\naggregator = "tcp://127.0.0.1:%s"\naggregator_public_key = "%s/aggregator.pub"\n' "$sport" "$keys"
    printf 'secret_key = "%s/sensor-%d.key"\n[enforce]\nbackend = "dry-run"\n' "$keys" "$i"
  } >"$work/sensor-$i.toml"
done

echo "# http_load: sensors=$sensors pcap=$(basename "$pcap") seconds=$seconds cpus=$(nproc) $(date -u +%FT%TZ)"
ingest "$seconds"
ingest_wait
echo "ingest_alone summaries_per_s=$ingest_rate"

for c in $clients; do
  for p in $paths; do
    tag="c$c-$(echo "$p" | tr -c 'a-z0-9' '_')"
    ingest "$seconds"
    wrk -t2 -c "$c" -d "${seconds}s" --latency -H "Authorization: Bearer $token" \
      "http://127.0.0.1:$hport$p" >"$work/wrk-$tag.out" 2>&1 || true
    ingest_wait
    during=$ingest_rate
    p50=$(awk '$1 == "50%" { print $2 }' "$work/wrk-$tag.out")
    p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk-$tag.out")
    rps=$(awk '/Requests\/sec/ { print $2 }' "$work/wrk-$tag.out")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$work/wrk-$tag.out")
    echo "http clients=$c path=$p requests_per_s=$rps p50=$p50 p99=$p99 non_2xx=${non2xx:-0}" \
      "ingest_summaries_per_s_during=$during"
  done
done
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$hport/metrics" |
  grep -E '^garda_(http_busy_total|queue_depth)' || true
