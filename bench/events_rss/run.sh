#!/usr/bin/env bash
# RSS of the event pipeline through a flood of large events and after the drain, for ~60 KB
# events (below glibc's 128 KiB mmap threshold: the strings live in the producers' arenas) and
# ~196 KB events (above it: each string is its own mapping), with and without the byte budget
# and the post-drain malloc_trim. Each case runs in its own process.
# Usage: bench/events_rss/run.sh <build dir with bench_event_rss (a non-sanitizer build)>
set -euo pipefail
build="${1:-build-bench}"
bin="$build/bin/bench_event_rss"
[ -x "$bin" ] || bin="$build/bench/events_rss/bench_event_rss"
events=2000
budget=$((64 << 20))
for value in 60000 196000; do
    echo "## events of one ${value}-byte property"
    echo "# no byte budget (count bound only), no trim"
    "$bin" $events $value 0 0
    echo "# no byte budget, trim after the drain"
    "$bin" $events $value 0
    echo "# default byte budget (64 MiB), no trim"
    "$bin" $events $value $budget 0
    echo "# default byte budget (64 MiB), trim after the drain (the defaults)"
    "$bin" $events $value $budget
    echo "# the defaults, with glibc's fastbins turned back on (the pipeline turns them off)"
    "$bin" $events $value $budget $((8 << 20)) 4 8 1
done
