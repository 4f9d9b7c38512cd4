#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs insikt in the foreground:
# PostgreSQL+PostGIS and Kafka, a release build, migrations, then `serve`,
# with the sample airports (data/airports.csv) loaded on the first start.
# Extra arguments are insikt flags (e.g. --listen 0.0.0.0:8080).
# S3 mode: INSIKT_RUN_S3=1 archives to the local S3 server that
# scripts/services.sh runs (moto on 127.0.0.1:9000, bucket `insikt`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
if [[ "${INSIKT_RUN_S3:-}" == 1 ]]; then
  export INSIKT_ARCHIVE_URL="${INSIKT_ARCHIVE_URL:-s3://insikt/archive}"
  export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:9000}"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-insikt-dev}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-insikt-dev}"
  export AWS_ALLOW_HTTP="${AWS_ALLOW_HTTP:-true}"
  echo "archiving to ${INSIKT_ARCHIVE_URL} at ${AWS_ENDPOINT_URL}"
fi
cargo build --release --locked
bin=target/release/insikt

# Where the server listens and which database it uses, as insikt will see them.
listen="${INSIKT_LISTEN:-127.0.0.1:8080}"
database_url="${INSIKT_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/insikt}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --listen) listen="${args[i + 1]:-$listen}" ;;
    --listen=*) listen="${args[i]#--listen=}" ;;
    --database-url) database_url="${args[i + 1]:-$database_url}" ;;
    --database-url=*) database_url="${args[i]#--database-url=}" ;;
  esac
done
host="${listen%:*}"
port="${listen##*:}"
case "$host" in 0.0.0.0 | "[::]" | "") host=127.0.0.1 ;; esac

"$bin" migrate "$@"
"$bin" serve "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' TERM INT

# GET /readyz over bash's /dev/tcp (no curl needed): true on a 200.
ready() {
  exec 3<>"/dev/tcp/${host}/${port}" || return 1
  printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
  local status=""
  read -r _ status _ <&3 || true
  exec 3>&-
  [[ "$status" == 200 ]]
}

for _ in $(seq 1 120); do
  kill -0 "$server" 2>/dev/null || { wait "$server"; exit $?; }
  ready 2>/dev/null && break
  sleep 0.5
done

# Sample data only into an empty table, so a restart never duplicates it.
airports="$(psql "$database_url" -tAc 'SELECT count(*) FROM airports' 2>/dev/null || echo unknown)"
if [[ "$airports" == 0 ]]; then
  echo "loading the sample airports (data/airports.csv)"
  "$bin" upload-airports data/airports.csv --url "http://${host}:${port}" "$@" ||
    echo "warning: the sample airports could not be loaded" >&2
else
  echo "airports already loaded (${airports}); not loading the sample"
fi

# Stay in the foreground until the server ends (SIGTERM/SIGINT are forwarded).
status=0
wait "$server" || status=$?
if ((status > 128)); then
  # `wait` was interrupted by a forwarded signal: wait for the server's own exit.
  status=0
  wait "$server" || status=$?
fi
exit "$status"
