#!/usr/bin/env bash
# Writes the reports sonar-project.properties names, into the git-ignored
# reports/ directory:
#   reports/clippy.json  `cargo clippy --all-targets --message-format=json`
#                        (one JSON message per line, what community-rust reads)
#   reports/lcov.info    line coverage of the whole test suite, by
#                        `cargo llvm-cov` (LLVM source-based coverage)
# Then `sonar-scanner -Dsonar.host.url=… -Dsonar.token=…` uploads them.
#
# Installs what it needs: rustup's llvm-tools-preview component and
# cargo-llvm-cov (pinned, from crates.io). The coverage run builds an
# instrumented copy of the crate in target/llvm-cov-target and runs every
# test, so PostgreSQL and Kafka must be up (scripts/services.sh up).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LLVM_COV_VERSION=0.9.1
log() { printf '[quality] %s\n' "$*" >&2; }

if [[ -x scripts/services.sh ]]; then scripts/services.sh up; fi

if ! rustup component list --installed | grep -q '^llvm-tools'; then
  log "rustup component add llvm-tools-preview"
  rustup component add llvm-tools-preview
fi
if [[ "$(cargo llvm-cov --version 2>/dev/null || true)" != "cargo-llvm-cov ${CARGO_LLVM_COV_VERSION}" ]]; then
  log "cargo install cargo-llvm-cov ${CARGO_LLVM_COV_VERSION}"
  cargo install cargo-llvm-cov --version "$CARGO_LLVM_COV_VERSION" --locked
fi

mkdir -p reports
rm -f reports/clippy.json reports/lcov.info

log "cargo clippy --message-format=json -> reports/clippy.json"
# Every finding goes to the report (no -D warnings: the gate is SonarQube's
# here, scripts/test.sh enforces zero warnings).
cargo clippy --all-targets --locked --message-format=json >reports/clippy.json
warnings="$(grep -c '"reason":"compiler-message"' reports/clippy.json || true)"
log "   ${warnings} compiler messages"

log "cargo llvm-cov (all targets) -> reports/lcov.info"
cargo llvm-cov clean --workspace
cargo llvm-cov --all-targets --locked --no-report
cargo llvm-cov report --lcov --output-path reports/lcov.info
log "   $(grep -c '^SF:' reports/lcov.info) source files in the report; totals:"
cargo llvm-cov report --summary-only | tail -n 1

log "reports ready: reports/clippy.json reports/lcov.info"
