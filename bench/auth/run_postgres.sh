#!/usr/bin/env bash
# bench_auth on PostgreSQL: starts a server for the run (bench/lib.sh), runs bench_auth against a
# fresh database `reps` times, stops the server.
#   bench/auth/run_postgres.sh <bin dir> <reps> [bench_auth args...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
bin=$1 reps=$2
shift 2
start_postgres
for i in $(seq "$reps"); do
    "$bin/bench_auth" --database "$(create_database "nk_bench_auth_$i")" "$@"
done
