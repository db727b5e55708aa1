#!/usr/bin/env bash
# Start-to-ready: process start -> first 200 from GET /healthcheck, median of STARTS starts,
# beside a trivial process (/bin/true) and the minimal Beast server of bench/http started the
# same way, plus nkhost's graceful stop (SIGTERM -> exit).
#
# usage: bench/startup/run.sh [build-dir]   (default: build-bench; a build without sanitizers)
# env:   STARTS (10)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build-bench}"
cmake --build "$build" --target nkhost bench_http_minimal_beast bench_noop_handler -j"$(nproc)" >/dev/null
exec python3 "$here/startup.py" "$build" "${STARTS:-10}"
