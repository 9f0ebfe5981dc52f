#!/usr/bin/env bash
# Attack duration vs number of incidents with the XDP enforcer, before and
# after renewal on drop counters: one city drill per build of one OPD under
# a botnet SYN flood lasting GARDA_FIG_ATTACK_S (default 60) seconds with
# order_ttl_s = 10, and one line per build: incidents opened against the
# victim (1 = the attack stayed one incident), the order renewals, and the
# share of the attack dropped over its whole length and its last 3 s.
#
#   sudo bench/renewal_figures.sh AFTER_BUILD_DIR [BEFORE_BUILD_DIR]
#
# e.g. sudo bench/renewal_figures.sh build /work/main/build
# Needs root. Everything runs in the namespaces the drill makes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
attack=${GARDA_FIG_ATTACK_S:-60}
out=$(mktemp -d /tmp/garda-renewal-figures.XXXXXX)
trap 'rm -rf "$out"' EXIT
[[ $(id -u) -eq 0 ]] || { echo "renewal_figures.sh: needs root" >&2; exit 2; }
[[ $# -ge 1 ]] || { echo "usage: renewal_figures.sh AFTER_BUILD_DIR [BEFORE_BUILD_DIR]" >&2; exit 2; }

cat > "$out/scenario.toml" <<TOML
[city]
opds = 1
window_ms = 1000
backend = "xdp"
mode = "enforce"
order_ttl_s = 10
duration_s = $((attack + 18))

[normal]
clients = 5
requests_per_s = 10

[[attack]]
name = "syn-botnet"
vector = "syn_flood"
targets = ["dukcapil"]
sources = "real"
bots = 60
start_s = 3
duration_s = $attack
pps = 6000
TOML

for label_dir in "after:$1" ${2:+"before:$2"}; do
  label=${label_dir%%:*}
  dir=${label_dir#*:}
  /usr/bin/python3 "$root/scripts/drill.py" --bin "$dir/bin" --scenario "$out/scenario.toml" \
    --out "$out/$label" --quiet > "$out/$label.log" 2>&1 || { tail -20 "$out/$label.log"; exit 1; }
  /usr/bin/python3 - "$out/$label/report.json" "$label" "$attack" <<'PY'
import json, sys
report, label, attack = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
a = report["attacks"][0]
renewals = sum(o.get("renewals", 0) for o in a.get("order_details", []))
print(f"xdp, SYN flood {attack} s, order_ttl_s 10, {label:6}: incidents {len(a['incidents'])}, "
      f"orders {len(a['orders'])}, renewals {renewals}, dropped overall "
      f"{a['attack_drop_ratio_overall']}, last 3 s {a['attack_drop_ratio_last_3s']}")
PY
done
