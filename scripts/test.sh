#!/usr/bin/env bash
# Runs every check CI runs: starts PostgreSQL+PostGIS and Kafka (installing
# them when missing), then formatting, lints and the whole test suite, then
# schemathesis over the API (scripts/robustness.sh api), then the
# fault tests (tests/faults.rs: they crash PostgreSQL and stop the broker, so
# they run alone, after the suite), then the
# deployment checks (scripts/ops-check.sh: Ansible syntax and lint, Kubernetes
# validation, a real local Ansible deploy of the binary `cargo test` built),
# then the cluster tests (tests/cluster.rs: broker faults on a three-broker
# cluster, which takes the one broker's ports for its duration, and a
# rolling upgrade by the playbook), then the one broker again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up

# A one-shot build gains nothing from incremental caches, which were half of
# target/ (5 GB) and ran a CI disk full.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
cargo test --all-targets --locked 2>&1 | tee "$results"

echo "== API fuzzing (schemathesis over /openapi.json, hostile uploads, SQL consistency)"
# 25 examples per operation and phase: ~3,500 cases in about a minute.
INSIKT_BINARY=target/debug/insikt scripts/robustness.sh api 25

echo "== fault tests (they stop and crash the services: one at a time, nothing else running)"
# The service's log goes into each test's captured output: shown with a
# failure only, it says where a job stood when a fault test timed out.
INSIKT_TEST_LOG="${INSIKT_TEST_LOG:-insikt=info}" \
  cargo test --locked --test faults -- --ignored --test-threads=1 2>&1 | tee -a "$results"

echo "== ops checks (ansible, kubernetes, local deploy)"
# The debug binary `cargo test` just built: a release build would add minutes
# and the deploy test checks the deployment, not the code's speed.
INSIKT_BINARY=target/debug/insikt scripts/ops-check.sh

echo "== cluster tests (three brokers replace the one broker on ${KAFKA_PORT_BASE:-9092}..+2 meanwhile)"
cluster_started=$SECONDS
# The one broker comes back however this step ends.
trap 'scripts/services.sh up kafka >/dev/null || true; rm -f "$results"' EXIT
scripts/services.sh up kafka --brokers 3
base=${KAFKA_PORT_BASE:-9092}
INSIKT_KAFKA_BROKERS="127.0.0.1:${base},127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))" \
  cargo test --locked --test cluster -- --ignored --test-threads=1 --nocapture 2>&1 | tee -a "$results"
scripts/services.sh up kafka
echo "cluster step: $((SECONDS - cluster_started)) s"

# One closing line for the whole suite (the ops checks print after cargo's own).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$results"
