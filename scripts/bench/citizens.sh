#!/usr/bin/env bash
# Citizens imports benchmark: builds insikt in release, serves it on a fresh
# database, and runs examples/citizens_bench.rs against it (per run a new
# 10,000-citizen import asked each question once; the import's first PATCH
# apart from the later ones; medians of 5 runs on an empty database and
# after 20 more imports, EXPLAIN ANALYZE of the read queries, the service's
# peak RSS, the load average). Prints figures.
# Usage: scripts/bench.sh citizens [--runs N] [--preload N]
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ -x scripts/services.sh ]]; then
    scripts/services.sh up >/dev/null
fi

cargo build --release --locked --bin insikt --example citizens_bench

admin_url="${INSIKT_BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
database="insikt_bench_citizens_$$"
database_url="${admin_url%/*}/${database}"
port="${INSIKT_BENCH_PORT:-$((20000 + $$ % 20000))}"
log="$(mktemp -t insikt-bench-citizens.XXXXXX.log)"

target/release/insikt --listen "127.0.0.1:${port}" --database-url "$database_url" \
    --log warn migrate >/dev/null
target/release/insikt --listen "127.0.0.1:${port}" --database-url "$database_url" \
    --log warn serve >"$log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS ${database} WITH (FORCE)" >/dev/null 2>&1 || true
    rm -f "$log"
}
trap cleanup EXIT

for _ in $(seq 100); do
    if curl -fs "http://127.0.0.1:${port}/healthz" >/dev/null; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$log"; exit 1; fi
    sleep 0.1
done

target/release/examples/citizens_bench --url "http://127.0.0.1:${port}" --pid "$pid" \
    --database-url "$database_url" "$@"
echo
echo "targets (issue 13, first asks): POST < 40 ms, GET citizens < 30 ms, peak RSS < 150 MB"
echo "targets (issue 33, first asks, 10x the 2019 reference): PATCH <= 1.2 ms (first after an import), birthdays <= 1.6 ms, percentile <= 1.2 ms"
echo "(the figures are from a machine shared with other work: read them beside the load averages printed above)"
