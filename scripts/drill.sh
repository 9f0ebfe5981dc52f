#!/usr/bin/env bash
# The city drill, from a fresh Debian 12 machine: installs the dependencies,
# builds Garda, and runs scripts/drill.py with a scenario (default
# scripts/drill/default.toml). Needs root (network namespaces, nftables, raw
# sockets). Everything it makes is torn down on exit, Ctrl-C or failure; the
# report and logs stay in /tmp/garda-drill-<tag>/ (or --out DIR).
#
#   sudo scripts/drill.sh [--scenario FILE] [--out DIR] [--quiet]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ $(id -u) -ne 0 ]]; then
  echo "drill.sh: needs root (network namespaces, nftables): sudo $0 $*" >&2
  exit 2
fi
"$root/scripts/bootstrap.sh"
"$root/scripts/build.sh" "$root/build" >/dev/null
exec /usr/bin/python3 "$root/scripts/drill.py" --bin "$root/build/bin" "$@"
