#!/usr/bin/env bash
# End-to-end event ingestion benchmark.
#
# Starts, on loopback, (1) the minimal Beast server from bench/http answering {} to every
# request (the ceiling), and (2) nkhost with a no-op event handler plugin; then drives
# POST /v2/event with a Bearer token through wrk at each connection count, RUNS times, and
# prints requests/s, p50/p99 per run, the medians, the ratio nkhost / ceiling, and whether
# every acknowledged event was handled (events_processed == 200 responses, from /metrics).
# The wrk script sets the request only: a Lua response() callback would slow wrk down and bias
# the throughput; wrk counts non-2xx/3xx responses itself.
#
# usage: bench/events_http/run.sh [build-dir]   (default: build; a RelWithDebInfo build
#        without sanitizers). env: DURATION (10s), RUNS (3), CONNECTIONS ("64 256"), WRK_THREADS (2),
#        NKHOST_ARGS (extra nkhost options, e.g. "--runtime.event_worker_linger_us 0")
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/bench/lib.sh"
wrk_settings "64 256" "${1:-}"

cmake --build "$build" --target nkhost bench_http_minimal_beast bench_noop_handler -j"$(nproc)" >/dev/null

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
metric() {  # metric <port> <series prefix>: sum of the matching samples
    curl -s "http://127.0.0.1:$1/" | awk -v m="$2" 'index($0, m) == 1 {s += $NF} END {printf "%d", s}'
}

# Servers.
p_base="$(free_port)"
"$build/bin/bench_http_minimal_beast" "$p_base" "$(nproc)" shared >/dev/null 2>&1 & pids+=($!)
wait_port "$p_base"

p_api="$(free_port)"; p_metrics="$(free_port)"
mkdir -p "$work/data/modules"
cp "$build/bench/events_http/bench_noop_handler.so" "$work/data/modules/"
"$build/bin/nkhost" --socket.address 127.0.0.1 --socket.port "$p_api" --data_dir "$work/data" \
    --metrics.prometheus_port "$p_metrics" --logger.level warn \
    --session.token_expiry_sec 86400 ${NKHOST_ARGS:-} >"$work/nkhost.log" 2>&1 & pids+=($!)
wait_port "$p_api"; wait_port "$p_metrics"

event_wrk_script "$p_api" "$work/event.lua"
cp "$work/event.lua" "$work/base.lua"

# run <url> <lua> <conns> -> "rps p50 p99 requests non2xx"
run() {
    local out
    out="$(wrk -t"$wrk_threads" -c"$3" -d"$duration" --latency -s "$2" "$1")"
    printf '%s %s %s %s %s\n' \
        "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")" \
        "$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")" \
        "$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")" \
        "$(awk '/requests in/ {print $1}' <<<"$out")" \
        "$(awk '/Non-2xx or 3xx responses:/ {n = $NF} END {print n + 0}' <<<"$out")"
}

echo "POST /v2/event end to end (JWT verified, JSON decoded, event enqueued and handled by a plugin)"
echo "vs a minimal Beast server answering {}; $(nproc) cores shared with wrk (-t$wrk_threads), $runs runs of $duration"
acked_total=0
for c in $connections; do
    base_rps=(); api_rps=(); api_p50=(); api_p99=()
    for r in $(seq "$runs"); do
        read -r rps p50 p99 _ _ < <(run "http://127.0.0.1:$p_base/v2/event" "$work/base.lua" "$c")
        base_rps+=("$rps")
        printf '  c=%-4s run %d  baseline %9.0f req/s  p50 %7s ms  p99 %7s ms\n' "$c" "$r" "$rps" "$p50" "$p99"
        read -r rps p50 p99 reqs non2xx < <(run "http://127.0.0.1:$p_api/v2/event" "$work/event.lua" "$c")
        api_rps+=("$rps"); api_p50+=("$p50"); api_p99+=("$p99")
        acked_total=$((acked_total + reqs - non2xx))
        printf '  c=%-4s run %d  nkhost   %9.0f req/s  p50 %7s ms  p99 %7s ms  (non-200: %s)\n' "$c" "$r" "$rps" "$p50" "$p99" "$non2xx"
    done
    b="$(printf '%s\n' "${base_rps[@]}" | median)"; a="$(printf '%s\n' "${api_rps[@]}" | median)"
    awk -v c="$c" -v b="$b" -v a="$a" -v p50="$(printf '%s\n' "${api_p50[@]}" | median)" \
        -v p99="$(printf '%s\n' "${api_p99[@]}" | median)" 'BEGIN {
        printf "c=%s medians: baseline %.0f req/s, nkhost %.0f req/s (p50 %.3f ms, p99 %.3f ms); nkhost/baseline = %.2f\n\n", c, b, a, p50, p99, a / b }'
done

# Every acknowledged event must have been handled: wait for the queue to empty.
for _ in $(seq 100); do
    [[ "$(metric "$p_metrics" nkhost_event_queue_depth)" == 0 ]] && break
    sleep 0.1
done
processed="$(metric "$p_metrics" 'nkhost_events_processed{')"
dropped="$(metric "$p_metrics" 'nkhost_events_dropped{')"
echo "acknowledged (200): $acked_total, processed: $processed, dropped: $dropped"
if [[ "$processed" -ge "$acked_total" && "$dropped" == 0 ]]; then
    echo "processed == accepted: yes"
else
    echo "processed == accepted: NO"; exit 1
fi
