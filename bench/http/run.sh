#!/usr/bin/env bash
# HTTP layer benchmark: minimal Beast server (baseline) vs nk_net, same machine, same run.
#
# usage: bench/http/run.sh [build-dir]     (default: build)
# env:   DURATION (default 10s), RUNS (3), CONNECTIONS ("64 256"), IO_THREADS (nproc),
#        WRK_THREADS (2)
# Builds bench_http_minimal_beast and bench_http_net_echo if needed, then runs
# wrk against each server (POST /v2/event with a small JSON body) and prints
# requests/s, p50 and p99 per run, the means, and the ratio net / baseline.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/bench/lib.sh"
wrk_settings "64 256" "${1:-}"
io_threads="${IO_THREADS:-$(nproc)}"

cmake --build "$build" --target bench_http_minimal_beast bench_http_net_echo -j2 >/dev/null
bin="$build/bin"

lua="$(mktemp --suffix=.lua)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -f "$lua"
}
trap cleanup EXIT
cat >"$lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"name":"bench","properties":{"k":"v"}}'
wrk.headers["Content-Type"] = "application/json"
LUA


# bench <name> <port> <connections> -> prints a line per run, sets $mean_rps
bench() {
    local name=$1 port=$2 conns=$3 sum=0
    for r in $(seq "$runs"); do
        local out rps p50 p99
        out="$(wrk -t"$wrk_threads" -c"$conns" -d"$duration" --latency -s "$lua" "http://127.0.0.1:$port/v2/event")"
        rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
        p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
        p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
        printf '  %-22s c=%-4s run %d: %10.0f req/s   p50 %7s ms   p99 %7s ms\n' "$name" "$conns" "$r" "$rps" "$p50" "$p99"
        sum="$(awk -v a="$sum" -v b="$rps" 'BEGIN {print a + b}')"
    done
    mean_rps="$(awk -v s="$sum" -v n="$runs" 'BEGIN {printf "%.0f", s / n}')"
}

start() {  # start <port> <command...>; appends the pid
    local port=$1; shift
    "$@" >/dev/null 2>&1 &
    pids+=($!)
    wait_port "$port"
}

p_shared="$(free_port)"; start "$p_shared" "$bin/bench_http_minimal_beast" "$p_shared" "$io_threads" shared
p_pinned="$(free_port)"; start "$p_pinned" "$bin/bench_http_minimal_beast" "$p_pinned" "$io_threads" pinned
p_net="$(free_port)";    start "$p_net" "$bin/bench_http_net_echo" "$p_net" "$io_threads"

echo "HTTP layer: POST /v2/event -> {} on loopback; $(nproc) cores, io threads $io_threads, wrk -t$wrk_threads -d$duration, $runs runs"
for c in $connections; do
    bench "beast (shared+strand)" "$p_shared" "$c"; shared=$mean_rps
    bench "beast (pinned)" "$p_pinned" "$c"; pinned=$mean_rps
    bench "nk_net" "$p_net" "$c"; net=$mean_rps
    awk -v c="$c" -v s="$shared" -v p="$pinned" -v n="$net" 'BEGIN {
        printf "c=%s means: baseline(shared) %d, beast pinned %d, nk_net %d req/s; nk_net/baseline = %.2f, pinned/shared = %.2f\n\n", c, s, p, n, n / s, p / s }'
done
