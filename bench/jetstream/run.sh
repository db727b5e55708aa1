#!/usr/bin/env bash
# Events from HTTP to a NATS JetStream ack.
#
# Starts, on loopback, nats-server with JetStream (its own store in a temp dir) and two nkhost
# servers, each with its own SQLite data dir: one with only jetstream.so in its runtime.path,
# publishing every event to the stream, and one without any plugin (the baseline). Then, RUNS
# times, drives POST /v2/event with a Bearer token through wrk at CONNECTIONS connections for
# DURATION against each server in turn. The wrk script sets the request only (no response()
# callback: it would slow wrk down); wrk counts non-2xx responses itself.
#
# The JetStream figure is events/s from HTTP to the JetStream ack: the events JetStream
# acknowledged during the run (the plugin's jetstream_events_published, read from /metrics every
# ~100 ms during and after the load) divided by the time from the load's start to the first
# sample that shows the final count (the last ack, to within one sample). The count is final
# once wrk has finished, nothing is queued, buffered or in flight, and it has not moved for half
# a second. The baseline figure is wrk's requests/s against the server without plugins.
#
# Prints each run, then one line with the medians:
#   jetstream medians: published <x> events/s (accepted <y> req/s), baseline without plugins
#   <z> req/s, dropped <d>
# (dropped: the plugin's jetstream_events_dropped over all runs, 0 unless something is wrong).
# Each run also prints the CPU time the servers used: nkhost without plugins during its load,
# nkhost with jetstream.so and nats-server from the load start to the last ack.
# Exits 1 when an event was dropped, or fewer were published than wrk saw accepted.
#
# usage: bench/jetstream/run.sh [build-dir]   (default: build; use a Release build, e.g.
#        build-bench). env: DURATION (10s), RUNS (3), CONNECTIONS (64), WRK_THREADS (2),
#        SETTLE_SEC (120: how long to wait for the last ack after the load), NKHOST_ARGS
#        (extra nkhost options for both servers)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/bench/lib.sh"
wrk_settings "64" "${1:-}"
settle_sec="${SETTLE_SEC:-120}"

nats_server=""
for b in /usr/sbin/nats-server /usr/bin/nats-server; do [[ -x $b ]] && nats_server=$b && break; done
[[ -n $nats_server ]] || { echo "nats-server is not installed (scripts/bootstrap installs it)" >&2; exit 1; }
cmake --build "$build" --target nkhost jetstream -j"$(nproc)" >/dev/null
[[ -f $build/plugins/jetstream.so ]] ||
    { echo "$build/plugins/jetstream.so was not built (libnats-dev missing?)" >&2; exit 1; }

work="$(mktemp -d /tmp/nkhost-bench-jetstream-XXXXXX)"
pids=()
wrk_pid=""
cleanup() {
    [[ -n $wrk_pid ]] && kill "$wrk_pid" 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# NATS with JetStream; ready when its monitoring endpoint says JetStream is up.
p_nats="$(free_port)"; p_nats_mon="$(free_port)"
"$nats_server" -js -a 127.0.0.1 -p "$p_nats" -m "$p_nats_mon" -sd "$work/nats-store" \
    -l "$work/nats.log" & pids+=($!)
nats_pid=$!
for i in $(seq 300); do
    [[ "$(curl -s "http://127.0.0.1:$p_nats_mon/healthz?js-enabled-only=true")" == *'"ok"'* ]] && break
    ((i == 300)) && { echo "nats-server did not start: $(cat "$work/nats.log")" >&2; exit 1; }
    sleep 0.1
done

# start_nkhost <name> <runtime.path> [options...]: sets p_api and p_metrics to its ports.
start_nkhost() {
    local name=$1 modules=$2
    shift 2
    p_api="$(free_port)"; p_metrics="$(free_port)"
    mkdir -p "$work/$name"
    "$build/bin/nkhost" --socket.address 127.0.0.1 --socket.port "$p_api" --data_dir "$work/$name" \
        --runtime.path "$modules" --metrics.prometheus_port "$p_metrics" --logger.level warn \
        --session.token_expiry_sec 86400 "$@" ${NKHOST_ARGS:-} >"$work/$name.log" 2>&1 &
    pids+=($!)
    nk_pid=$!
    wait_port "$p_api"; wait_port "$p_metrics"
}
mkdir -p "$work/modules-js" "$work/modules-none"
cp "$build/plugins/jetstream.so" "$work/modules-js/"
start_nkhost js "$work/modules-js" --runtime.env "JETSTREAM_URL=nats://127.0.0.1:$p_nats"
p_js=$p_api p_js_metrics=$p_metrics js_pid=$nk_pid
start_nkhost base "$work/modules-none"
p_base=$p_api base_pid=$nk_pid
# The plugin reports its gauges every 100 ms once it runs.
for i in $(seq 100); do
    curl -s "http://127.0.0.1:$p_js_metrics/" | grep -q '^nkhost_custom_jetstream_events_buffered' && break
    ((i == 100)) && { echo "nkhost did not load jetstream.so: $(cat "$work/js.log")" >&2; exit 1; }
    sleep 0.1
done

event_wrk_script "$p_js" "$work/js.lua"
event_wrk_script "$p_base" "$work/base.lua"

# sample: "published dropped pending" of the JetStream server, pending = events queued in the
# server, buffered in the plugin or sent without an ack yet.
sample() {
    curl -s "http://127.0.0.1:$p_js_metrics/" | awk '
        /^nkhost_custom_jetstream_events_published[ {]/ { p += $NF }
        /^nkhost_custom_jetstream_events_dropped[ {]/ { d += $NF }
        /^nkhost_custom_jetstream_events_(buffered|in_flight)[ {]/ { q += $NF }
        /^nkhost_event_queue_depth[ {]/ { q += $NF }
        END { printf "%d %d %d\n", p, d, q }'
}
# cpu <pid>: CPU time (user + system) of that process so far, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"
# cpu_line <ticks> <events> -> "<s> s (<us> us per event)"
cpu_line() { awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN {printf "%.1f s (%.0f us per event)", t / hz, n ? t / hz / n * 1e6 : 0}'; }

# wrk_result <wrk output>: "req/s accepted" (accepted = responses minus non-2xx/3xx)
wrk_result() {
    awk '/^Requests\/sec:/ {rps = $2} /requests in/ {n = $1} /Non-2xx or 3xx responses:/ {bad = $NF}
         END {print rps + 0, n - bad}' "$1"
}

echo "POST /v2/event -> jetstream.so -> NATS JetStream ack (nats-server $("$nats_server" --version | awk '{print $NF}'), file storage)"
echo "vs the same load on nkhost without plugins; $(nproc) cores shared by nkhost, nats-server and wrk (-t$wrk_threads), $connections connections, $runs runs of $duration"
pub_rates=(); acc_rates=(); base_rates=()
dropped_total=0; short=0
for r in $(seq "$runs"); do
    c_base=$(cpu "$base_pid")
    wrk -t"$wrk_threads" -c"$connections" -d"$duration" -s "$work/base.lua" \
        "http://127.0.0.1:$p_base/v2/event" >"$work/wrk-base.out"
    read -r b_rps b_acc < <(wrk_result "$work/wrk-base.out")
    base_rates+=("$b_rps")
    c_base=$(($(cpu "$base_pid") - c_base))

    read -r p0 d0 _ < <(sample)
    c_js=$(cpu "$js_pid"); c_nats=$(cpu "$nats_pid")
    t0=$EPOCHREALTIME
    wrk -t"$wrk_threads" -c"$connections" -d"$duration" -s "$work/js.lua" \
        "http://127.0.0.1:$p_js/v2/event" >"$work/wrk-js.out" &
    wrk_pid=$!
    # Poll until wrk is done and the published count is final.
    last_p=-1; t_last=$t0; still=0; wrk_done=0
    while :; do
        sleep 0.1
        t=$EPOCHREALTIME
        kill -0 "$js_pid" 2>/dev/null ||
            { echo "nkhost with jetstream.so exited: $(tail -20 "$work/js.log")" >&2; exit 1; }
        read -r p d q < <(sample)
        if ((p != last_p)); then last_p=$p; t_last=$t; still=0; else still=$((still + 1)); fi
        if ((!wrk_done)) && ! kill -0 "$wrk_pid" 2>/dev/null; then
            wait "$wrk_pid"; wrk_pid=""; wrk_done=1; t_wrk=$t
        fi
        ((wrk_done && q == 0 && still >= 5)) && break
        if ((wrk_done)) && awk -v a="$t" -v b="$t_wrk" -v s="$settle_sec" 'BEGIN {exit !(a - b > s)}'; then
            echo "  run $r: the published count did not settle within ${settle_sec} s after the load" \
                 "(published $((p - p0)), pending $q)" >&2
            exit 1
        fi
    done
    c_js=$(($(cpu "$js_pid") - c_js)); c_nats=$(($(cpu "$nats_pid") - c_nats))
    read -r a_rps accepted < <(wrk_result "$work/wrk-js.out")
    published=$((last_p - p0)); dropped=$((d - d0))
    dropped_total=$((dropped_total + dropped))
    ((published >= accepted)) || short=1
    secs="$(awk -v a="$t_last" -v b="$t0" 'BEGIN {printf "%.2f", a - b}')"
    rate="$(awk -v n="$published" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')"
    pub_rates+=("$rate"); acc_rates+=("$a_rps")
    printf '  run %d  baseline (no plugin) %7.0f req/s | jetstream: accepted %8d (%7.0f req/s), published %8d, dropped %d, last ack %s s after the load start -> %7.0f events/s\n' \
        "$r" "$b_rps" "$accepted" "$a_rps" "$published" "$dropped" "$secs" "$rate"
    echo "         CPU: nkhost without plugins $(cpu_line "$c_base" "$b_acc"); with jetstream.so" \
         "$(cpu_line "$c_js" "$published"), nats-server $(cpu_line "$c_nats" "$published")"
done

pub="$(printf '%s\n' "${pub_rates[@]}" | median)"
acc="$(printf '%s\n' "${acc_rates[@]}" | median)"
base="$(printf '%s\n' "${base_rates[@]}" | median)"
awk -v p="$pub" -v a="$acc" -v b="$base" -v d="$dropped_total" 'BEGIN {
    printf "jetstream medians: published %.0f events/s (accepted %.0f req/s), baseline without plugins %.0f req/s, dropped %d; published/baseline = %.2f\n", p, a, b, d, p / b }'
if ((dropped_total > 0 || short)); then
    echo "published == accepted: NO"; exit 1
fi
echo "published == accepted: yes"
