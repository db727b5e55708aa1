#!/usr/bin/env bash
# RSS of the event pipeline through a flood of ~196 KB events and after the drain, with and
# without the byte budget and the post-drain malloc_trim. Each case runs in its own process.
# Usage: bench/events_rss/run.sh <build dir with bench_event_rss (a non-sanitizer build)>
set -euo pipefail
bin="${1:-build-bench}/bench/events_rss/bench_event_rss"
events=2000 value=196000
echo "# no byte budget (count bound only), no trim: the issue's case"
"$bin" $events $value 0 0
echo "# no byte budget, trim after the drain"
"$bin" $events $value 0
echo "# default byte budget (64 MiB), no trim"
"$bin" $events $value $((64 << 20)) 0
echo "# default byte budget (64 MiB), trim after the drain (the defaults)"
"$bin" $events $value $((64 << 20))
