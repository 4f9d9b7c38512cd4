#!/usr/bin/env bash
# Hand-over time between two `insikt serve` processes on one database: from
# SIGTERM (graceful) or SIGKILL of one to every job running on the other,
# three times each. Needs scripts/services.sh up. Usage: scripts/bench.sh handover
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/services.sh up >/dev/null
cargo build --release --locked -q
INSIKT_BENCH_BIN=target/release/insikt cargo run --release --locked --quiet --example bench_handover
