#!/usr/bin/env bash
# Produce rate with and without Kafka transactions, same records, same run:
# N statements (default 200,000) in requests of R records (default 1,000, as
# KIP-98 measured), C requests in flight (default 1). Needs scripts/services.sh up.
# Usage: scripts/bench.sh produce [N] [R] [C]
set -euo pipefail
cd "$(dirname "$0")/../.."
INSIKT_LOG="${INSIKT_LOG:-warn}" cargo run --release --locked --quiet --example bench_produce -- \
  "${1:-200000}" "${2:-1000}" "${3:-1}"
