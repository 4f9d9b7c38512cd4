#!/usr/bin/env bash
# Statement stream throughput: N statements (default 200,000) in one import's
# topic, read by (a) a bare rdkafka consumer and (b) the job storing them in
# PostgreSQL; prints both rates and their ratio. Needs scripts/services.sh up.
# Usage: scripts/bench.sh stream [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
INSIKT_LOG="${INSIKT_LOG:-warn}" cargo run --quiet --example bench_stream -- "${1:-200000}"
