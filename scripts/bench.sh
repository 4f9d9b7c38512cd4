#!/usr/bin/env bash
# Benchmarks print figures; they never pass or fail on timings.
# Usage: scripts/bench.sh <area> [args]   (areas: the scripts in scripts/bench/)
set -euo pipefail
cd "$(dirname "$0")/.."
area="${1:?usage: scripts/bench.sh <area>; areas: $(ls scripts/bench | sed 's/\.sh$//' | tr '\n' ' ')}"
shift
exec bash "scripts/bench/${area}.sh" "$@"
