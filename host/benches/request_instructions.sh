#!/usr/bin/env bash
# Instructions a node executes per request, counted by callgrind: the same
# for the same binary and requests whatever else the machine is doing, so a
# few percent between two builds shows where wrk's throughput on a shared
# box cannot. The quickstart's pipeline (`POST /p/iris`: a stage, then the
# model with its baseline) on this build and on BASE (default 707bd73, the
# last commit before /metrics, traces and drift), REQUESTS requests on one
# keep-alive connection after a warm-up, every thread of the node counted
# (user space only: the kernel's share is not in these numbers).
#
#   host/benches/request_instructions.sh [REQUESTS] [BASE] [DUMPS]   (needs valgrind)
#
# DUMPS names a directory to keep both callgrind dumps in (now.out,
# base.out), for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/../.."
source host/benches/base_build.sh
requests="${1:-2000}"
base="${2:-707bd73}"
dumps="${3:-}"
command -v valgrind >/dev/null || { echo "request_instructions needs valgrind: apt-get install valgrind" >&2; exit 1; }
base_work
base_build "$base" "$work"
base_quickstart "$work"
export RUST_LOG=warn
body='{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
wait_up() { # PORT PID
  until curl -sf "http://127.0.0.1:$1/healthz" >/dev/null; do
    kill -0 "$2" 2>/dev/null || { echo "the node on port $1 exited" >&2; exit 1; }
    sleep 0.5
  done
}
post() { # PORT COUNT: COUNT requests on one connection
  local config="$work/curl-$1"
  for _ in $(seq "$2"); do
    printf 'url = "http://127.0.0.1:%s/p/iris"\noutput = "/dev/null"\n' "$1"
  done >"$config"
  curl -sf -X POST -H 'content-type: application/json' --data "$body" -K "$config"
}
# BINARY PORT MANIFEST_DIR NAME DUMP: deploy natively (`sluice up`), then serve the
# same store under callgrind; print NAME and instructions per request.
count() {
  "$1" up "$3" --data "$work/data-$2" --listen "127.0.0.1:$2" >/dev/null 2>&1 &
  local pid=$!
  wait_up "$2" "$pid"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  local out="$work/callgrind-$2"
  valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
    "$1" serve --data "$work/data-$2" --listen "127.0.0.1:$2" 2>"$work/valgrind-$2.log" >/dev/null &
  pid=$!
  wait_up "$2" "$pid"
  post "$2" 50
  callgrind_control --zero "$pid" >/dev/null 2>&1
  post "$2" "$requests"
  callgrind_control --dump "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  # The dump after the zero holds exactly the measured requests.
  local dump
  dump="$(ls "$out".*.* 2>/dev/null | sort | tail -1)"
  [ -n "$dump" ] || dump="$(ls "$out".* | sort | tail -1)"
  local total
  total="$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")"
  printf '| %s | %s | %d |\n' "$4" "$total" "$((total / requests))"
  [ -z "$dumps" ] || cp "$dump" "$dumps/$5.out"
}
echo "| node | instructions, $requests requests | per request |"
echo "|---|---|---|"
[ -z "$dumps" ] || mkdir -p "$dumps"
count "$work/sluice-now" 18091 examples/quickstart "$(git rev-parse --short HEAD)" now
count "$work/sluice-base" 18092 "$work/quickstart-base" "$base" base
