#!/usr/bin/env bash
# Detection figures end to end, through garda-sensor (fast pcap replay),
# garda-aggregator and the garda console on loopback:
#   bench/detect_figures.sh [BUILD_DIR]        (default <repo>/build)
# (a) detection latency, in windows and in ms of data time from the first
#     attack packet to the end of the window that opened the incident, for a
#     SYN flood and a DNS reflection (scripts/gen_capture.py, a hard and a
#     near-floor rate) at window_ms 1000 and 250;
# (b) false positives: incidents per sensor-day on the benign and slow
#     captures of the shared set ($GARDA_SHARED_DATA/pcaps, MANIFEST.tsv) and
#     a synthetic 24 h benign day (gen_capture.py normalday), with the default
#     [detect] settings and with every floor at a tenth.
# Prints two tables. Figures, not a test: nothing here passes or fails.
# Environment: GARDA_SHARED_DATA (default <repo>/../shared/data),
# GARDA_FIGURES_DAY_HOURS (24), GARDA_FIGURES_KEEP=1 keeps the temp dir.
# Takes a few minutes (the synthetic day is 86400 summaries, twice).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec /usr/bin/python3 "$root/bench/detect_figures.py" "${1:-$root/build}"
