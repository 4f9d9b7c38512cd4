#!/usr/bin/env bash
# Archive and read back 50,000, 200,000 and 1,000,000 records (each size in a process of
# its own), to a directory and to the S3 server of scripts/services.sh:
# rates and peak RSS, which must not grow with the size.
# Usage: scripts/bench.sh archive [SIZES...]   (PROFILE=dev for a debug build)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/services.sh up s3 >/dev/null
profile=(--release)
[[ "${PROFILE:-release}" == dev ]] && profile=()
cargo build "${profile[@]}" --locked --quiet --example bench_archive
bin="target/$([[ ${#profile[@]} -eq 0 ]] && echo debug || echo release)/examples/bench_archive"
sizes=("$@")
((${#sizes[@]})) || sizes=(50000 200000 1000000)
for n in "${sizes[@]}"; do
  INSIKT_ARCHIVE_URL="file://${TMPDIR:-/tmp}/insikt-bench-archive" "$bin" "$n"
  INSIKT_ARCHIVE_URL="s3://insikt/bench" AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_ALLOW_HTTP=true "$bin" "$n"
done
