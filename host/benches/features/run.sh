#!/usr/bin/env bash
# The feature store against its peers, same box, same data (make_data.py):
#
#   1. batch ingestion of a 1M-row × 22-column CSV: `sluice features ingest`
#      vs DuckDB writing the same CSV as Parquet, and Feast materializing the
#      same rows (Parquet) into its Redis online store;
#   2. online lookups over HTTP with wrk (a random entity per request): Sluice
#      `GET /v1/features/...` vs the same node's `/healthz` (a request that
#      does nothing) vs `feast serve` on Redis, at 1 and 16 connections, and
#      100 entities per call;
#   3. point-in-time export of 100k entity rows against 10M history rows:
#      `sluice features export` vs DuckDB's ASOF join (the README's query) on
#      Sluice's own Hive history vs Feast's get_historical_features (dask).
#
# Wall time and peak RSS from /usr/bin/time; results are Markdown rows for
# BENCHMARKS.md. Needs wrk and redis-server (installed with apt-get if
# missing) and a venv with Feast, DuckDB (created on first run).
#
#   host/benches/features/run.sh [SECONDS] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/../../.."
source host/benches/wrk_row.sh
duration="${1:-10}"
work="${2:-$HOME/.cache/sluice/bench/features}"
here=host/benches/features
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
# The test suite's build (one feature set): `sluice` with no rebuild after a test run.
cargo test --release --workspace --no-run -q 2>/dev/null
sluice="$CARGO_TARGET_DIR/release/sluice"
command -v wrk >/dev/null && command -v redis-server >/dev/null \
  || apt-get install -y -q wrk redis-server >/dev/null
venv="$HOME/.cache/sluice/bench/venv"
if ! "$venv/bin/python" -c 'import feast, duckdb' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'feast[redis]==0.67.0' duckdb==1.5.6
fi
python="$venv/bin/python"
data="$work/data"
[ -f "$data/entities.csv" ] || "$python" "$here/make_data.py" "$data"
export RUST_LOG=warn

# `timed COMMAND...`: runs it, prints "seconds max_rss_MiB".
timed() {
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }
  awk '{ printf "%.2f %.0f\n", $1, $2 / 1024 }' "$work/time"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "## ingest: 1,000,000 rows × 22 columns (3 runs each, median; peak RSS of the last)"
echo "| system | seconds | rows/s | peak RSS MiB |"
echo "|---|---|---|---|"
runs=()
for _ in 1 2 3; do
  rm -rf "$work/sluice"
  "$sluice" features apply "$data/table.toml" --data "$work/sluice" >/dev/null
  runs+=("$(timed "$sluice" features ingest user_stats "$data/rows.csv" --data "$work/sluice")")
done
row() { # NAME RUNS...
  local name="$1"; shift
  local s; s="$(printf '%s\n' "$@" | awk '{print $1}' | median)"
  echo "| $name | $s | $(awk -v s="$s" 'BEGIN { printf "%.0f", 1e6 / s }') | $(awk '{print $2}' <<<"${!#}") |"
}
row "sluice features ingest (CSV → Parquet history + online snapshot)" "${runs[@]}"
cat >"$work/copy.py" <<PY
import duckdb
duckdb.sql("COPY (SELECT * FROM read_csv('$data/rows.csv')) TO '$work/duckdb.parquet'")
PY
runs=()
for _ in 1 2 3; do
  runs+=("$(timed "$python" "$work/copy.py")")
done
row "DuckDB 1.5.6: COPY read_csv → Parquet (2 threads)" "${runs[@]}"

redis_port=16379
redis-server --port "$redis_port" --save '' --appendonly no --daemonize no >/dev/null &
redis=$!
"$sluice" serve --data "$work/sluice" --listen 127.0.0.1:18080 >/dev/null &
server=$!
trap 'kill $server $redis ${feast:-} 2>/dev/null; true' EXIT
rm -rf "$work/feast"
"$python" "$here/feast_repo.py" write "$work/feast" "$data" "$redis_port"
(cd "$work/feast" && "$venv/bin/feast" apply >/dev/null 2>&1)
runs=()
for _ in 1 2 3; do
  redis-cli -p "$redis_port" flushall >/dev/null
  runs+=("$(cd "$work/feast" && timed "$venv/bin/feast" materialize --views user_stats 2025-12-01T00:00:00 2026-03-01T00:00:00)")
done
row "Feast 0.67 materialize (Parquet → Redis, dask)" "${runs[@]}"

# Both answer the same values for one entity.
until curl -sf http://127.0.0.1:18080/healthz >/dev/null; do sleep 0.1; done
"$venv/bin/feast" --chdir "$work/feast" serve -p 16566 --no-access-log -w 2 >/dev/null 2>&1 &
feast=$!
until curl -sf http://127.0.0.1:16566/health >/dev/null; do sleep 0.2; done
features="$(seq -f 'user_stats:f%02g' 0 19 | paste -sd, | sed 's/[^,]*/"&"/g')"
"$python" - "$features" <<'PY'
import json, sys, urllib.request
features = json.loads("[" + sys.argv[1] + "]")
def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
sluice = json.load(urllib.request.urlopen("http://127.0.0.1:18080/v1/features/user_stats/u4242"))["features"]
feast = post("http://127.0.0.1:16566/get-online-features",
             {"features": features, "entities": {"user_id": ["u4242"]}})
values = {n.split("__")[-1].split(":")[-1]: r["values"][0]
          for n, r in zip(feast["metadata"]["feature_names"], feast["results"])}
for name, value in sluice.items():
    other = values[name]
    same = abs(value - other) < 1e-4 * max(1, abs(value)) if isinstance(value, float) else value == other
    assert same, (name, value, other)
print(f"same answer for u4242 from both ({len(sluice)} features)", file=sys.stderr)
PY

cat >"$work/one.lua" <<'LUA'
math.randomseed(7)
request = function()
  return wrk.format("GET", "/v1/features/user_stats/u" .. math.random(0, 99999))
end
LUA
cat >"$work/healthz.lua" <<'LUA'
request = function() return wrk.format("GET", "/healthz") end
LUA
cat >"$work/hundred.lua" <<'LUA'
math.randomseed(7)
request = function()
  local keys = {}
  for i = 1, 100 do keys[i] = '"u' .. math.random(0, 99999) .. '"' end
  return wrk.format("POST", "/v1/features/user_stats/lookup", {["Content-Type"] = "application/json"},
    '{"entities": [' .. table.concat(keys, ",") .. ']}')
end
LUA
cat >"$work/feast_one.lua" <<LUA
math.randomseed(7)
request = function()
  return wrk.format("POST", "/get-online-features", {["Content-Type"] = "application/json"},
    '{"features": [$features], "entities": {"user_id": ["u' .. math.random(0, 99999) .. '"]}}')
end
LUA
cat >"$work/feast_hundred.lua" <<LUA
math.randomseed(7)
request = function()
  local keys = {}
  for i = 1, 100 do keys[i] = '"u' .. math.random(0, 99999) .. '"' end
  return wrk.format("POST", "/get-online-features", {["Content-Type"] = "application/json"},
    '{"features": [$features], "entities": {"user_id": [' .. table.concat(keys, ",") .. ']}}')
end
LUA
# Warm both (Sluice: every online partition in the cache).
wrk -t1 -c1 -d2s -s "$work/hundred.lua" http://127.0.0.1:18080 >/dev/null
wrk -t1 -c1 -d2s -s "$work/feast_one.lua" http://127.0.0.1:16566 >/dev/null
echo
echo "## online lookups over HTTP, ${duration}s per row, a random entity of 100,000 per request"
echo "| server | call | connections | requests/s | p50 | p99 |"
echo "|---|---|---|---|---|---|"
for connections in 1 16; do
  echo "| sluice serve | /healthz (does nothing) | $connections | $(wrk_row "$connections" "$duration" "$work/healthz.lua" http://127.0.0.1:18080)"
  echo "| sluice serve | 1 entity × 20 features | $connections | $(wrk_row "$connections" "$duration" "$work/one.lua" http://127.0.0.1:18080)"
  echo "| feast serve -w 2, Redis | 1 entity × 20 features | $connections | $(wrk_row "$connections" "$duration" "$work/feast_one.lua" http://127.0.0.1:16566)"
  echo "| sluice serve | 100 entities × 20 features | $connections | $(wrk_row "$connections" "$duration" "$work/hundred.lua" http://127.0.0.1:18080)"
  echo "| feast serve -w 2, Redis | 100 entities × 20 features | $connections | $(wrk_row "$connections" "$duration" "$work/feast_hundred.lua" http://127.0.0.1:16566)"
done
kill $server $feast
wait $server $feast 2>/dev/null || true

echo
echo "## point-in-time export: 100,000 entity rows × 20 features against 10,000,000 history rows"
echo "| system | seconds | peak RSS MiB |"
echo "|---|---|---|"
rm -rf "$work/history"
"$sluice" features apply "$data/history.toml" --data "$work/history" >/dev/null
result="$(timed "$sluice" features ingest user_history "$data/history.parquet" --data "$work/history")"
echo "| (sluice features ingest of the 10M-row history.parquet, 1M entities) | ${result% *} | ${result#* } |"
result="$(timed "$sluice" features export --entities "$data/entities.csv" --features user_history --out "$work/sluice-train.parquet" --data "$work/history")"
echo "| sluice features export | ${result% *} | ${result#* } |"
cat >"$work/asof.py" <<PY
import duckdb
features = ", ".join(f"CASE WHEN h.event_ts >= e.timestamp - INTERVAL 7 DAY THEN h.f{i:02} END AS f{i:02}" for i in range(20))
duckdb.sql(f"""
COPY (
  WITH history AS (
    SELECT * FROM read_parquet('$work/history/features/user_history/data/1/history/*/*.parquet', hive_partitioning = true)
  ), entities AS (
    SELECT row_number() OVER () AS n, user_id, CAST(timestamp AS TIMESTAMPTZ) AS timestamp
    FROM read_csv('$data/entities.csv')
  )
  SELECT e.user_id, e.timestamp, {features}
  FROM entities e ASOF LEFT JOIN history h ON e.user_id = h.user_id AND e.timestamp >= h.event_ts
  ORDER BY e.n
) TO '$work/duckdb-train.parquet'
""")
PY
result="$(timed "$python" "$work/asof.py")"
echo "| DuckDB 1.5.6 ASOF JOIN on Sluice's history (2 threads) | ${result% *} | ${result#* } |"
# Both found the same values.
"$python" - "$work" <<'PY'
import duckdb, sys
work = sys.argv[1]
# Row by row: both keep the entity file's order.
query = """SELECT count(*), count(f00), sum(f08), sum(f13), count_if(f16), count_if(f18 = 'DE')
           FROM '{}'"""
a = duckdb.sql(query.format(f"{work}/sluice-train.parquet")).fetchone()
b = duckdb.sql(query.format(f"{work}/duckdb-train.parquet")).fetchone()
assert a == b, (a, b)
differ = duckdb.sql(f"""
  SELECT count(*) FROM
    (SELECT row_number() OVER () AS n, user_id, f00, f08, f15, f19 FROM '{work}/sluice-train.parquet') s
    JOIN (SELECT row_number() OVER () AS n, user_id, f00, f08, f15, f19 FROM '{work}/duckdb-train.parquet') d USING (n)
  WHERE s.user_id <> d.user_id OR s.f00 IS DISTINCT FROM d.f00 OR s.f08 IS DISTINCT FROM d.f08
     OR s.f15 IS DISTINCT FROM d.f15 OR s.f19 IS DISTINCT FROM d.f19""").fetchone()[0]
assert differ == 0, f"{differ} rows differ"
print(f"same export from both: {a[0]} rows, {a[1]} with values, row by row", file=sys.stderr)
PY
if result="$(timed timeout 1800 "$python" "$here/feast_repo.py" export "$work/feast" "$data" "$work/feast-train.parquet")"; then
  echo "| Feast 0.67 get_historical_features (dask) | ${result% *} | ${result#* } |"
else
  echo "| Feast 0.67 get_historical_features (dask) | failed or over 1800 s: $(tail -1 "$work/out") | |"
fi
