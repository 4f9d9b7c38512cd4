#!/usr/bin/env bash
# Statement stream throughput: N statements (default 200,000) in one import's
# topic, read by (a) a bare rdkafka consumer and (b) the job storing them in
# PostgreSQL; prints both rates and their ratio. Needs scripts/services.sh up.
# Built in release like the other benchmarks: in a debug build the job's Rust
# (parsing, encoding) runs unoptimised while the bare consumer is librdkafka's
# optimised C, which understates the job several times over.
# Usage: scripts/bench.sh stream [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
INSIKT_LOG="${INSIKT_LOG:-warn}" cargo run --release --locked --quiet --example bench_stream -- "${1:-200000}"
