#!/usr/bin/env bash
# What metrics, drift sketches and tracing (exporter unset) cost the
# request path: the quickstart's pipeline (`POST /p/iris`: a stage, then
# the model, pushed with its baseline) at 64
# connections on this build and on BASE (default 707bd73, the last commit
# before /metrics and traces), built from a worktree into the same target
# directory. The two nodes alternate, ROUNDS runs of SECONDS each, so both
# see the same box; the table gives each run and the median ratio.
#
#   host/benches/observe_load.sh [SECONDS] [ROUNDS] [BASE]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
source host/benches/wrk_row.sh
source host/benches/base_build.sh
duration="${1:-10}"
rounds="${2:-5}"
base="${3:-707bd73}"
command -v wrk >/dev/null || { echo "observe_load needs wrk: apt-get install wrk" >&2; exit 1; }
base_work
base_build "$base" "$work"
export RUST_LOG=warn
start() { # BINARY PORT MANIFEST_DIR: `sluice up` the quickstart, wait until it serves
  "$1" up "$3" --data "$work/data-$2" --listen "127.0.0.1:$2" >/dev/null 2>&1 &
  until curl -sf "http://127.0.0.1:$2/healthz" >/dev/null; do
    kill -0 $! 2>/dev/null || { echo "$1 up $3 failed" >&2; exit 1; }
    sleep 0.2
  done
}
# BASE predates the manifest's `baseline` key: its copy of the quickstart
# has none (and its paths made absolute).
base_quickstart "$work"
start "$work/sluice-now" 18081 examples/quickstart
start "$work/sluice-base" 18082 "$work/quickstart-base"
cat >"$work/iris.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
LUA
for port in 18081 18082; do
  curl -sf -X POST -H 'content-type: application/json' --data @<(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$work/iris.lua") \
    "http://127.0.0.1:$port/p/iris" >/dev/null
done
echo "| node | run | requests/s | p50 | p99 |"
echo "|---|---|---|---|---|"
now=() old=()
for round in $(seq "$rounds"); do
  row="$(wrk_row 64 "$duration" "$work/iris.lua" http://127.0.0.1:18081/p/iris)"
  echo "| metrics + tracing | $round | $row"
  now+=("$(cut -d' ' -f1 <<<"$row")")
  row="$(wrk_row 64 "$duration" "$work/iris.lua" http://127.0.0.1:18082/p/iris)"
  echo "| $base (neither) | $round | $row"
  old+=("$(cut -d' ' -f1 <<<"$row")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "| with / without (medians) | | $(awk -v a="$(median "${now[@]}")" -v b="$(median "${old[@]}")" 'BEGIN { printf "%.3f", a / b }') | | |"
