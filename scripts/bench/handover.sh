#!/usr/bin/env bash
# Hand-over time between two `insikt serve` processes on one database: from
# SIGTERM (graceful) or SIGKILL of one to every job running on the other,
# a median of INSIKT_BENCH_ROUNDS (default 3) each.
# Usage: scripts/bench.sh handover [--brokers 3]
#   --brokers 3: on the three-broker cluster (scripts/services.sh up kafka
#   --brokers 3, which stops the one broker until `scripts/services.sh up`).
# INSIKT_KAFKA_SESSION_TIMEOUT (e.g. 6s) sets the instances' session timeout,
# which bounds the SIGKILL figure.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ "${1:-}" == --brokers && "${2:-}" == 3 ]]; then
  scripts/services.sh up postgres >/dev/null
  scripts/services.sh up kafka --brokers 3 >/dev/null
  base=${KAFKA_PORT_BASE:-9092}
  export INSIKT_KAFKA_BROKERS="127.0.0.1:${base},127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
  echo "on the three-broker cluster ${INSIKT_KAFKA_BROKERS}"
else
  scripts/services.sh up >/dev/null
fi
echo "session timeout: ${INSIKT_KAFKA_SESSION_TIMEOUT:-10s (default)}"
cargo build --release --locked -q
INSIKT_BENCH_BIN=target/release/insikt cargo run --release --locked --quiet --example bench_handover
