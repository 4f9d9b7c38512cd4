#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs insikt in the foreground:
# PostgreSQL+PostGIS and Kafka, a release build, migrations, then `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
cargo build --release --locked
bin=target/release/insikt

"$bin" migrate
exec "$bin" serve "$@"
