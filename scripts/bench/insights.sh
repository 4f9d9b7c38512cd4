#!/usr/bin/env bash
# Insights: 10,000 residents and ~1,000,000 statements over 26 weeks sent
# through the API to a release `insikt serve`; each route's first ask after
# the last statement is stored and after a restart, against PostgreSQL's
# GROUP BY of the same import in the same run (see examples/bench_insights.rs).
# It loads the shared broker: run it under `flock -x /work/locks/services`.
# Usage: scripts/bench.sh insights [STATEMENTS]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/services.sh up >/dev/null
cargo build --release --locked --quiet --bin insikt --example bench_insights
INSIKT_BIN=target/release/insikt INSIKT_LOG="${INSIKT_LOG:-warn}" \
  target/release/examples/bench_insights "${1:-1000000}"
