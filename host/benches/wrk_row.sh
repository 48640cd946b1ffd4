# Sourced by the load scripts: `wrk_row CONNECTIONS DURATION LUA URL` runs
# wrk once and prints "requests/s | p50 | p99 |" (plus any errors) for a
# Markdown table row.
wrk_row() {
  local connections="$1" duration="$2" lua="$3" url="$4" threads out rps p50 p99 errors
  threads=$((connections < 2 ? 1 : 2))
  out="$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$lua" "$url")"
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  errors="$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)"
  echo "$rps | $p50 | $p99 |${errors:+ $errors}"
}
