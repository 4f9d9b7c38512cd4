#!/usr/bin/env bash
# The archive, to a directory and to the S3 server of scripts/services.sh,
# at each size (default 50,000 and 200,000; each run a process of its own):
#  - bench_archive: the store alone, one object written and read back;
#  - bench_replay: end to end through the service, a job's expiry archiving
#    the stream, then POST /imports/{id}/replay into a new import (and again,
#    storing nothing new), against psql \copy of the same rows.
# Rates and peak RSS, which must not grow with the size.
# Usage: scripts/bench.sh archive [SIZES...]   (PROFILE=dev for a debug build)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/services.sh up >/dev/null
profile=(--release)
[[ "${PROFILE:-release}" == dev ]] && profile=()
cargo build "${profile[@]}" --locked --quiet --example bench_archive --example bench_replay
dir="target/$([[ ${#profile[@]} -eq 0 ]] && echo debug || echo release)/examples"
sizes=("$@")
((${#sizes[@]})) || sizes=(50000 200000)
s3=(env INSIKT_ARCHIVE_URL="s3://insikt/bench" AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_REGION=us-east-1
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_ALLOW_HTTP=true)
file=(env INSIKT_ARCHIVE_URL="file://${TMPDIR:-/tmp}/insikt-bench-archive")
export INSIKT_LOG="${INSIKT_LOG:-warn}"
for bench in bench_archive bench_replay; do
  for n in "${sizes[@]}"; do
    "${file[@]}" "$dir/$bench" "$n"
    "${s3[@]}" "$dir/$bench" "$n"
  done
done
