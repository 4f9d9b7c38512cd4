#!/usr/bin/env bash
# Runs every check CI runs: starts PostgreSQL+PostGIS and Kafka (installing
# them when missing), then formatting, lints and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --all-targets --locked
