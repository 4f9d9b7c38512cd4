#!/usr/bin/env bash
# Stream throughput of two `insikt serve` processes against one (same
# database shape, one consumer group each run) over six imports' streams of
# N statements each (default 50,000); prints both rates and their ratio.
# Needs scripts/services.sh up. Usage: scripts/bench.sh scale [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/services.sh up >/dev/null
cargo build --release --locked -q
INSIKT_BENCH_BIN=target/release/insikt cargo run --release --locked --quiet --example bench_scale -- "${1:-50000}"
