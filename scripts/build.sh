#!/usr/bin/env bash
# Configures and builds Garda into a build folder.
#   scripts/build.sh [BUILD_DIR] [extra cmake args...]
# Default BUILD_DIR is build/ (RelWithDebInfo). Uses Ninja, two jobs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build}
shift || true
launcher=()
if command -v ccache >/dev/null; then
  # Compiler cache under /var/cache: a rebuild on the same machine (CI reruns,
  # worktrees) reuses every object whose sources did not change.
  export CCACHE_DIR=${CCACHE_DIR:-/var/cache/garda-ccache} CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
  export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-8G}
  # With -g, ccache keys an object by the folder it is built in, so a clone in
  # another folder (CI's fresh clone) missed every object a session's build
  # had cached; this keys by the source alone. The cost: a cached object's
  # debug info names the folder it was first built in.
  export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
  if mkdir -p "$CCACHE_DIR" 2>/dev/null && [[ -w $CCACHE_DIR ]]; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
fi
cmake -S "$root" -B "$dir" -G Ninja "${launcher[@]}" "$@" >/dev/null
ninja -C "$dir" -j "${GARDA_JOBS:-2}"
