#!/usr/bin/env bash
# What an instance costs per running import: one `insikt serve` under
# `ulimit -n 1024` with N imports created through the API (default 100,
# 1,000 and 5,000), each a running job: threads, open files, broker
# connections, RSS and CPU while idle, POST /imports -> running p50/p99,
# every route answering, the restart. Then, from the same build, the stream
# benchmark (its ratio to psql \copy) and the hand-over figures.
# Needs scripts/services.sh up; creates up to 5,000 topics on the broker
# (deleted at the end): on a shared machine run it alone, e.g. under
# `flock -x /work/locks/services`. The shared development broker (512 MiB
# heap) does not hold 5,000 more partitions: with BENCH_PRIVATE_KAFKA=1 the
# jobs benchmark runs against a broker of its own
# (scripts/kafka/private-broker.sh), the stream and hand-over ones still
# against the shared one.
# Usage: scripts/bench.sh jobs [N...]   (INSIKT_BENCH_BIN: another binary;
#        JOBS_ONLY=1: without the stream and hand-over benchmarks)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/services.sh up >/dev/null
cargo build --release --locked -q
(
  if [[ -n "${BENCH_PRIVATE_KAFKA:-}" ]]; then
    source scripts/kafka/private-broker.sh
    private_kafka_up
  fi
  INSIKT_BENCH_BIN="${INSIKT_BENCH_BIN:-target/release/insikt}" \
    cargo run --release --locked --quiet --example bench_jobs -- "$@"
)
if [[ -z "${JOBS_ONLY:-}" ]]; then
  INSIKT_LOG="${INSIKT_LOG:-warn}" cargo run --release --locked --quiet --example bench_stream
  INSIKT_BENCH_BIN=target/release/insikt cargo run --release --locked --quiet --example bench_handover
fi
