#!/usr/bin/env bash
# Hostile input, load and faults, each printing its figures (issue 14):
#
#   scripts/robustness.sh api [CASES]     schemathesis over every route of the
#                                         service's own /openapi.json (CASES per
#                                         operation and phase, default 25: ~3,500
#                                         cases; settings in schemathesis.toml),
#                                         hostile uploads, then the SQL checks
#   scripts/robustness.sh fuzz [SECONDS]  libFuzzer over the parsers that take
#                                         bytes from outside (SECONDS per target,
#                                         default 600); needs nightly + cargo-fuzz
#   scripts/robustness.sh load [SECONDS]  64 clients over a mix of routes with
#                                         oha (default 60 s), p50/p99 per route,
#                                         peak RSS and open connections
#   scripts/robustness.sh faults          PostgreSQL crash and broker restart mid-
#                                         stream (tests/faults.rs); stops and
#                                         restarts the services: run it alone
#   scripts/robustness.sh hostile         small requests that used to cost the
#                                         service dearly (issue 32), each timed
#                                         with its memory while /healthz is timed
#                                         (p99 < 50 ms); a client sending headers
#                                         at a byte a second; 1,000 idle
#                                         connections beside a GET (p99 within 3x
#                                         of quiet). INSIKT_ROBUSTNESS_REPORT_ONLY=1
#                                         prints the figures without judging them
#                                         (for an older build side by side)
#
# Each pass starts its own `insikt serve` on a fresh database (insikt_robustness_
# and the pass's name, so passes run at once do not drop each other's) against
# the services of scripts/services.sh, and fails on any finding.
# INSIKT_BINARY picks the binary (default: a release build); INSIKT_ROBUSTNESS_SEED
# schemathesis's seed (default 14, so that every run sends the same cases).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

pass="${1:-}"
shift || true

tools="$root/.tools"
reports="$root/reports/robustness"
admin_token="robustness-admin-token"
database="insikt_robustness_${pass:-none}"
admin_url="${INSIKT_ROBUSTNESS_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
database_url="${admin_url%/*}/$database"
server=""

log() { printf '[robustness] %s\n' "$*" >&2; }

binary() {
  if [[ -n "${INSIKT_BINARY:-}" ]]; then
    echo "$INSIKT_BINARY"
  else
    cargo build --release --locked --quiet >&2
    echo "$root/target/release/insikt"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_instance() {
  if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  server=""
}
trap stop_instance EXIT

# Starts `insikt serve` on a fresh database with the sample airports loaded;
# sets $server (pid), $base (URL), $bin. With `closed`, a read token is
# configured too, so the service runs with tokens (every request of the pass
# then sends the admin token); otherwise it runs open.
start_instance() {
  local mode="${1:-open}"
  bin=$(binary)
  mkdir -p "$reports"
  psql -X -q "$admin_url" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" \
    -c "CREATE DATABASE $database" >/dev/null
  local port
  port=$(free_port)
  base="http://127.0.0.1:$port"
  export INSIKT_DATABASE_URL="$database_url" INSIKT_LISTEN="127.0.0.1:$port" \
    INSIKT_ADMIN_TOKEN="$admin_token" INSIKT_TOKEN="$admin_token" INSIKT_LOG="${INSIKT_LOG:-warn}"
  if [[ "$mode" == closed ]]; then
    INSIKT_READ_TOKENS="robustness-reader:$(printf '%s' "$admin_token-read" | sha256sum | cut -d' ' -f1)"
    export INSIKT_READ_TOKENS
  else
    unset INSIKT_READ_TOKENS
  fi
  "$bin" migrate >/dev/null
  "$bin" serve >"$reports/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 1 120); do
    kill -0 "$server" 2>/dev/null || { log "insikt serve ended; see $reports/serve.log"; exit 1; }
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS "$base/readyz" >/dev/null
  "$bin" upload-airports data/airports.csv --url "$base" >/dev/null
  log "insikt (pid $server) at $base on database $database"
}

# A 10,000-citizen import with 2,000 relative pairs in towns that have
# airports, seeded so every run posts the same body.
sample_import() {
  python3 - "$1" <<'EOF'
import json, random, sys
random.seed(14)
towns = ["Goroka", "Madang", "Mount Hagen", "Nadzab", "Port Moresby", "Wewak"]
channels = ["radio", "telegram", "search", "billboard", None]
citizens = []
for i in range(1, 10_001):
    c = {"citizen_id": i, "town": random.choice(towns), "street": "Main",
         "building": str(random.randint(1, 99)), "apartment": random.randint(1, 300),
         "name": f"Resident {i}",
         "birth_date": f"{random.randint(1, 28):02}.{random.randint(1, 12):02}.{random.randint(1950, 2010)}",
         "gender": random.choice(["male", "female"]), "relatives": []}
    channel = random.choice(channels)
    if channel:
        c["channel"] = channel
    citizens.append(c)
for a in range(1, 4_001, 2):
    citizens[a - 1]["relatives"].append(a + 1)
    citizens[a]["relatives"].append(a)
json.dump({"citizens": citizens}, open(sys.argv[1], "w"))
EOF
}

consistency() {
  log "consistency checks (every count must be 0)"
  local out
  # One run of the checks (they scan every statement): printed, then judged.
  out=$(psql -X -tA -v ON_ERROR_STOP=1 "$database_url" -f scripts/robustness/consistency.sql)
  awk -F'|' '{ printf "  %-50s %s\n", $1, $2 }' <<<"$out"
  if awk -F'|' '$2 != 0 { bad = 1 } END { exit bad }' <<<"$out"; then
    log "consistency: every check holds"
  else
    log "consistency: a check failed"
    return 1
  fi
}

airports_count() { psql -X -tA "$database_url" -c 'SELECT count(*) FROM airports'; }

# Uploads that must be refused whole: each answers 400 and writes nothing.
hostile_uploads() {
  local dir before after status failures=0
  dir=$(mktemp -d)
  cp data/airports.csv "$dir/bad-last-row.csv"
  echo '"Last","City","Country","LST","LAST",91,0,0,0,"U","Etc/UTC","airport","x"' >>"$dir/bad-last-row.csv"
  cp data/airports.csv "$dir/nul.csv"
  printf '"Nul\0name","City","Country","NUL","NULL",1,2,0,0,"U","Etc/UTC","airport","x"\n' >>"$dir/nul.csv"
  cp data/airports.csv "$dir/unclosed-quote.csv"
  printf '"Open,"City","Country","OPN","OPEN",1,2,0,0,"U","Etc/UTC","airport","x"\n' >>"$dir/unclosed-quote.csv"
  head -c 300000 data/airports.csv >"$dir/truncated.csv"
  printf 'name,city\n\xff\xfe,x\n' >"$dir/not-utf8.csv"
  : >"$dir/empty.csv"
  before=$(airports_count)
  for file in "$dir"/*.csv; do
    status=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: text/csv' \
      -H "Authorization: Bearer $admin_token" --data-binary "@$file" "$base/airports/upload")
    if [[ "$status" != 400 ]]; then
      log "upload of $(basename "$file") answered $status, expected 400"
      failures=$((failures + 1))
    fi
  done
  after=$(airports_count)
  rm -rf "$dir"
  log "hostile uploads: 6 sent, airports before $before, after $after"
  [[ "$before" == "$after" && "$failures" == 0 ]]
}

schemathesis_bin() {
  local venv="$tools/venv" want
  # Rebuilt when the pinned requirements change.
  want=$(sha256sum scripts/robustness/requirements.txt | cut -d' ' -f1)
  if [[ "$(cat "$venv/.stamp" 2>/dev/null || true)" != "$want" ]]; then
    log "installing schemathesis (PyPI) into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/robustness/requirements.txt
    echo "$want" >"$venv/.stamp"
  fi
  echo "$venv/bin/schemathesis"
}

api_pass() {
  local cases="${1:-25}" st body status
  st=$(schemathesis_bin)
  # With tokens, as deployments run: the document's security holds (a request
  # without the token is 401), and every case sends the admin token.
  start_instance closed
  body=$(mktemp)
  sample_import "$body"
  curl -fsS -o /dev/null -H 'Content-Type: application/json' -H "Authorization: Bearer $admin_token" \
    --data-binary "@$body" "$base/imports"
  rm -f "$body"
  log "schemathesis: every route, $cases cases per operation, all checks"
  # The CPU profile route is left out: each case would hold a request for
  # up to 60 s (its own tests cover it, idle and busy).
  status=0
  "$st" run "$base/openapi.json" --checks all --max-examples "$cases" --seed "${INSIKT_ROBUSTNESS_SEED:-14}" \
    -H "Authorization: Bearer $admin_token" --request-timeout 30 \
    --exclude-path /debug/pprof/profile --generation-database none --no-color \
    --report junit --report-junit-path "$reports/schemathesis.xml" \
    >"$reports/schemathesis.log" 2>&1 || status=$?
  sed -n '/=== SUMMARY ===/,$p' "$reports/schemathesis.log"
  if grep -q ' 5[0-9][0-9] ' "$reports/serve.log" 2>/dev/null; then
    log "the service logged a 5xx answer; see $reports/serve.log"
  fi
  hostile_uploads || status=1
  consistency || status=1
  [[ "$status" == 0 ]] || log "api pass failed; full log: $reports/schemathesis.log"
  return "$status"
}

fuzz_pass() {
  local seconds="${1:-600}" target status=0
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
  for target in airports_csv citizens_json statement_payload; do
    mkdir -p "fuzz/corpus/$target"
    log "fuzzing $target for $seconds s"
    (cd fuzz && cargo +nightly fuzz run --release "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -print_final_stats=1) \
      >"$reports/fuzz-$target.log" 2>&1 || status=$?
    grep -E '^stat::number_of_executed_units|^stat::peak_rss|^Done|SUMMARY|panicked' \
      "$reports/fuzz-$target.log" || true
    [[ "$status" == 0 ]] || { log "$target found a crash: see $reports/fuzz-$target.log and fuzz/artifacts/$target"; return "$status"; }
  done
}

oha_bin() {
  if [[ ! -x "$tools/bin/oha" ]]; then
    log "installing oha (crates.io) into $tools"
    # A local load needs plain HTTP only: native-tls (the system OpenSSL)
    # builds in a fraction of the default rustls + aws-lc time.
    cargo install oha --version 1.16.0 --locked --no-default-features --features native-tls --root "$tools" >&2
  fi
  echo "$tools/bin/oha"
}

# Waits until the import's job has stored `want` statements.
wait_stored() {
  local import="$1" want="$2" stored=0
  for _ in $(seq 1 240); do
    stored=$(psql -X -tA "$database_url" -c "SELECT count(*) FROM statements WHERE import_id = $import")
    [[ "$stored" -ge "$want" ]] && return 0
    sleep 0.5
  done
  log "only $stored of $want statements stored"
  return 1
}

# 100 statements of the sample import; `tag` makes the ids of a body unique.
statements_body() {
  python3 - "$1" "$2" <<'EOF'
import json, random, sys
random.seed(sys.argv[2])
courses = ["rust", "go", "python", "kafka", "postgres", "k8s"]
json.dump([{"statement_id": f"{sys.argv[2]}-{i}", "citizen_id": random.randint(1, 10_000),
            "course": random.choice(courses), "channel": random.choice(["radio", "search"]),
            "score": random.randint(1, 5), "text": "interested"} for i in range(100)],
          open(sys.argv[1], "w"))
EOF
}

load_pass() {
  local seconds="${1:-60}" oha work import rss=0 conns=0 peak_conns=0 status=0
  oha=$(oha_bin)
  start_instance
  work=$(mktemp -d)
  sample_import "$work/import.json"
  import=$(curl -fsS -H 'Content-Type: application/json' --data-binary "@$work/import.json" \
    "$base/imports" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["import_id"])')
  # Stored statements first, so demand has something to count.
  for n in $(seq 1 50); do
    statements_body "$work/s.json" "warm$n"
    curl -fsS -o /dev/null -H 'Content-Type: application/json' --data-binary "@$work/s.json" \
      "$base/imports/$import/statements"
  done
  wait_stored "$import" 5000
  statements_body "$work/post.json" load
  log "load: 64 clients for $seconds s over 6 routes (import $import, 10,000 citizens)"
  # name, connections, method, url
  local routes=(
    "citizens 11 GET $base/imports/$import/citizens"
    "birthdays 11 GET $base/imports/$import/citizens/birthdays"
    "percentile 11 GET $base/imports/$import/towns/stat/percentile/age"
    "demand 11 GET $base/imports/$import/demand?by=town,age_group,channel"
    "airports_near 10 GET $base/airports/near?lat=-6.08&lon=145.39&radius_km=500"
    "statements_post 10 POST $base/imports/$import/statements"
  )
  local pids=() route name c method url
  for route in "${routes[@]}"; do
    read -r name c method url <<<"$route"
    local extra=()
    if [[ "$method" == POST ]]; then
      extra=(-m POST -T application/json -D "$work/post.json")
    fi
    # -w: requests in flight at the deadline finish and count (not "aborted").
    "$oha" -z "${seconds}s" -w -c "$c" --no-tui --output-format json "${extra[@]}" "$url" \
      >"$work/$name.json" 2>"$work/$name.err" &
    pids+=($!)
  done
  # The service's open connections, sampled while the load runs.
  local port="${base##*:}"
  while kill -0 "${pids[0]}" 2>/dev/null; do
    conns=$(ss -Htn state established "( sport = :$port )" | wc -l)
    ((conns > peak_conns)) && peak_conns=$conns
    sleep 1
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  rss=$(awk '/VmHWM/ { print $2 }' "/proc/$server/status")
  python3 - "$work" "${routes[@]}" <<'EOF' || status=1
import json, sys
work, routes = sys.argv[1], sys.argv[2:]
bad = 0
print(f"{'route':<16} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  statuses")
for route in routes:
    name, clients = route.split()[:2]
    r = json.load(open(f"{work}/{name}.json"))
    statuses = r.get("statusCodeDistribution", {})
    errors = sum(r.get("errorDistribution", {}).values())
    non_2xx = sum(n for code, n in statuses.items() if not code.startswith("2"))
    bad += errors + non_2xx
    pct = r["latencyPercentiles"]
    print(f"{name:<16} {clients:>7} {r['summary']['requestsPerSec']:>9.0f} "
          f"{pct['p50'] * 1000:>8.1f} {pct['p99'] * 1000:>8.1f} {errors:>7}  {statuses}")
if bad:
    print(f"{bad} requests failed or answered other than 2xx")
sys.exit(1 if bad else 0)
EOF
  log "service peak RSS $((rss / 1024)) MiB, peak open connections $peak_conns"
  cp "$work"/*.json "$reports/" 2>/dev/null || true
  rm -rf "$work"
  consistency || status=1
  return "$status"
}

# An import of 300 residents in 30 towns, each asking for 100 courses of
# their own through the API: demand by town and course has 30,000 groups,
# with 30,000 distinct courses.
chart_import() {
  local work="$1" import
  python3 - "$work/chart.json" "$work/chart-statements" <<'EOF'
import json, sys
citizens = [{"citizen_id": c, "town": f"town-{c % 30}", "street": "Main", "building": "1",
             "apartment": 1, "name": f"Resident {c}", "birth_date": "01.01.1990",
             "gender": "female", "relatives": []} for c in range(1, 301)]
json.dump({"citizens": citizens}, open(sys.argv[1], "w"))
for part in range(3):
    statements = [{"statement_id": f"g{c}-{k}", "citizen_id": c, "course": f"course-{c}-{k}"}
                  for c in range(1 + part * 100, 101 + part * 100) for k in range(1, 101)]
    json.dump(statements, open(f"{sys.argv[2]}-{part}.json", "w"))
EOF
  import=$(curl -fsS -H 'Content-Type: application/json' --data-binary "@$work/chart.json" \
    "$base/imports" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["import_id"])')
  for part in 0 1 2; do
    curl -fsS -o /dev/null -H 'Content-Type: application/json' \
      --data-binary "@$work/chart-statements-$part.json" "$base/imports/$import/statements"
  done
  wait_stored "$import" 30000
  echo "$import"
}

hostile_pass() {
  local work import chart status=0 report_only=()
  # 1,000 idle connections beside the pass's own need descriptors.
  ulimit -n 8192 2>/dev/null || log "could not raise the open files limit ($(ulimit -n))"
  start_instance
  work=$(mktemp -d)
  python3 -c 'import json, sys; json.dump({"citizens": [{"citizen_id": c, "town": "Soria",
    "street": "Mayor", "building": "1", "apartment": 1, "name": "R", "birth_date": "01.01.1990",
    "gender": "male", "relatives": []} for c in (1, 2, 3)]}, open(sys.argv[1], "w"))' "$work/small.json"
  import=$(curl -fsS -H 'Content-Type: application/json' --data-binary "@$work/small.json" \
    "$base/imports" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["import_id"])')
  chart=$(chart_import "$work")
  [[ -n "${INSIKT_ROBUSTNESS_REPORT_ONLY:-}" ]] && report_only=(--report-only)
  log "hostile requests against $bin (import $import, chart import $chart)"
  python3 scripts/robustness/hostile.py "$base" "$server" "$import" "$chart" "${report_only[@]}" |
    tee "$reports/hostile.txt" || status=1
  rm -rf "$work"
  consistency || status=1
  return "$status"
}

faults_pass() {
  cargo test --locked --test faults -- --ignored --test-threads=1 --nocapture 2>&1 |
    tee "$reports/faults.log" | grep -E '^(PostgreSQL crash|broker restart)|^test |test result'
}

case "$pass" in
  api) mkdir -p "$reports"; scripts/services.sh up >&2; api_pass "$@" ;;
  fuzz) mkdir -p "$reports"; fuzz_pass "$@" ;;
  load) mkdir -p "$reports"; scripts/services.sh up >&2; load_pass "$@" ;;
  faults) mkdir -p "$reports"; scripts/services.sh up >&2; faults_pass ;;
  hostile) mkdir -p "$reports"; scripts/services.sh up >&2; hostile_pass ;;
  *)
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
