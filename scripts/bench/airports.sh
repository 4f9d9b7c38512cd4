#!/usr/bin/env bash
# Airports upload benchmark (prints figures; never passes or fails on them).
#
# Against a scratch database, in one run: uploads data/airports.csv through
# the HTTP API (POST /airports/upload, a release build) RUNS times, and loads
# the same file RUNS times with `psql \copy` into a scratch table of the same
# shape (same generated point, constraints and indexes). Each load starts from
# an empty table; each time is the client's wall clock for the whole request.
# Prints both medians and their ratio (target: upload/copy <= 1.3).
#
# Usage: scripts/bench.sh airports [RUNS]   (needs curl and psql)
set -euo pipefail
cd "$(dirname "$0")/../.."

runs="${1:-10}"
csv=data/airports.csv
admin_url="${INSIKT_BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="insikt_bench_airports_$$"
db_url="${admin_url%/*}/${db}"
port="${INSIKT_BENCH_PORT:-18$((RANDOM % 900 + 100))}"
url="http://127.0.0.1:${port}"

command -v curl >/dev/null || { echo "the benchmark needs curl (apt-get install curl)" >&2; exit 1; }
command -v psql >/dev/null || { echo "the benchmark needs psql (scripts/services.sh up)" >&2; exit 1; }

# The same build as the other benchmarks: building an example unifies the
# dev-dependencies' features into the library, so a bare `cargo build
# --release` would rebuild it (minutes) each time one follows the other.
cargo build --release --locked --quiet --bin insikt --example citizens_bench
bin=target/release/insikt

server=""
cleanup() {
  if [[ -n "$server" ]]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

export INSIKT_DATABASE_URL="$db_url" INSIKT_LOG=warn INSIKT_SECRET=bench
"$bin" migrate >/dev/null
"$bin" serve --listen "127.0.0.1:${port}" &
server=$!
for _ in $(seq 1 100); do
  curl -fs "${url}/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done

sql() { psql "$db_url" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
sql "CREATE TABLE airports_copy (LIKE airports INCLUDING ALL)"
columns="name, city, country, iata, icao, latitude, longitude, altitude, timezone, dst, tz, type, source"

now_ns() { date +%s%N; }

upload_once() {
  sql "TRUNCATE airports RESTART IDENTITY"
  local start end status
  start=$(now_ns)
  status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: text/csv' \
    --data-binary "@${csv}" "${url}/airports/upload")
  end=$(now_ns)
  [[ "$status" == 201 ]] || { echo "upload answered ${status}" >&2; exit 1; }
  echo $(((end - start) / 1000))
}

copy_once() {
  sql "TRUNCATE airports_copy"
  local start end
  start=$(now_ns)
  psql "$db_url" -qX -v ON_ERROR_STOP=1 \
    -c "\\copy airports_copy (${columns}) FROM '${csv}' WITH (FORMAT csv, HEADER true, NULL '\\N')"
  end=$(now_ns)
  echo $(((end - start) / 1000))
}

# Median of microsecond figures on stdin, in milliseconds.
median_ms() {
  sort -n | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.1f", m / 1000 }'
}

rows=$(($(wc -l <"$csv") - 1))
echo "airports upload benchmark: ${rows} rows ($(du -h "$csv" | cut -f1)), ${runs} runs each, after one warm-up"
upload_once >/dev/null
copy_once >/dev/null
uploads=()
copies=()
for _ in $(seq 1 "$runs"); do
  uploads+=("$(upload_once)")
  copies+=("$(copy_once)")
done
[[ "$(sql 'SELECT count(*) FROM airports')" == "$rows" ]] || { echo "upload stored a wrong row count" >&2; exit 1; }

upload_ms=$(printf '%s\n' "${uploads[@]}" | median_ms)
copy_ms=$(printf '%s\n' "${copies[@]}" | median_ms)
echo "upload times (ms):      $(printf '%s\n' "${uploads[@]}" | awk '{ printf "%.1f ", $1 / 1000 }')"
echo "psql \\copy times (ms):  $(printf '%s\n' "${copies[@]}" | awk '{ printf "%.1f ", $1 / 1000 }')"
echo "median POST /airports/upload: ${upload_ms} ms"
echo "median psql \\copy:            ${copy_ms} ms"
awk -v u="$upload_ms" -v c="$copy_ms" 'BEGIN { printf "ratio upload/copy: %.2f (target <= 1.3)\n", u / c }'
