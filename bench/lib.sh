# Shell helpers shared by the wrk-driven benchmarks (source it).

# wrk_settings <default connections> [build-dir]: what every wrk-driven benchmark reads from its
# argument and environment: build (default $root/build), duration (DURATION, 10s), runs (RUNS,
# 3), connections (CONNECTIONS), wrk_threads (WRK_THREADS, 2). Exits 1 when wrk is missing.
wrk_settings() {
    connections="${CONNECTIONS:-$1}"
    build="${2:-$root/build}"
    duration="${DURATION:-10s}"
    runs="${RUNS:-3}"
    wrk_threads="${WRK_THREADS:-2}"
    command -v wrk >/dev/null || { echo "wrk is not installed (scripts/bootstrap installs it)" >&2; exit 1; }
}

# event_wrk_script <api port> <file>: writes wrk's script for POST /v2/event (a level_up event
# with two properties) with a session token of a device authenticated on that server. No
# per-response callback: it would slow wrk, which shares the cores.
event_wrk_script() {
    local token
    token="$(curl -s -u defaultkey: -d '{"id":"bench-device-0001"}' \
        "http://127.0.0.1:$1/v2/account/authenticate/device?create=true" |
        sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
    [[ -n $token ]] || { echo "no session token from the server on port $1" >&2; exit 1; }
    cat >"$2" <<LUA
wrk.method = "POST"
wrk.body = '{"name":"level_up","properties":{"level":"4","hero":"ada"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
}

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# wait_port <port>: until something accepts on 127.0.0.1:<port> (10 s), else exit 1.
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server on port $1 did not start" >&2; exit 1
}

# to_ms "1.23ms" | "850.00us" | "1.02s" -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "%s", v }'
}

# start_postgres: a PostgreSQL server for this run in a temp dir on a free loopback port (as the
# postgres user when running as root: initdb refuses root), stopped when the script exits.
# Sets PG_ADDRESS_PREFIX (nkhost@127.0.0.1:<port>/); create_database <name> prints the address
# of a new database.
start_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [[ -x $bin/initdb ]] || { echo "PostgreSQL not installed (scripts/bootstrap)" >&2; exit 1; }
    PG_DIR=$(mktemp -d /tmp/nkhost-bench-pg-XXXXXX)
    PG_PORT=$(free_port)
    PG_AS=()
    if [[ $(id -u) == 0 ]]; then chown postgres "$PG_DIR"; PG_AS=(runuser -u postgres --); fi
    "${PG_AS[@]}" "$bin/initdb" -D "$PG_DIR/data" -U nkhost -A trust -E UTF8 --locale=C --no-sync \
        --no-instructions >/dev/null
    "${PG_AS[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -o \
        "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400" start >/dev/null
    PG_BIN=$bin
    PG_ADDRESS_PREFIX="nkhost@127.0.0.1:$PG_PORT/"
    trap stop_postgres EXIT
}
stop_postgres() {
    [[ -n ${PG_DIR:-} ]] || return 0
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_DIR=
}
create_database() {
    "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U nkhost -d postgres -c "CREATE DATABASE $1" >/dev/null
    echo "${PG_ADDRESS_PREFIX}$1"
}
