#!/usr/bin/env bash
# Garda on loopback, the quick way (the main job is the city drill:
# scripts/drill.sh): one aggregator, two OPD sensors replaying captures.
#
#   sudo scripts/demo.sh
#
# It installs the dependencies (as root), builds Garda, makes keys and configs
# for one aggregator and two OPD sensors, generates two captures (a SYN flood
# on dukcapil, a DNS reflection on bapenda), lets both sensors replay them to
# the aggregator over CURVE, and prints `garda status`, `garda history` and
# the incidents the aggregator found.
# Everything it starts is stopped (by PID) and its temp folder removed on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [[ $(id -u) -eq 0 ]]; then scripts/bootstrap.sh; fi
scripts/build.sh "$root/build" >/dev/null
bin=$root/build/bin

work=$(mktemp -d /tmp/garda-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sensor_port=$(port)
console_port=$(port)

echo "== keys (each part makes its own; only public keys are shared)"
for name in aggregator dukcapil bapenda soc-analyst; do
  "$bin/garda" keygen --out "$work/keys" --name "$name" >/dev/null
done
ls "$work/keys"

cat > "$work/aggregator.toml" <<TOML
[aggregator]
listen_sensors = "tcp://127.0.0.1:$sensor_port"
listen_console = "tcp://127.0.0.1:$console_port"
secret_key = "$work/keys/aggregator.key"
data_dir = "$work/data"

[[sensor]]
id = "dukcapil"
public_key = "$work/keys/dukcapil.pub"

[[sensor]]
id = "bapenda"
public_key = "$work/keys/bapenda.pub"

[[console]]
name = "soc-analyst"
public_key = "$work/keys/soc-analyst.pub"
role = "operator"
TOML

sensor_config() {  # id opd prefix
  cat > "$work/$1.toml" <<TOML
[sensor]
id = "$1"
opd = "$2"
protected = ["$3"]
[capture]
source = "pcap"
replay = "fast"
window_ms = 1000
[uplink]
aggregator = "tcp://127.0.0.1:$sensor_port"
aggregator_public_key = "$work/keys/aggregator.pub"
secret_key = "$work/keys/$1.key"
[enforce]
backend = "dry-run"
TOML
}
sensor_config dukcapil "Dinas Kependudukan dan Pencatatan Sipil" 198.18.2.0/24
sensor_config bapenda "Badan Pendapatan Daerah" 198.18.3.0/24

echo "== captures"
scripts/gen_capture.py synflood "$work/dukcapil.pcap" --victim 198.18.2.10 --pps 20000 --seconds 5
scripts/gen_capture.py dnsreflect "$work/bapenda.pcap" --victim 198.18.3.10 --pps 8000 --seconds 5

echo "== aggregator"
"$bin/garda-aggregator" --config "$work/aggregator.toml" 2> >(sed 's/^/[aggregator] /' >&2) &
pids+=($!)
export GARDA_CONNECT="tcp://127.0.0.1:$console_port"
export GARDA_SERVER_KEY="$work/keys/aggregator.pub"
export GARDA_KEY="$work/keys/soc-analyst.key"
for _ in $(seq 50); do "$bin/garda" --timeout-ms 200 status >/dev/null 2>&1 && break; sleep 0.1; done

echo "== sensors replay their captures"
"$bin/garda-sensor" --config "$work/dukcapil.toml" --pcap "$work/dukcapil.pcap" 2> >(sed 's/^/[dukcapil] /' >&2) &
s1=$!
"$bin/garda-sensor" --config "$work/bapenda.toml" --pcap "$work/bapenda.pcap" 2> >(sed 's/^/[bapenda] /' >&2) &
s2=$!
pids+=("$s1" "$s2")
wait "$s1"; wait "$s2"

echo
echo "== garda status"
"$bin/garda" status
echo
echo "== garda history --sensor dukcapil"
"$bin/garda" history --sensor dukcapil
echo
echo "== garda history --sensor bapenda"
"$bin/garda" history --sensor bapenda
echo
echo "== garda incidents"
"$bin/garda" incidents
for id in $("$bin/garda" incidents --json | /usr/bin/python3 -c 'import json,sys; print(" ".join(i["id"] for i in json.load(sys.stdin)["incidents"]))'); do
  echo
  echo "== garda incident show $id"
  "$bin/garda" incident show "$id"
done
