#!/usr/bin/env bash
# fnm_compare.sh - CPU cost per packet of garda-sensor vs Debian's FastNetMon, same run, same flood.
#
# Runs one hping3 SYN flood (`hping3 -S --flood -p 80`, bounded by timeout) across a veth twice:
#   1. captured by garda-sensor (AF_PACKET, workers = 1, --offline writing JSON lines), in
#      namespaces of this script's own (gfc<pid>a / gfc<pid>v) built like run_fnm_bench.sh's:
#      198.18.1.1/32 peer 198.18.2.2 <== veth ==> 198.18.2.2/32 peer 198.18.1.1, victim drops
#      tcp/80 at INPUT with nftables (no RST back-scatter; AF_PACKET still sees the SYNs);
#   2. captured by fastnetmon via ../shared/peers/fastnetmon/run_fnm_bench.sh -n 1 -J (AF_PACKET).
# For both, CPU seconds (utime + stime of the whole process, all threads, from /proc/PID/stat) and
# victim-veth rx packets are taken over the same span: from just before the flood is launched to
# 3 s after it ends (run_fnm_bench.sh's sampler stops 3 s after the flood; Garda's reads mirror it).
# Prints one line per figure, then garda_cpu_s_per_Mpkt, fnm_cpu_s_per_Mpkt, ratio_fnm_over_garda.
#
# Usage:  sudo bench/fnm_compare.sh [-d FLOOD_SECS] [-o OUTDIR]
#   -d FLOOD_SECS  flood length for both, 5..30 (run_fnm_bench.sh's bounds)   [10]
#   -o OUTDIR      results (configs, logs, JSON lines, fastnetmon trial)      [/tmp/garda-fnm-compare/<ts>]
# Env: GARDA_BIN_DIR (default <repo>/build/bin). Needs root, hping3, nftables, iproute2; installs
# Debian's fastnetmon with apt-get if it is missing.
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FLOOD_SECS=10
OUTDIR=""
while getopts "d:o:h" opt; do
  case $opt in
    d) FLOOD_SECS=$OPTARG ;; o) OUTDIR=$OPTARG ;;
    h|*) sed -n '2,19p' "$0"; exit 0 ;;
  esac
done
[[ $FLOOD_SECS =~ ^[1-9][0-9]*$ ]] || { echo "-d takes seconds, got '$FLOOD_SECS'" >&2; exit 2; }
(( FLOOD_SECS > 30 )) && FLOOD_SECS=30
(( FLOOD_SECS < 5 )) && FLOOD_SECS=5
[[ $(id -u) == 0 ]] || { echo "needs root (network namespaces, AF_PACKET)" >&2; exit 2; }

BIN_DIR=${GARDA_BIN_DIR:-$root/build/bin}
SENSOR=$BIN_DIR/garda-sensor
FNM_BENCH=$root/../shared/peers/fastnetmon/run_fnm_bench.sh
[[ -x $SENSOR ]] || { echo "$SENSOR missing or not executable (build Garda or set GARDA_BIN_DIR)" >&2; exit 2; }
[[ -f $FNM_BENCH ]] || { echo "$FNM_BENCH missing" >&2; exit 2; }
for b in ip nft hping3 timeout ping awk; do
  command -v "$b" >/dev/null || { echo "missing $b (apt-get install iproute2 nftables hping3 coreutils iputils-ping gawk)" >&2; exit 2; }
done
if [[ ! -x /usr/sbin/fastnetmon ]]; then
  echo "fastnetmon missing: apt-get install fastnetmon" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q fastnetmon >&2
fi

ATT_IP=198.18.1.1
VIC_IP=198.18.2.2
for a in $ATT_IP $VIC_IP; do
  [[ $a =~ ^198\.(18|19)\.[0-9]+\.[0-9]+$ ]] || { echo "refusing non-198.18/15 address $a" >&2; exit 2; }
done
CLK_TCK=$(getconf CLK_TCK)
OUTDIR=${OUTDIR:-/tmp/garda-fnm-compare/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUTDIR/garda"

# ---------------------------------------------------------------- cleanup
NSA="gfc$$a"; NSV="gfc$$v"; VA="gfc$$va"; VV="gfc$$vv"
VA=${VA:0:15}; VV=${VV:0:15}
SENSOR_PID=""; HP_PID=""; FNM_BENCH_PID=""; ZZZ_PID=""; MADE_NS=()
cleanup() {
  local rc=$?
  local -   # keep `set +e` local: the script goes on after the Garda half's cleanup
  set +e
  [[ -n $ZZZ_PID ]] && kill -TERM "$ZZZ_PID" 2>/dev/null
  # run_fnm_bench.sh cleans up its own namespaces and processes from its TERM trap
  if [[ -n $FNM_BENCH_PID ]] && kill -0 "$FNM_BENCH_PID" 2>/dev/null; then
    kill -TERM "$FNM_BENCH_PID" 2>/dev/null
    wait "$FNM_BENCH_PID" 2>/dev/null
  fi
  for p in $HP_PID $SENSOR_PID; do
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
  done
  for p in $HP_PID $SENSOR_PID; do
    [[ -n $p ]] || continue
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  for ns in "${MADE_NS[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  SENSOR_PID=""; HP_PID=""; FNM_BENCH_PID=""; ZZZ_PID=""; MADE_NS=()
  return $rc
}
trap cleanup EXIT
trap 'echo "interrupted, cleaning up" >&2; exit 130' INT TERM HUP
# interruptible sleep: a signal interrupts `wait` at once, so the trap runs immediately
zzz() { sleep "$1" & ZZZ_PID=$!; wait "$ZZZ_PID" || true; ZZZ_PID=""; }
calc() { awk "BEGIN{printf \"%.4f\", $*}"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, all threads
rx_packets() { ip netns exec "$NSV" cat "/sys/class/net/$VV/statistics/rx_packets"; }
figure() { printf '%-30s %s\n' "$1" "$2"; }

# ---------------------------------------------------------------- 1. garda-sensor
echo "== garda-sensor: namespaces $NSA / $NSV, dir $OUTDIR/garda" >&2
ip netns add "$NSA"; MADE_NS+=("$NSA")
ip netns add "$NSV"; MADE_NS+=("$NSV")
ip -n "$NSA" link set lo up
ip -n "$NSV" link set lo up
ip -n "$NSA" link add "$VA" type veth peer name "$VV" netns "$NSV"
ip -n "$NSA" addr add "$ATT_IP/32" peer "$VIC_IP/32" dev "$VA"
ip -n "$NSV" addr add "$VIC_IP/32" peer "$ATT_IP/32" dev "$VV"
ip -n "$NSA" link set "$VA" up
ip -n "$NSV" link set "$VV" up
ip netns exec "$NSA" ping -c1 -W2 "$VIC_IP" >/dev/null || { echo "veth ping failed" >&2; exit 1; }
ip netns exec "$NSV" nft -f - <<EOF
table inet gfc$$ {
  chain in {
    type filter hook input priority 0; policy accept;
    ip daddr $VIC_IP tcp dport 80 drop
  }
}
EOF
cat > "$OUTDIR/garda/sensor.toml" <<EOF
[sensor]
id = "victim"
protected = ["198.18.2.0/24"]

[capture]
source = "afpacket"
interface = "$VV"
workers = 1
window_ms = 1000
EOF
ip netns exec "$NSV" "$SENSOR" --config "$OUTDIR/garda/sensor.toml" --offline \
  --summaries-out "$OUTDIR/garda/summaries.jsonl" > "$OUTDIR/garda/sensor.stdout" 2> "$OUTDIR/garda/sensor.stderr" &
SENSOR_PID=$!   # ip netns exec execs the sensor: this is its PID
for _ in $(seq 1 100); do
  kill -0 "$SENSOR_PID" 2>/dev/null || break
  grep -q "capturing on" "$OUTDIR/garda/sensor.stderr" && break
  sleep 0.1
done
grep -q "capturing on" "$OUTDIR/garda/sensor.stderr" || {
  echo "garda-sensor did not start capturing:" >&2; tail -20 "$OUTDIR/garda/sensor.stderr" >&2; exit 1; }
zzz 1
G_CPU0=$(cpu_ticks "$SENSOR_PID"); G_RX0=$(rx_packets)
G_T0=$(date +%s.%N)
ip netns exec "$NSA" timeout -s INT -k 3 "$FLOOD_SECS" hping3 -S --flood -p 80 "$VIC_IP" \
  > "$OUTDIR/garda/hping3.log" 2>&1 &
HP_PID=$!
wait "$HP_PID" || true
HP_PID=""
G_T1=$(date +%s.%N)
zzz 3
G_CPU1=$(cpu_ticks "$SENSOR_PID"); G_RX1=$(rx_packets)
kill -TERM "$SENSOR_PID"
G_RC=0; wait "$SENSOR_PID" || G_RC=$?
SENSOR_PID=""
(( G_RC == 0 )) || { echo "garda-sensor exited $G_RC:" >&2; tail -20 "$OUTDIR/garda/sensor.stderr" >&2; exit 1; }
read -r G_SEEN G_DROPS < <(sed -nE 's/.* ([0-9]+) packets captured, ([0-9]+) dropped by the kernel.*/\1 \2/p' \
  "$OUTDIR/garda/sensor.stderr" | tail -1)
[[ -n ${G_SEEN:-} ]] || { echo "no final 'packets captured' line from garda-sensor" >&2; exit 1; }
G_JSON_PKTS=$(grep -o '"totals":{[^}]*}' "$OUTDIR/garda/summaries.jsonl" |
  sed -nE 's/.*"packets":([0-9]+).*/\1/p' | awk '{s+=$1} END{print s+0}')
G_CPU_S=$(calc "($G_CPU1 - $G_CPU0) / $CLK_TCK")
G_PKTS=$(( G_RX1 - G_RX0 ))
G_SPAN=$(calc "$G_T1 - $G_T0")
cleanup   # the trap stays armed for the fastnetmon half
(( G_PKTS > 0 )) || { echo "the flood never reached the victim veth" >&2; exit 1; }

# ---------------------------------------------------------------- 2. fastnetmon
echo "== fastnetmon: $FNM_BENCH -n 1 -J -d $FLOOD_SECS -o $OUTDIR/fnm" >&2
"$FNM_BENCH" -n 1 -J -d "$FLOOD_SECS" -o "$OUTDIR/fnm" >&2 &
FNM_BENCH_PID=$!
F_RC=0; wait "$FNM_BENCH_PID" || F_RC=$?
FNM_BENCH_PID=""
(( F_RC == 0 )) || { echo "run_fnm_bench.sh exited $F_RC" >&2; exit 1; }
TR=$OUTDIR/fnm/trial-1
[[ -s $TR/samples.txt && -s $TR/attack_start_epoch ]] || { echo "no samples in $TR" >&2; exit 1; }
F_T0=$(cat "$TR/attack_start_epoch")
# samples.txt: epoch rx_packets rx_bytes fnm_utime fnm_stime host_busy host_total (20 Hz, until
# 3 s after the flood). Span: last sample before the launch .. last sample.
read -r F_PKTS F_TICKS F_FIRST F_LAST < <(awk -v t0="$F_T0" '
  NF >= 5 { if ($1 <= t0 || !have) { p0=$2; c0=$4+$5; e0=$1; have=1 } p1=$2; c1=$4+$5; e1=$1 }
  END { printf "%d %d %s %s\n", p1-p0, c1-c0, e0, e1 }' "$TR/samples.txt")
F_CPU_S=$(calc "$F_TICKS / $CLK_TCK")
# cross-check from summary.csv: fastnetmon CPU % of one core during the flood and veth avg pps
read -r F_CPU_PCT F_AVG_PPS < <(awk -F, 'NR==1{for(i=1;i<=NF;i++) c[$i]=i; next}
  {print $c["fnm_cpu_pct_flood"], $c["veth_avg_pps"]}' "$OUTDIR/fnm/summary.csv" | tail -1)
(( F_PKTS > 0 )) || { echo "fastnetmon samples show no packets" >&2; exit 1; }

# ---------------------------------------------------------------- figures
(( G_CPU1 > G_CPU0 )) || { echo "garda-sensor used no measurable CPU (< 1 tick)" >&2; exit 1; }
G_PER=$(calc "$G_CPU_S / ($G_PKTS / 1000000)")
F_PER=$(calc "$F_CPU_S / ($F_PKTS / 1000000)")
figure flood_secs "$FLOOD_SECS"
figure cpu_tick_s "$(calc "1 / $CLK_TCK")"   # resolution of every *_cpu_s figure
figure garda_veth_rx_packets "$G_PKTS"
figure garda_veth_avg_pps "$(calc "$G_PKTS / ($G_SPAN)")"
figure garda_packets_seen "$G_SEEN"
figure garda_packets_in_json "$G_JSON_PKTS"
figure garda_kernel_drops "$G_DROPS"
figure garda_cpu_s "$G_CPU_S"
figure fnm_veth_rx_packets "$F_PKTS"
figure fnm_veth_avg_pps "$F_AVG_PPS"
figure fnm_cpu_s "$F_CPU_S"
figure fnm_cpu_pct_flood "$F_CPU_PCT"
figure fnm_cpu_s_per_Mpkt_summary_csv "$(calc "$F_CPU_PCT / 100 / ($F_AVG_PPS / 1000000)")"
figure garda_cpu_s_per_Mpkt "$G_PER"
figure fnm_cpu_s_per_Mpkt "$F_PER"
figure ratio_fnm_over_garda "$(calc "$F_PER / $G_PER")"
echo "results: $OUTDIR" >&2
