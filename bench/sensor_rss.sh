#!/usr/bin/env bash
# Peak RSS of garda-sensor while one window sees 10^6 distinct sources.
#   bench/sensor_rss.sh [BUILD_DIR]
# Writes a capture of 10^6 SYNs, each from a different IPv6 source in the
# documentation range 2001:db8::/32, toward one victim, all within one 1 s
# window (the file is replayed offline: nothing is sent anywhere), replays it
# with `garda-sensor --offline`, and prints the peak RSS from /usr/bin/time,
# beside the RSS of the same replay with a capture of 1000 sources.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build}/bin
work=$(mktemp -d /tmp/garda-rss.XXXXXX)
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 - "$work" <<'PY'
import struct, sys
work = sys.argv[1]
def write(path, sources, packets):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))  # ns pcap, Ethernet
        eth = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x86\xdd"
        dst = bytes.fromhex("20010db8000200000000000000000010")
        base = 1_800_000_000
        for i in range(packets):
            src = bytes.fromhex("20010db8ffff") + (i % sources).to_bytes(10, "big")
            tcp = struct.pack("!HHIIBBHHH", 1024 + i % 60000, 80, i, 0, 0x50, 0x02, 1024, 0, 0)
            ip6 = struct.pack("!IHBB", 0x60000000, len(tcp), 6, 64) + src + dst
            frame = eth + ip6 + tcp
            f.write(struct.pack("<IIII", base, (i * 900) % 1_000_000_000, len(frame), len(frame)))
            f.write(frame)
write(f"{work}/many.pcap", 1_000_000, 1_000_000)
write(f"{work}/few.pcap", 1_000, 1_000_000)
PY
cat > "$work/sensor.toml" <<TOML
[sensor]
id = "rss"
protected = ["2001:db8:2::/48"]
[capture]
source = "pcap"
window_ms = 1000
TOML
for kind in few many; do
  /usr/bin/time -f "%M" -o "$work/$kind.rss" "$bin/garda-sensor" --config "$work/sensor.toml" \
    --offline --pcap "$work/$kind.pcap" --summaries-out "$work/$kind.jsonl" 2>/dev/null
  distinct=$(/usr/bin/python3 -c "import json,sys; print(max(v['distinct_sources'] for l in open(sys.argv[1]) for v in json.loads(l)['victims']))" "$work/$kind.jsonl")
  echo "sources_$kind peak_rss_kib=$(cat "$work/$kind.rss") distinct_estimate=$distinct"
done
