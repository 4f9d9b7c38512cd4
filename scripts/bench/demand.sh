#!/usr/bin/env bash
# Demand latency: 100,000 statements over a 10,000-citizen import (generated
# in PostgreSQL with a fixed seed), then the median of 20 requests of
# /imports/{id}/demand?by=town,age_group,channel against a release build.
# Prints figures; never fails on them. DEMAND_ONLY=1 skips the scale figure.
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/services.sh up >/dev/null
cargo build --release --locked -q
bin=target/release/insikt
admin=postgres://postgres@127.0.0.1:5432/postgres
db=insikt_bench_demand
url=postgres://postgres@127.0.0.1:5432/$db
port=${BENCH_PORT:-18181}

psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
"$bin" migrate --database-url "$url" >/dev/null
psql -q "$url" <<'SQL'
SELECT setseed(0.42);
INSERT INTO imports DEFAULT VALUES;
INSERT INTO citizens (import_id, citizen_id, town, street, building, apartment, name, birth_date, gender, channel)
SELECT 1, i,
       'Town ' || (1 + floor(random() * 30))::int,
       'Street ' || (1 + floor(random() * 500))::int,
       (1 + floor(random() * 200))::int || 'b',
       (1 + floor(random() * 300))::int,
       'Resident ' || i,
       date '1950-01-01' + (random() * 20000)::int,
       CASE WHEN random() < 0.5 THEN 'male' ELSE 'female' END,
       (ARRAY['instagram', 'radio', 'tiktok', 'billboard', NULL])[1 + floor(random() * 5)::int]
  FROM generate_series(1, 10000) AS i;
INSERT INTO statements (import_id, statement_id, citizen_id, course, channel, score, text, ts, kafka_partition, kafka_offset)
SELECT 1, 'st-' || i, 1 + floor(random() * 10000)::int,
       (ARRAY['rust', 'go', 'spanish', 'data', 'design', 'sql'])[1 + floor(random() * 6)::int],
       CASE WHEN random() < 0.2 THEN 'newsletter' END,
       random(), 'I would like a course', now(), 0, i
  FROM generate_series(1, 100000) AS i;
-- Counted as a job counts what it stored (see migration V8).
SELECT count_statements(1, '{0}', '{100001}');
ANALYZE;
SQL

# Its own topics and consumer group: the broker is shared, and with the
# defaults this instance would join (and split topics with) any other
# instance of the default group.
unique=bench-demand-$$-$(date +%s)
INSIKT_DATABASE_URL=$url INSIKT_LISTEN=127.0.0.1:$port INSIKT_LOG=warn \
  INSIKT_TOPIC_PREFIX="insikt.$unique" INSIKT_CONSUMER_GROUP="insikt-$unique" \
  "$bin" serve --no-migrate &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done

measure() {
  local path=$1
  curl -fs -o /dev/null "http://127.0.0.1:$port$path" # warm-up
  for _ in $(seq 20); do
    curl -fs -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port$path"
  done | sort -n | awk '{ t[NR] = $1 } END { printf "%.1f", (t[10] + t[11]) / 2 * 1000 }'
}

groups=$(curl -fs "http://127.0.0.1:$port/imports/1/demand?by=town,age_group,channel" | grep -o '"statements"' | wc -l)
echo "demand bench: 10,000 citizens, 100,000 statements, $groups groups for by=town,age_group,channel"
echo "median of 20: by=town,age_group,channel  $(measure '/imports/1/demand?by=town,age_group,channel') ms (target < 50 ms)"
echo "median of 20: by=town                    $(measure '/imports/1/demand?by=town') ms"
echo "median of 20: by=town,channel (SVG)      $(measure '/imports/1/demand.svg?by=town,channel') ms"
echo "median of 20: by=town,age_group,course    $(measure '/imports/1/demand?by=town,age_group,course') ms"
echo "median of 20: by=town&course=rust         $(measure '/imports/1/demand?by=town&course=rust') ms"

# The issue's second figure: two instances against one over six streams.
[ -n "${DEMAND_ONLY:-}" ] || bash scripts/bench/scale.sh
