#!/usr/bin/env bash
# Two nkhost nodes on one PostgreSQL database: how long a logout on node A takes to be refused
# on node B (revocation propagation, docs/scale-out.md). Baseline: the round trip of one
# GET /v2/account on node B. Prints the median and the worst of N logouts.
#   bench/cluster/run.sh <build dir> [logouts=20]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
build=${1:?build dir}
n=${2:-20}
nkhost=$build/bin/nkhost
start_postgres
db=$(create_database nk_bench_cluster)
"$nkhost" migrate up --database.address "$db" >/dev/null
work=$(mktemp -d)
pa=$(free_port) pb=$(free_port)
"$nkhost" --name bench-a --socket.address 127.0.0.1 --socket.port "$pa" --data_dir "$work/a" \
    --database.address "$db" --logger.level warn >"$work/a.log" 2>&1 &
a=$!
"$nkhost" --name bench-b --socket.address 127.0.0.1 --socket.port "$pb" --data_dir "$work/b" \
    --database.address "$db" --logger.level warn >"$work/b.log" 2>&1 &
b=$!
cleanup() { kill "$a" "$b" 2>/dev/null; wait "$a" "$b" 2>/dev/null; rm -rf "$work"; stop_postgres; }
trap cleanup EXIT
wait_port "$pa"; wait_port "$pb"
python3 - "$pa" "$pb" "$n" <<'PY'
import json, statistics, sys, time, http.client
pa, pb, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ca, cb = http.client.HTTPConnection("127.0.0.1", pa), http.client.HTTPConnection("127.0.0.1", pb)
def call(c, method, path, body=None, headers={}):
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse(); data = r.read(); return r.status, data
basic = {"Authorization": "Basic ZGVmYXVsdGtleTo=", "Content-Type": "application/json"}
rtt, prop = [], []
for i in range(n):
    s, body = call(ca, "POST", "/v2/account/authenticate/device?create=true",
                   json.dumps({"id": f"bench-cluster-device-{i:04d}"}), basic)
    tok = json.loads(body)["token"]
    bearer = {"Authorization": "Bearer " + tok}
    t = time.perf_counter(); s, _ = call(cb, "GET", "/v2/account", headers=bearer)
    rtt.append(time.perf_counter() - t); assert s == 200
    call(ca, "POST", "/v2/session/logout", "{}", {**bearer, "Content-Type": "application/json"})
    t = time.perf_counter()
    while True:
        s, _ = call(cb, "GET", "/v2/account", headers=bearer)
        if s == 401: break
        if time.perf_counter() - t > 10: raise SystemExit("never refused on node B")
    prop.append(time.perf_counter() - t)
ms = lambda v: v * 1000
print(f"revocation propagation A -> B over {n} logouts: median {ms(statistics.median(prop)):.1f} ms, "
      f"worst {ms(max(prop)):.1f} ms (target <= 1000 ms); baseline GET /v2/account on B "
      f"{ms(statistics.median(rtt)):.2f} ms (x{statistics.median(prop)/statistics.median(rtt):.1f})")
PY
