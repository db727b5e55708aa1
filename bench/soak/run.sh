#!/usr/bin/env bash
# Soak: SOAK_SEC seconds of mixed load on one nkhost, sampling the server's RSS every second,
# to see whether its memory levels off. The load, all at once:
#   - wrk (-t1, CONNECTIONS connections) cycling through authenticate device (existing
#     accounts), GET /v2/account, PUT /v2/account and POST /v2/event (no-op handler plugin);
#   - SOCKETS realtime sockets (node + ws, from tests/e2e), each pinging every second, CHURN
#     of them closed and re-opened every second.
# Baseline: the RSS right after startup. Prints the RSS series, then compares the mean RSS of
# the last third of the run with the third before it: "levels off" when it grew by at most
# LEVEL_PCT percent.
#
# usage: bench/soak/run.sh [build-dir]   (default: build-bench; a build without sanitizers)
# env:   SOAK_SEC (60), CONNECTIONS (8), SOCKETS (200), CHURN (10), LEVEL_PCT (2)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build-bench}"
duration="${SOAK_SEC:-60}"
conns="${CONNECTIONS:-8}"
sockets="${SOCKETS:-200}"
churn="${CHURN:-10}"
level_pct="${LEVEL_PCT:-2}"
window=$((duration / 3))
ws_dir="$root/tests/e2e/node_modules"

command -v wrk >/dev/null || { echo "wrk is not installed (scripts/bootstrap installs it)" >&2; exit 1; }
command -v node >/dev/null || { echo "node is not installed (Node.js 20)" >&2; exit 1; }
[[ -d $ws_dir/ws ]] || { echo "$ws_dir/ws is missing: run scripts/bootstrap" >&2; exit 1; }
cmake --build "$build" --target nkhost bench_noop_handler -j"$(nproc)" >/dev/null

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
source "$root/bench/lib.sh"
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

port="$(free_port)"
mkdir -p "$work/data/modules"
cp "$build/bench/events_http/bench_noop_handler.so" "$work/data/modules/"
"$build/bin/nkhost" --socket.address 127.0.0.1 --socket.port "$port" --data_dir "$work/data" \
    --logger.level warn --session.token_expiry_sec 86400 >"$work/nkhost.log" 2>&1 &
server=$!; pids+=("$server")
wait_port "$port"
sleep 1
rss_start="$(rss_kib "$server")"

# One account per device for the HTTP mix; their session tokens go into the wrk script.
devices=32
{
    echo "local tokens = {"
    for i in $(seq "$devices"); do
        curl -sf -u defaultkey: -d "{\"id\":\"soak-http-$i-device\"}" \
            "http://127.0.0.1:$port/v2/account/authenticate/device?create=true" |
            sed 's/.*"token":"\([^"]*\)".*/  "\1",/'
    done
    echo "}"
} >"$work/mix.lua"
# Requests are formatted once per thread in init(); request() only picks the next one.
cat >>"$work/mix.lua" <<'LUA'
local reqs, n = {}, 0
function init(args)
  for k, t in ipairs(tokens) do
    local bearer = { ["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json" }
    local basic = { ["Authorization"] = "Basic ZGVmYXVsdGtleTo=", ["Content-Type"] = "application/json" }
    table.insert(reqs, wrk.format("POST", "/v2/account/authenticate/device", basic,
      '{"id":"soak-http-' .. k .. '-device"}'))
    table.insert(reqs, wrk.format("GET", "/v2/account", bearer))
    table.insert(reqs, wrk.format("POST", "/v2/event", bearer,
      '{"name":"level_up","properties":{"level":"' .. k .. '","hero":"ada"}}'))
    table.insert(reqs, wrk.format("PUT", "/v2/account", bearer,
      '{"display_name":"player ' .. k .. '","location":"soak"}'))
    table.insert(reqs, wrk.format("POST", "/v2/event", bearer,
      '{"name":"match_end","properties":{"score":"' .. (k * 7) .. '"}}'))
  end
end
function request()
  n = n % #reqs + 1
  return reqs[n]
end
LUA

echo "soak: ${duration} s of mixed load on nkhost; $(nproc) cores shared with the load generators"
echo "  http: wrk -t1 -c$conns cycling authenticate device, GET /v2/account, PUT /v2/account, POST /v2/event x2"
echo "  realtime: $sockets sockets, app ping every 1 s each, $churn closed and re-opened every second"
wrk -t1 -c"$conns" -d"${duration}s" -s "$work/mix.lua" "http://127.0.0.1:$port" >"$work/wrk.out" 2>&1 &
wrk_pid=$!; pids+=("$wrk_pid")
node "$here/sockets.js" "$port" "$sockets" "$duration" "$churn" "$ws_dir" >"$work/sockets.out" 2>&1 &
node_pid=$!; pids+=("$node_pid")

samples=()
next=$(($(date +%s%N) / 1000000 + 1000))
for _ in $(seq "$duration"); do
    now=$(($(date +%s%N) / 1000000))
    ((next > now)) && sleep "$(awk -v ms=$((next - now)) 'BEGIN {printf "%.3f", ms / 1000}')"
    next=$((next + 1000))
    kill -0 "$server" 2>/dev/null || { echo "nkhost exited during the soak:" >&2; cat "$work/nkhost.log" >&2; exit 1; }
    samples+=("$(rss_kib "$server")")
done
wait "$wrk_pid" || true
wait "$node_pid" || { echo "socket load failed:" >&2; cat "$work/sockets.out" >&2; exit 1; }
rss_end="$(rss_kib "$server")"

awk '/requests in/ {sub(/,$/, "", $4); printf "  http: %s requests in %s", $1, $4} /^Requests\/sec:/ {printf ", %.0f req/s", $2}
     /Non-2xx or 3xx/ {bad = $NF} /Socket errors/ {errs = $0}
     END {printf ", non-2xx: %d%s\n", bad, errs ? " (" errs ")" : ""}' "$work/wrk.out"
echo "  $(cat "$work/sockets.out")"
echo "  server RSS every second (MiB):"
printf '%s\n' "${samples[@]}" | awk '{printf "%s%6.1f", (NR % 10 == 1) ? "   " : " ", $1 / 1024} NR % 10 == 0 {print ""} END {if (NR % 10) print ""}'
printf '%s\n' "${samples[@]}" | awk -v start="$rss_start" -v w="$window" -v d="$duration" -v pct="$level_pct" -v end="$rss_end" '
    {rss[NR] = $1; if ($1 > peak) peak = $1}
    END {
        for (i = d - 2 * w + 1; i <= d - w; i++) prev += rss[i]
        for (i = d - w + 1; i <= d; i++) last += rss[i]
        prev /= w; last /= w
        growth = 100 * (last - prev) / prev
        printf "soak RSS: after startup %.1f MiB, peak %.1f MiB, mean %d-%d s %.1f MiB, mean %d-%d s %.1f MiB (%+.1f %%), after the load %.1f MiB; levels off: %s\n",
            start / 1024, peak / 1024, d - 2 * w, d - w, prev / 1024, d - w, d, last / 1024, growth, end / 1024,
            growth <= pct ? "yes" : "NO"
    }'
