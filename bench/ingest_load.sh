#!/usr/bin/env bash
# Summaries stored per second by garda-aggregator, and ack latency, with 10,
# 100 and 1000 sensors, each with its own CURVE key and connection.
#   bench/ingest_load.sh [BUILD_DIR]        (default <repo>/build)
# Makes keys (garda keygen) for the aggregator, the sensors and a console,
# writes an aggregator.toml listing every sensor and the console (operator),
# and for each sensor count starts garda-aggregator on loopback with a fresh
# RocksDB data dir on disk, runs bench ingest_load against it, then asks
# `garda history --sensor load-0 --json` whether every summary acked as stored
# to load-0 is in the store. Prints one line per figure. Loopback only.
# Environment: GARDA_LOAD_SENSORS ("10 100 1000"), GARDA_LOAD_SECONDS (10),
# GARDA_LOAD_RATE (0: as fast as acks allow), GARDA_LOAD_VICTIMS (10),
# GARDA_LOAD_ATTACKED (1: the share of sensors whose every window is under
# attack, all victims above every floor; the others send normal traffic),
# GARDA_LOAD_INFLIGHT (32), GARDA_LOAD_WINDOW_MS (1000 / GARDA_LOAD_RATE when
# paced, at least 100; else 1000), GARDA_LOAD_IO_THREADS (the generator's ZeroMQ
# I/O threads, 2), GARDA_LOAD_NICE (runs the generator under `nice -n` this:
# it stands in for sensors on other machines, and then takes only what CPU
# the aggregator leaves), GARDA_LOAD_TMP (dir for the temp dir, default
# /tmp; should be a disk, not tmpfs), GARDA_LOAD_KEEP=1 keeps the temp dir,
# GARDA_LOAD_SINGLE_ACKS=1 has the simulated sensors take one ack message per
# summary (a hello without takesAckBatches, as releases before batched acks),
# GARDA_LOAD_SINGLE_SUMMARIES=1 has them send every summary alone (as
# releases before summary batches), never a summaryBatch.
# Raises `ulimit -n` (each sensor costs the generator two descriptors and the
# aggregator one) up to the hard limit, and says so.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bin=$build/bin
counts=${GARDA_LOAD_SENSORS:-"10 100 1000"}
seconds=${GARDA_LOAD_SECONDS:-10}
rate=${GARDA_LOAD_RATE:-0}
victims=${GARDA_LOAD_VICTIMS:-10}
attacked=${GARDA_LOAD_ATTACKED:-1}
inflight=${GARDA_LOAD_INFLIGHT:-32}
# A sensor sending `rate` summaries a second has windows of 1000/rate ms, or
# of the shortest a sensor may have (100 ms: then data time runs ahead).
window_ms=${GARDA_LOAD_WINDOW_MS:-$(awk -v r="$rate" 'BEGIN { w = r > 0 ? int(1000 / r) : 1000; print (w < 100 ? 100 : w) }')}
for b in garda garda-aggregator ingest_load; do
  [[ -x $bin/$b ]] || { echo "ingest_load.sh: $bin/$b not built (ninja -C $build $b)" >&2; exit 2; }
done
max=0
for n in $counts; do ((n > max)) && max=$n; done

want=$((max * 3 + 1024))
if (($(ulimit -n) < want)); then
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] || ((hard >= want)) || want=$hard
  ulimit -n "$want"
  echo "note: raised ulimit -n to $(ulimit -n) for $max sensors"
fi

work=$(mktemp -d "${GARDA_LOAD_TMP:-/tmp}/garda-load.XXXXXX")
agg_pid=
load_pid=
cleanup() {
  local rc=$?
  set +e  # a failing kill or wait must not cut the cleanup short
  [[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
  [[ -n $agg_pid ]] && kill "$agg_pid" 2>/dev/null && wait "$agg_pid" 2>/dev/null
  if [[ ${GARDA_LOAD_KEEP:-0} == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ $(stat -f -c %T "$work") == tmpfs ]]; then
  echo "warning: $work is on tmpfs: RocksDB writes will not touch a disk" >&2
fi

# Keys: one per sensor, as in a real city.
keys=$work/keys
"$bin/garda" keygen --out "$keys" --name aggregator >/dev/null
"$bin/garda" keygen --out "$keys" --name console >/dev/null
for ((i = 0; i < max; i++)); do "$bin/garda" keygen --out "$keys" --name "sensor-$i" >/dev/null; done

read -r sport cport < <(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')

write_config() {  # data_dir
  {
    echo "[aggregator]"
    echo "listen_sensors = \"tcp://127.0.0.1:$sport\""
    echo "listen_console = \"tcp://127.0.0.1:$cport\""
    echo "secret_key = \"$keys/aggregator.key\""
    echo "data_dir = \"$1\""
    echo "log_level = \"info\""
    echo "sensor_rate_limit = 10000000  # measure ingest, not the per-sensor limit"
    for ((i = 0; i < max; i++)); do
      printf '\n[[sensor]]\nid = "load-%d"\npublic_key = "%s/sensor-%d.pub"\n' "$i" "$keys" "$i"
    done
    printf '\n[[console]]\nname = "bench"\npublic_key = "%s/console.pub"\nrole = "operator"\n' "$keys"
  } >"$work/aggregator.toml"
}

proc_cpu_s() {  # pid: user+system seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}
machine_busy() {  # busy and total jiffies of all CPUs so far
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}
thread_ticks() {  # pid: "thread-name ticks" per thread (user+system)
  for f in /proc/"$1"/task/*/stat; do
    sed -E 's/^[0-9]+ \(([^)]*)\) /\1 /' "$f" 2>/dev/null | awk '{ print $1, $13 + $14 }'
  done
}
threads_cpu_per_s() {  # before-file after-file seconds: "name=cores,..." by thread name
  awk -v hz="$(getconf CLK_TCK)" -v s="$3" '
    FNR == NR { before[$1] += $2; next }
    { after[$1] += $2 }
    END { for (t in after) printf "%s%s=%.2f", (n++ ? "," : ""), t, (after[t] - before[t]) / hz / s }
  ' "$1" "$2"
}
proc_kib() {  # pid field (VmRSS, VmHWM)
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

failed=0
for n in $counts; do
  data=$work/data-$n
  log=$work/aggregator-$n.log
  write_config "$data"
  "$bin/garda-aggregator" --config "$work/aggregator.toml" >"$log" 2>&1 &
  agg_pid=$!
  for ((t = 0; t < 100; t++)); do
    grep -q "aggregator: sensors on" "$log" 2>/dev/null && break
    kill -0 "$agg_pid" 2>/dev/null || { cat "$log" >&2; echo "garda-aggregator exited" >&2; exit 1; }
    sleep 0.1
  done
  cpu0=$(proc_cpu_s "$agg_pid")
  thread_ticks "$agg_pid" >"$work/threads0"
  read -r busy0 all0 < <(machine_busy)
  t0=$(date +%s.%N)
  # glibc's malloc in huge pages for the generator only (see ingest_load.cpp's
  # mallopt); the aggregator is measured as it ships.
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    ${GARDA_LOAD_NICE:+nice -n "$GARDA_LOAD_NICE"} "$bin/ingest_load" --aggregator "tcp://127.0.0.1:$sport" --server-key "$keys/aggregator.pub" \
    --keys-dir "$keys" --sensors "$n" --seconds "$seconds" --rate "$rate" \
    --window-victims "$victims" --attacked "$attacked" --inflight "$inflight" \
    --io-threads "${GARDA_LOAD_IO_THREADS:-2}" --window-ms "$window_ms" \
    ${GARDA_LOAD_SINGLE_ACKS:+--single-acks} ${GARDA_LOAD_SINGLE_SUMMARIES:+--single-summaries} \
    --acked-out "$work/acked-$n.txt" \
    >"$work/load-$n.out" &
  load_pid=$!
  rc=0
  wait "$load_pid" || rc=$?
  load_pid=
  t1=$(date +%s.%N)
  cpu1=$(proc_cpu_s "$agg_pid")
  thread_ticks "$agg_pid" >"$work/threads1"
  read -r busy1 all1 < <(machine_busy)
  cat "$work/load-$n.out"
  ((rc == 0)) || { echo "sensors=$n ingest_load_exit=$rc (acks lost, refused or warm-up incomplete)"; failed=1; }
  stored=$(grep -o ' stored=[0-9]*' "$work/load-$n.out" | cut -d= -f2)
  echo "sensors=$n aggregator_cpu_per_s=$(echo "($cpu1 - $cpu0) / ($t1 - $t0)" | bc -l | xargs printf %.2f)" \
    "aggregator_cpu_us_per_stored=$(echo "($cpu1 - $cpu0) * 1000000 / (${stored:-0} + 1)" | bc -l | xargs printf %.0f)" \
    "aggregator_rss_kib=$(proc_kib "$agg_pid" VmRSS) aggregator_peak_rss_kib=$(proc_kib "$agg_pid" VmHWM)" \
    "store_kib=$(du -sk "$data" 2>/dev/null | cut -f1)" \
    "aggregator_threads_cpu_per_s=$(threads_cpu_per_s "$work/threads0" "$work/threads1" "$(echo "$t1 - $t0" | bc -l)")" \
    "machine_busy_cores=$(echo "($busy1 - $busy0) / ($all1 - $all0) * $(nproc)" | bc -l | xargs printf %.2f)/$(nproc)"

  # What load-0 saw acked as stored must be in the store, and nothing else.
  [[ -s $work/acked-$n.txt ]] || { echo "ingest_load.sh: ingest_load wrote no acked list" >&2; exit 1; }
  stored0=$(($(wc -l <"$work/acked-$n.txt") - 1))
  "$bin/garda" --connect "tcp://127.0.0.1:$cport" --server-key "$keys/aggregator.pub" \
    --key "$keys/console.key" --timeout-ms 60000 --json \
    history --sensor load-0 --limit $((stored0 + 1000)) >"$work/history-$n.json"
  if ! /usr/bin/python3 - "$work/acked-$n.txt" "$work/history-$n.json" "$n" <<'PY'; then failed=1; fi
import json, sys
acked_path, history_path, n = sys.argv[1:]
lines = open(acked_path).read().split()
boot, acked = lines[0], {int(x) for x in lines[1:]}
windows = json.load(open(history_path))["windows"]
mine = {w["seq"] for w in windows if w["boot_id"] == boot}
missing, extra = len(acked - mine), len(mine - acked)
print(f"sensors={n} check=load-0 acked_stored={len(acked)} in_history={len(mine)} "
      f"missing={missing} extra_unacked={extra}")
sys.exit(1 if missing else 0)
PY

  kill -TERM "$agg_pid"
  rc=0
  wait "$agg_pid" || rc=$?
  agg_pid=
  ((rc == 0)) || { echo "sensors=$n aggregator_exit=$rc"; failed=1; }
  errors=$(grep -c -E ' (error|critical) ' "$log" || true)
  warnings=$(grep -c -E ' warning ' "$log" || true)
  echo "sensors=$n aggregator_log_errors=$errors aggregator_log_warnings=$warnings"
  grep -E ' (error|critical|warning) ' "$log" | sed -E 's/^[^ ]+ //' | sort | uniq -c | sort -rn | head -5 |
    sed "s/^/  sensors=$n log: /" || true
  stalls=$(cat "$data"/rocksdb/LOG* 2>/dev/null | grep -c -E 'Stalling writes|Stopping writes' || true)
  echo "sensors=$n rocksdb_write_stall_messages=$stalls"
  [[ ${GARDA_LOAD_KEEP:-0} == 1 ]] || rm -rf "$data"
done
exit "$failed"
