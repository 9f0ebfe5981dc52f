#!/usr/bin/env bash
# The one command that builds Garda and runs every test (the README's test
# command; .ci/run runs exactly this). On a fresh Debian 12 machine as root it
# installs the dependencies first.
#
#   1. scripts/bootstrap.sh          Debian packages (idempotent)
#   2. build/      RelWithDebInfo    all unit and integration tests (ctest)
#   3. build-asan/ ASan + UBSan      the same tests again under the sanitizers, but for
#                                    the packages, the rollout hosts and the browser test
#                                    (they test packaging and the page, not memory)
#   4. build-fuzz/ clang libFuzzer   each fuzz target for GARDA_FUZZ_SECONDS (default 30)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
start=$(date +%s)

if [[ $(id -u) -eq 0 ]]; then
  scripts/bootstrap.sh
else
  echo "test.sh: not root: skipping the package bootstrap (run scripts/bootstrap.sh as root once)"
fi

echo "== build (RelWithDebInfo)"
scripts/build.sh "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== tests"
ctest --test-dir build --output-on-failure --timeout 900

echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
scripts/build.sh "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DGARDA_SANITIZE=ON -DGARDA_BUILD_BENCH=OFF \
  -DGARDA_BUILD_WEB=OFF
echo "== tests under the sanitizers"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure --timeout 900 -LE "package|rollout|web"

echo "== fuzz targets (clang, libFuzzer + ASan + UBSan, ${GARDA_FUZZ_SECONDS:-30} s each)"
CC=clang CXX=clang++ scripts/build.sh "$root/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DGARDA_FUZZ=ON -DGARDA_BUILD_BENCH=OFF -DGARDA_BUILD_WEB=OFF -DGARDA_FUZZ_SECONDS="${GARDA_FUZZ_SECONDS:-30}"
ctest --test-dir build-fuzz -L fuzz --output-on-failure

echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"
