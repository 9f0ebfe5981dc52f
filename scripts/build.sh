#!/usr/bin/env bash
# Configures and builds Garda into a build folder.
#   scripts/build.sh [BUILD_DIR] [extra cmake args...]
# Default BUILD_DIR is build/ (RelWithDebInfo). Uses Ninja, two jobs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build}
shift || true
cmake -S "$root" -B "$dir" -G Ninja "$@" >/dev/null
ninja -C "$dir" -j "${GARDA_JOBS:-2}"
