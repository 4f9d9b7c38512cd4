#!/usr/bin/env bash
# Sets everything up on a fresh machine, starts insikt in the background and
# shows what it answers: PostgreSQL+PostGIS and Kafka, a release build,
# migrations, the server (pid and log in .run/), the sample airports
# (data/airports.csv) on the first start, then `insikt demo` (a sample import
# streamed through the API and Kafka, skipped when imports exist) and where
# to look. Idempotent: a running server is restarted on the fresh build.
# Extra arguments are insikt flags (e.g. --listen 0.0.0.0:8080).
# `scripts/run.sh stop [flags]` stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

stop_only=false
if [[ "${1:-}" == stop ]]; then
  stop_only=true
  shift
fi
# S3 mode: INSIKT_RUN_S3=1 archives to the local S3 server that
# scripts/services.sh runs (moto on 127.0.0.1:9000, bucket `insikt`).
if [[ "${INSIKT_RUN_S3:-}" == 1 ]]; then
  export INSIKT_ARCHIVE_URL="${INSIKT_ARCHIVE_URL:-s3://insikt/archive}"
  export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:9000}"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-insikt-dev}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-insikt-dev}"
  export AWS_ALLOW_HTTP="${AWS_ALLOW_HTTP:-true}"
  echo "archiving to ${INSIKT_ARCHIVE_URL} at ${AWS_ENDPOINT_URL}"
fi

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
url="http://${host}:${port}"

# One server per port: its pid and log are named after it.
mkdir -p .run
pidfile=".run/insikt-${port}.pid"
log=".run/insikt-${port}.log"

# Stops the server of $pidfile, if it runs, and waits for its graceful
# shutdown (jobs finish their current batch).
stop_server() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
    grep -q insikt "/proc/${pid}/cmdline" 2>/dev/null; then
    echo "stopping insikt (pid ${pid})"
    kill -TERM "$pid"
    for _ in $(seq 1 80); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "insikt (pid ${pid}) did not stop in 40 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

if $stop_only; then
  stop_server
  exit 0
fi

scripts/services.sh up
cargo build --release --locked
bin=target/release/insikt

"$bin" migrate "$@"
stop_server
# A session of its own, so a Ctrl-C in this terminal does not reach it.
setsid "$bin" serve "$@" >>"$log" 2>&1 </dev/null &
server=$!
echo "$server" >"$pidfile"
echo "insikt started (pid ${server}, log ${log})"

# GET /readyz over bash's /dev/tcp (no curl needed): true on a 200.
ready() {
  exec 3<>"/dev/tcp/${host}/${port}" || return 1
  printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
  local status=""
  read -r _ status _ <&3 || true
  exec 3>&-
  [[ "$status" == 200 ]]
}

for attempt in $(seq 1 120); do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "insikt exited; the end of ${log}:" >&2
    tail -n 20 "$log" >&2
    rm -f "$pidfile"
    exit 1
  fi
  ready 2>/dev/null && break
  if ((attempt == 120)); then
    echo "insikt is not ready after 60 s; see ${log}" >&2
    exit 1
  fi
  sleep 0.5
done

# Sample data only into an empty table, so a restart never duplicates it.
airports="$(psql "$database_url" -tAc 'SELECT count(*) FROM airports' 2>/dev/null || echo unknown)"
if [[ "$airports" == 0 ]]; then
  echo "loading the sample airports (data/airports.csv)"
  "$bin" upload-airports data/airports.csv --url "$url" "$@" ||
    echo "warning: the sample airports could not be loaded" >&2
else
  echo "airports already loaded (${airports}); not loading the sample"
fi

# The product's question answered: a sample import on an empty database
# (`insikt demo` skips it, saying so, when imports exist).
"$bin" demo --url "$url" "$@" ||
  echo "warning: the demo did not finish; the server keeps running (see ${log})" >&2

echo
echo "insikt is running on ${url} (pid ${server}); log: ${log}"
echo "  API docs: ${url}/docs/   jobs: ${url}/jobs   metrics: ${url}/metrics"
echo "  stop it:  scripts/run.sh stop${*:+ $*}   (or kill ${server})"
