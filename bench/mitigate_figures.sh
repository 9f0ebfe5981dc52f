#!/usr/bin/env bash
# Time-to-detect and time-to-mitigate of the whole loop, measured with the city
# drill, and the same SYN flood's time-to-detect by Debian's fastnetmon.
#
#   sudo bench/mitigate_figures.sh [BUILD_DIR]       (default <repo>/build)
#
# For each enforcer (GARDA_FIG_BACKENDS, default "nftables xdp exec"; exec runs
# bench/exec_nft_gateway.py, a stand-in for a vendor gateway) and window
# length (GARDA_FIG_WINDOWS, default "1000 250") it runs GARDA_FIG_RUNS (5)
# drills of one OPD under a 20 kpps SYN flood from a 100-host botnet, and
# prints p50 and p90 of time_to_detect_s (attack launch -> the incident seen
# by the console, polled every 0.25 s) and time_to_mitigate_s (attack launch
# -> the first moment from which, over the following second, 90 % of the
# attack's packets were dropped at the victim's gateway; about 0.3 s
# resolution). Then it runs
# ../shared/peers/fastnetmon/run_fnm_bench.sh with the same flood rate and a
# threshold matched to Garda's SYN floor (2000 pps) and prints its
# time-to-detect (notify script) p50 and the ratio to Garda's at 1000 ms.
# Needs root. Everything runs in namespaces the drill and the harness make.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
runs=${GARDA_FIG_RUNS:-5}
backends=${GARDA_FIG_BACKENDS:-"nftables xdp exec"}
windows=${GARDA_FIG_WINDOWS:-"1000 250"}
out=$(mktemp -d /tmp/garda-mitigate-figures.XXXXXX)
[[ $(id -u) -eq 0 ]] || { echo "mitigate_figures.sh: needs root" >&2; exit 2; }

scenario() {  # backend window_ms
  cat <<EOF
[city]
opds = 1
window_ms = $2
backend = "$1"
$([[ $1 == exec ]] && echo "exec_command = \"$root/bench/exec_nft_gateway.py\"")
mode = "enforce"
order_ttl_s = 60
duration_s = 22
[normal]
clients = 5
requests_per_s = 5
[[attack]]
name = "syn-botnet"
vector = "syn_flood"
targets = ["dukcapil"]
sources = "real"
bots = 100
start_s = 3
duration_s = 15
pps = 20000
EOF
}

pct() {  # p values...
  /usr/bin/python3 -c '
import sys, statistics
p = float(sys.argv[1]); xs = sorted(float(x) for x in sys.argv[2:] if x != "None")
if not xs: print("n/a"); sys.exit()
k = (len(xs) - 1) * p / 100; f = int(k); c = min(f + 1, len(xs) - 1)
print(round(xs[f] + (xs[c] - xs[f]) * (k - f), 2))' "$@"
}

declare -A detect
for backend in $backends; do
  for w in $windows; do
    scenario "$backend" "$w" > "$out/$backend-$w.toml"
    ttd=(); ttm=()
    for ((i = 1; i <= runs; i++)); do
      dir="$out/$backend-$w-$i"
      /usr/bin/python3 "$root/scripts/drill.py" --bin "$build/bin" --scenario "$out/$backend-$w.toml" \
        --out "$dir" --quiet > "$dir.log" 2>&1 || { echo "run failed: $dir.log" >&2; continue; }
      read -r d m < <(/usr/bin/python3 -c '
import json, sys; a = json.load(open(sys.argv[1]))["attacks"][0]
print(a["time_to_detect_s"], a["time_to_mitigate_s"])' "$dir/report.json")
      ttd+=("$d"); ttm+=("$m")
    done
    echo "backend=$backend window_ms=$w runs=${#ttd[@]} detect_p50_s=$(pct 50 "${ttd[@]}") detect_p90_s=$(pct 90 "${ttd[@]}") mitigate_p50_s=$(pct 50 "${ttm[@]}") mitigate_p90_s=$(pct 90 "${ttm[@]}") mitigate_runs=[${ttm[*]}]"
    detect[$backend-$w]=$(pct 50 "${ttd[@]}")
  done
done

fnm=$root/../shared/peers/fastnetmon/run_fnm_bench.sh
if [[ -x $fnm || -f $fnm ]]; then
  command -v fastnetmon >/dev/null || apt-get install -y -qq fastnetmon >/dev/null
  bash "$fnm" -n "$runs" -R 20000 -t 2000 -d 15 -o "$out/fnm" > "$out/fnm.log" 2>&1 || true
  if [[ -f $out/fnm/summary.csv ]]; then
    fnm_p50=$(/usr/bin/python3 -c '
import csv, sys, statistics
rows = list(csv.DictReader(open(sys.argv[1])))
xs = [float(r["ttd_from_launch_s"]) for r in rows if r.get("ttd_from_launch_s") not in (None, "", "NA")]
print(round(statistics.median(xs), 2) if xs else "n/a")' "$out/fnm/summary.csv")
    first=$(echo "$backends" | awk '{print $1}')
    garda=${detect[$first-1000]:-n/a}
    ratio=$(/usr/bin/python3 -c 'import sys; a,b=sys.argv[1:]; print(round(float(a)/float(b),2) if "n/a" not in (a,b) else "n/a")' "$fnm_p50" "$garda")
    echo "fastnetmon detect_p50_s=$fnm_p50 (threshold_pps=2000, 20 kpps flood, from launch) garda_detect_p50_s=$garda ratio_fnm_over_garda=$ratio"
  else
    echo "fastnetmon: no summary (see $out/fnm.log)"
  fi
fi
echo "results: $out"
