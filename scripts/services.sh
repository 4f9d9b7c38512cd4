#!/usr/bin/env bash
# Start/stop the local services insikt needs for development, tests and CI:
#   - PostgreSQL 15 + PostGIS on 127.0.0.1:5432 (user postgres, no password)
#   - a single-node Apache Kafka broker (KRaft) on 127.0.0.1:9092
#   - headless Chromium and chromedriver (Debian's), installed only: the
#     console's browser test (tests/console.rs) starts its own chromedriver
#   - an S3-compatible server (moto in server mode, from PyPI) on
#     127.0.0.1:9000 with the bucket `insikt`, for the archive tests and
#     scripts/run.sh's S3 mode. It keeps objects in memory: a restart empties it.
#
# Usage: scripts/services.sh up|down|status [postgres|kafka|s3] [--brokers 1|3]
#        scripts/services.sh crash postgres   (immediate stop, as a crash:
#                                              for the fault tests)
#        scripts/services.sh down|crash kafka --node N
#                                             (broker N of the cluster, for
#                                              tests/cluster.rs)
#   --brokers 3: a three-broker KRaft cluster on ports 9092-9094 with three
#   dedicated controllers on 9192-9194 (replication factor 3,
#   min.insync.replicas=2) instead of the one broker; it takes the
#   one broker's ports, so either `up` stops the other. KAFKA_PORT_BASE and
#   KAFKA_CONTROLLER_PORT_BASE move the ports, INSIKT_SERVICES_DIR the state.
#
# Runs as root on Debian 12 without systemd (pg_ctlcluster and a plain
# background JVM instead of service units). Safe to run repeatedly: `up` when
# everything already runs only checks it. Works on a fresh machine: installs
# missing Debian packages and fetches Kafka's jars from Maven Central
# (scripts/kafka/pom.xml), the only places our machines can download from.
#
# Runtime state (Kafka jars, data, logs, pid file) lives outside the work tree
# in $INSIKT_SERVICES_DIR (default /var/lib/insikt-dev), so every clone of the
# repo on the machine (e.g. CI's fresh clone) shares one broker and one cache.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- PostgreSQL settings ------------------------------------------------------
PG_VERSION=15
PG_CLUSTER=main
PG_PORT=5432
PG_HOST=127.0.0.1
PG_DB=insikt
PG_CONF_DIR="/etc/postgresql/${PG_VERSION}/${PG_CLUSTER}"
PG_PACKAGES=("postgresql-${PG_VERSION}" "postgresql-${PG_VERSION}-postgis-3")

# --- Kafka settings -----------------------------------------------------------
STATE_DIR="${INSIKT_SERVICES_DIR:-/var/lib/insikt-dev}"
KAFKA_DIR="${STATE_DIR}/kafka"
KAFKA_LIBS="${KAFKA_DIR}/libs"
KAFKA_DATA="${KAFKA_DIR}/data"
KAFKA_LOGS="${KAFKA_DIR}/logs"
KAFKA_CONF="${KAFKA_DIR}/server.properties"
KAFKA_LOG4J="${KAFKA_DIR}/log4j2.properties"
KAFKA_TOOLS_LOG4J="${KAFKA_DIR}/tools-log4j2.properties"
KAFKA_PID="${KAFKA_DIR}/kafka.pid"
KAFKA_POM="${REPO_DIR}/scripts/kafka/pom.xml"
KAFKA_HOST=127.0.0.1
# The one broker listens on KAFKA_PORT_BASE (controller on the next port);
# the three-broker cluster's brokers on KAFKA_PORT_BASE..+2 and its
# controllers on KAFKA_CONTROLLER_PORT_BASE..+2. Both overridable, so a
# cluster under development can run beside the shared broker.
KAFKA_PORT_BASE="${KAFKA_PORT_BASE:-9092}"
KAFKA_PORT=$KAFKA_PORT_BASE
KAFKA_CONTROLLER_PORT=$((KAFKA_PORT_BASE + 1))
KAFKA_CONTROLLER_PORT_BASE="${KAFKA_CONTROLLER_PORT_BASE:-$((KAFKA_PORT_BASE + 100))}"
CLUSTER_DIR="${STATE_DIR}/kafka-cluster"
# Another fixed id ("InsiktDevCluster"): a node's data dir cannot be mistaken
# for the one broker's.
CLUSTER_ID=SW5zaWt0RGV2Q2x1c3Rlcg
# Fixed cluster id (base64 of the 16 bytes "InsiktDevKafkaID"): formatting is
# reproducible and the id tells at a glance which data dir this is.
KAFKA_CLUSTER_ID=SW5zaWt0RGV2S2Fma2FJRA
KAFKA_START_TIMEOUT=120
KAFKA_STOP_TIMEOUT=60

# --- S3 (moto) settings -------------------------------------------------------
S3_DIR="${STATE_DIR}/s3"
S3_VENV="${S3_DIR}/venv"
S3_PID="${S3_DIR}/moto.pid"
S3_LOG="${S3_DIR}/moto.log"
S3_HOST=127.0.0.1
S3_PORT=9000
S3_BUCKET=insikt
# moto enforces S3's 5 MiB minimum part size of multipart uploads (s3s-fs,
# the other candidate, does not, and would cost a cargo install in CI).
MOTO_VERSION=5.2.5
S3_START_TIMEOUT=60

export DEBIAN_FRONTEND=noninteractive

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ============================================================================
# Debian packages
# ============================================================================
APT_UPDATED=0

pkg_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# apt_install PKG...: install the packages that are missing, `apt-get update`
# at most once per run (the package lists may be absent on a fresh machine).
apt_install() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  if ((!APT_UPDATED)); then
    log "apt-get update"
    apt-get update -qq
    APT_UPDATED=1
  fi
  log "installing: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ============================================================================
# PostgreSQL
# ============================================================================
pg_running() {
  # pg_ctlcluster status: 0 = running, 3 = stopped, 4 = no such cluster.
  pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1
}

pg_psql() {
  PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres "$@"
}

# write_if_changed FILE: replace FILE with stdin if the content differs.
# Returns 0 if the file changed, 1 if it was already up to date.
write_if_changed() {
  local file=$1 tmp
  tmp="$(mktemp "${file}.XXXXXX")"
  cat >"$tmp"
  if [[ -f "$file" ]] && cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
    return 1
  fi
  mv -f "$tmp" "$file"
  return 0
}

pg_up() {
  local changed_restart=0 changed_reload=0 started=0 installed=0

  local p
  for p in "${PG_PACKAGES[@]}"; do pkg_installed "$p" || installed=1; done
  apt_install "${PG_PACKAGES[@]}"

  # Debian's postinst normally creates "15 main"; recreate it if it was
  # dropped or never made (e.g. create_main_cluster=false).
  if [[ ! -f "${PG_CONF_DIR}/postgresql.conf" ]]; then
    log "creating cluster ${PG_VERSION}/${PG_CLUSTER}"
    pg_createcluster -p "$PG_PORT" "$PG_VERSION" "$PG_CLUSTER" >/dev/null
  fi

  # Dev settings in conf.d (Debian's postgresql.conf includes that dir), so
  # the packaged postgresql.conf stays untouched. These need a restart.
  # max_connections: integration tests create one database per test and run
  # them in parallel, each with its own pool.
  mkdir -p "${PG_CONF_DIR}/conf.d"
  if write_if_changed "${PG_CONF_DIR}/conf.d/90-insikt-dev.conf" <<EOF
# Managed by insikt scripts/services.sh (development/CI settings).
listen_addresses = '127.0.0.1,::1'
port = ${PG_PORT}
max_connections = 300
shared_buffers = 256MB
EOF
  then changed_restart=1; fi

  # pg_hba.conf is first-match: a managed block at the top gives password-less
  # (trust) access over the socket and loopback TCP, so the default URL
  # postgres://postgres@127.0.0.1:5432/insikt works. Loopback only.
  local hba="${PG_CONF_DIR}/pg_hba.conf"
  if {
    cat <<'EOF'
# BEGIN insikt-dev (managed by scripts/services.sh; local development only)
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust
# END insikt-dev
EOF
    sed '/^# BEGIN insikt-dev/,/^# END insikt-dev/d' "$hba"
  } | write_if_changed "$hba"; then
    chown postgres:postgres "$hba"
    chmod 640 "$hba"
    changed_reload=1
  fi
  chown postgres:postgres "${PG_CONF_DIR}/conf.d/90-insikt-dev.conf"

  if pg_running; then
    if ((changed_restart)); then
      log "restarting PostgreSQL to apply settings"
      pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart -m fast
      started=1
    elif ((changed_reload)); then
      pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" reload
    fi
  else
    log "starting PostgreSQL ${PG_VERSION}/${PG_CLUSTER}"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
    started=1
  fi

  local i
  for ((i = 0; i < 60; i++)); do
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break
    sleep 1
  done
  pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || {
    tail -n 30 "/var/log/postgresql/postgresql-${PG_VERSION}-${PG_CLUSTER}.log" >&2 || true
    die "PostgreSQL does not answer on ${PG_HOST}:${PG_PORT}"
  }

  # The application database of the default DATABASE_URL.
  if [[ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${PG_DB}'")" != 1 ]]; then
    log "creating database ${PG_DB}"
    pg_psql -d postgres -c "CREATE DATABASE ${PG_DB}"
  fi

  # PostGIS: a real CREATE EXTENSION in a scratch database after an install
  # or a (re)start; otherwise the cheap catalogue check keeps `up` fast.
  if ((installed || started)); then
    pg_psql -d postgres -c "DROP DATABASE IF EXISTS insikt_services_postgis_check"
    pg_psql -d postgres -c "CREATE DATABASE insikt_services_postgis_check"
    if ! pg_psql -d insikt_services_postgis_check -c "CREATE EXTENSION postgis"; then
      pg_psql -d postgres -c "DROP DATABASE IF EXISTS insikt_services_postgis_check" || true
      die "CREATE EXTENSION postgis failed"
    fi
    pg_psql -d postgres -c "DROP DATABASE insikt_services_postgis_check"
  elif [[ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")" != 1 ]]; then
    die "the postgis extension is not available"
  fi
}

pg_down() {
  if [[ -f "${PG_CONF_DIR}/postgresql.conf" ]] && pg_running; then
    log "stopping PostgreSQL ${PG_VERSION}/${PG_CLUSTER}"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop -m fast
  fi
}

pg_status() {
  pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
}

# ============================================================================
# Kafka
# ============================================================================

# kafka_pid: print the PID of our running broker, or fail. The pid file is
# trusted only if that process is a kafka.Kafka on our config (PIDs get
# reused); without one, adopt a broker started on our config by an earlier
# run whose pid file was lost.
kafka_pid() {
  local pid=""
  if [[ -f "$KAFKA_PID" ]]; then
    pid="$(cat "$KAFKA_PID" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
      tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF "kafka.Kafka ${KAFKA_CONF}"; then
      echo "$pid"
      return 0
    fi
  fi
  pid="$(pgrep -f -o "kafka\.Kafka ${KAFKA_CONF}\$" || true)"
  if [[ -n "$pid" ]]; then
    echo "$pid" >"$KAFKA_PID"
    echo "$pid"
    return 0
  fi
  return 1
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Run a Kafka main class from the jars, logging quietly to stderr.
kafka_java() {
  java -Xmx256m -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" -cp "${KAFKA_LIBS}/*" "$@"
}

# A metadata round trip (ListTopics) through the Admin client.
kafka_answers() {
  timeout 60 java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" \
    -cp "${KAFKA_LIBS}/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "${KAFKA_HOST}:${KAFKA_PORT}" --list >/dev/null 2>&1
}

# Fetch the jars with Maven when the libs dir is missing or was made from
# another pom (stamp = hash of the pom). Maven caches in ~/.m2, so a re-copy
# after a pom change downloads only what is new.
pom_hash() { sha256sum "$KAFKA_POM" | cut -d' ' -f1; }

kafka_jars_current() {
  [[ -f "${KAFKA_LIBS}/.stamp" && "$(cat "${KAFKA_LIBS}/.stamp")" == "$(pom_hash)" ]]
}

kafka_fetch_jars() {
  kafka_jars_current && return 0

  command -v mvn >/dev/null || apt_install maven
  log "fetching Kafka jars with Maven (scripts/kafka/pom.xml)"
  local tmp="${KAFKA_LIBS}.tmp"
  rm -rf "$tmp"
  mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" >"${KAFKA_LOGS}/mvn.log" 2>&1 ||
    { tail -n 40 "${KAFKA_LOGS}/mvn.log" >&2; die "mvn could not fetch the Kafka jars"; }
  pom_hash >"${tmp}/.stamp"
  # Swap in the complete set only; a broker still running on the old jars
  # keeps its open files.
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
}

# Sets KAFKA_CONFIG_CHANGED=1 when the broker's own config files changed
# (the broker reads them only at start).
KAFKA_CONFIG_CHANGED=0
kafka_write_config() {
  write_if_changed "$KAFKA_CONF" <<EOF && KAFKA_CONFIG_CHANGED=1
# Managed by insikt scripts/services.sh: single-node KRaft broker for
# development, tests and CI. Not for production.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://${KAFKA_HOST}:${KAFKA_PORT},CONTROLLER://${KAFKA_HOST}:${KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://${KAFKA_HOST}:${KAFKA_PORT}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# Dynamic quorum with this node as the only voter (formatted --standalone).
controller.quorum.bootstrap.servers=${KAFKA_HOST}:${KAFKA_CONTROLLER_PORT}
log.dirs=${KAFKA_DATA}

# One node: every internal topic with a single replica.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# The app creates its topics explicitly; auto-creation stays on for ad-hoc use.
auto.create.topics.enable=true
delete.topic.enable=true
# Fast first consumer-group join in tests.
group.initial.rebalance.delay.ms=0
# Tests use short retention.ms; check for expired segments often.
log.retention.check.interval.ms=5000
EOF

  write_if_changed "$KAFKA_LOG4J" <<EOF && KAFKA_CONFIG_CHANGED=1
# Managed by insikt scripts/services.sh: broker log to ${KAFKA_LOGS}/server.log
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${KAFKA_LOGS}/server.log
appender.file.filePattern = ${KAFKA_LOGS}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
EOF
  true # (a config that was already up to date is no error)

  write_if_changed "$KAFKA_TOOLS_LOG4J" <<'EOF' || true
# Managed by insikt scripts/services.sh: command-line tools log warnings to stderr.
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF
}

kafka_fail() {
  log "$1; last lines of ${KAFKA_LOGS}/server.log and kafka.out:"
  tail -n 40 "${KAFKA_LOGS}/server.log" >&2 2>/dev/null || true
  tail -n 20 "${KAFKA_LOGS}/kafka.out" >&2 2>/dev/null || true
  exit 1
}

kafka_up() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  mkdir -p "$KAFKA_DIR" "$KAFKA_DATA" "$KAFKA_LOGS"

  kafka_write_config
  if [[ -n "$(cluster_running_nodes)" ]]; then
    log "the three-broker cluster holds the broker's ports: stopping it"
    cluster_down
  fi
  local pid
  if pid="$(kafka_pid)"; then
    if ! kafka_jars_current || ((KAFKA_CONFIG_CHANGED)); then
      # A changed pom or config (e.g. after a pull) takes effect right away.
      log "Kafka jars or config changed: restarting the broker"
      kafka_down
    elif tcp_open "$KAFKA_HOST" "$KAFKA_PORT" && kafka_answers; then
      return 0 # already up: the fast path
    fi
  fi

  kafka_fetch_jars

  if ! pid="$(kafka_pid)"; then
    rm -f "$KAFKA_PID"
    if tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
      die "something else listens on ${KAFKA_HOST}:${KAFKA_PORT}; stop it first"
    fi
    # KRaft needs formatted storage once; meta.properties marks it done.
    if [[ ! -f "${KAFKA_DATA}/meta.properties" ]]; then
      log "formatting Kafka storage (KRaft, cluster id ${KAFKA_CLUSTER_ID})"
      kafka_java kafka.tools.StorageTool format --standalone \
        --cluster-id "$KAFKA_CLUSTER_ID" --config "$KAFKA_CONF" \
        >"${KAFKA_LOGS}/format.log" 2>&1 ||
        { cat "${KAFKA_LOGS}/format.log" >&2; die "kafka storage format failed"; }
    fi
    log "starting Kafka broker on ${KAFKA_HOST}:${KAFKA_PORT}"
    # setsid + nohup: the broker outlives this shell and its session/terminal.
    # The main class argument doubles as the marker kafka_pid() looks for.
    setsid nohup java -Xms512m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$KAFKA_LOGS" \
      -cp "${KAFKA_LIBS}/*" kafka.Kafka "$KAFKA_CONF" \
      >>"${KAFKA_LOGS}/kafka.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$KAFKA_PID"
  fi

  # Wait for the listener, then for a real metadata answer.
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || kafka_fail "the Kafka broker exited during startup"
    if tcp_open "$KAFKA_HOST" "$KAFKA_PORT" && kafka_answers; then
      return 0
    fi
    sleep 1
  done
  kafka_fail "the Kafka broker did not answer within ${KAFKA_START_TIMEOUT}s"
}

kafka_down() {
  local pid i
  if ! pid="$(kafka_pid)"; then
    rm -f "$KAFKA_PID"
    return 0
  fi
  log "stopping Kafka broker (pid ${pid})"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < KAFKA_STOP_TIMEOUT; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "Kafka did not stop within ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$KAFKA_PID"
}

kafka_status() {
  kafka_pid >/dev/null && tcp_open "$KAFKA_HOST" "$KAFKA_PORT"
}

# ============================================================================
# Kafka, three brokers (`--brokers 3`): what production runs, for tests/cluster.rs
# ============================================================================
# Three brokers (node ids 1-3) and a quorum of three dedicated KRaft
# controllers (ids 11-13), replication factor 3, min.insync.replicas=2: any
# one broker may die and every write still reaches two replicas. Dedicated
# controllers, as production clusters run them: with two brokers down the
# quorum still shrinks the in-sync replicas, so the last broker refuses
# writes (NOT_ENOUGH_REPLICAS) instead of holding them against brokers it
# cannot know are gone. The brokers take the one broker's ports, so
# `up --brokers 3` stops the one broker of this state dir and `up` stops the
# cluster: both orders work, and each `up` again is a no-op.
#
# Nodes are named b1..b3 (brokers) and c1..c3 (controllers).
CLUSTER_NODES=3
CLUSTER_ALL=(c1 c2 c3 b1 b2 b3)

node_dir() { echo "${CLUSTER_DIR}/$1"; }
node_conf() { echo "$(node_dir "$1")/server.properties"; }
node_index() { echo "${1:1}"; }
node_id() { if [[ $1 == b* ]]; then node_index "$1"; else echo $((10 + $(node_index "$1"))); fi; }
node_port() {
  if [[ $1 == b* ]]; then echo $((KAFKA_PORT_BASE + $(node_index "$1") - 1)); else
    echo $((KAFKA_CONTROLLER_PORT_BASE + $(node_index "$1") - 1)); fi
}

# node_pid NODE: the PID of the node's running JVM, or fail (as kafka_pid).
node_pid() {
  local conf pid_file pid
  conf="$(node_conf "$1")"
  pid_file="$(node_dir "$1")/kafka.pid"
  if [[ -f "$pid_file" ]]; then
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
      tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF "kafka.Kafka ${conf}"; then
      echo "$pid"
      return 0
    fi
  fi
  pid="$(pgrep -f -o "kafka\.Kafka ${conf}\$" || true)"
  [[ -n "$pid" ]] || return 1
  echo "$pid" >"$pid_file"
  echo "$pid"
}

cluster_bootstrap() {
  local n out=()
  for ((n = 1; n <= CLUSTER_NODES; n++)); do out+=("${KAFKA_HOST}:$(node_port "b$n")"); done
  (IFS=,; echo "${out[*]}")
}

cluster_running_nodes() {
  local node
  for node in "${CLUSTER_ALL[@]}"; do node_pid "$node" >/dev/null && echo "$node"; done
  true
}

# Sets CLUSTER_CONFIG_CHANGED to the nodes whose config changed.
CLUSTER_CONFIG_CHANGED=()
cluster_write_config() {
  local n node voters="" dir roles listeners
  for ((n = 1; n <= CLUSTER_NODES; n++)); do
    voters+="${voters:+,}$(node_id "c$n")@${KAFKA_HOST}:$(node_port "c$n")"
  done
  for node in "${CLUSTER_ALL[@]}"; do
    dir="$(node_dir "$node")"
    mkdir -p "${dir}/data" "${dir}/logs"
    if [[ $node == b* ]]; then
      roles=broker
      listeners="listeners=PLAINTEXT://${KAFKA_HOST}:$(node_port "$node")
advertised.listeners=PLAINTEXT://${KAFKA_HOST}:$(node_port "$node")
inter.broker.listener.name=PLAINTEXT"
    else
      roles=controller
      listeners="listeners=CONTROLLER://${KAFKA_HOST}:$(node_port "$node")"
    fi
    write_if_changed "$(node_conf "$node")" <<EOC && CLUSTER_CONFIG_CHANGED+=("$node")
# Managed by insikt scripts/services.sh: ${roles} ${node} (node.id $(node_id "$node"))
# of a three-broker KRaft cluster with three dedicated controllers, for the
# fault tests. Not for production, but replicated as production is.
process.roles=${roles}
node.id=$(node_id "$node")
${listeners}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.voters=${voters}
log.dirs=${dir}/data

# Replicated as production clusters are: a write is acknowledged by at
# least two replicas, so one broker may die without losing it.
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
# Fewer internal partitions than the default 50 each: three replicas of 100
# partitions on a 2-core machine slow every leader election after a kill.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
# Threads for 2 cores and six JVMs, not for a 32-core server.
num.network.threads=2
num.io.threads=4
num.replica.fetchers=1
background.threads=4

auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
log.retention.check.interval.ms=5000
EOC
    write_if_changed "${dir}/log4j2.properties" < <(sed "s#${KAFKA_LOGS}#${dir}/logs#g" "$KAFKA_LOG4J") &&
      CLUSTER_CONFIG_CHANGED+=("$node")
  done
  true
}

# A metadata round trip: all three brokers registered and answering.
cluster_answers() {
  local brokers
  brokers="$(timeout 60 java -Xmx256m -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" -cp "${KAFKA_LIBS}/*" \
    org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$(cluster_bootstrap)" 2>/dev/null | grep -c ') -> ($' || true)"
  [[ "$brokers" == "$CLUSTER_NODES" ]]
}

node_fail() {
  local dir
  dir="$(node_dir "$1")"
  log "$2; last lines of ${dir}/logs/server.log and kafka.out:"
  tail -n 40 "${dir}/logs/server.log" >&2 2>/dev/null || true
  tail -n 20 "${dir}/logs/kafka.out" >&2 2>/dev/null || true
  exit 1
}

node_start() {
  local node=$1 dir conf pid heap=512m
  dir="$(node_dir "$node")"
  conf="$(node_conf "$node")"
  tcp_open "$KAFKA_HOST" "$(node_port "$node")" &&
    die "something else listens on ${KAFKA_HOST}:$(node_port "$node"); stop it first"
  if [[ ! -f "${dir}/data/meta.properties" ]]; then
    log "formatting ${node}'s storage (KRaft, cluster id ${CLUSTER_ID})"
    kafka_java kafka.tools.StorageTool format --cluster-id "$CLUSTER_ID" --config "$conf" \
      >"${dir}/logs/format.log" 2>&1 ||
      { cat "${dir}/logs/format.log" >&2; die "${node}: kafka storage format failed"; }
  fi
  # Six JVMs on 24 GiB: a broker's heap is the one broker's (the page cache,
  # not the heap, holds the logs); a controller keeps only the metadata.
  [[ $node == b* ]] || heap=256m
  log "starting Kafka ${node} on ${KAFKA_HOST}:$(node_port "$node")"
  setsid nohup java "-Xms${heap}" "-Xmx${heap}" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="${dir}/log4j2.properties" -Dkafka.logs.dir="${dir}/logs" \
    -cp "${KAFKA_LIBS}/*" kafka.Kafka "$conf" \
    >>"${dir}/logs/kafka.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"${dir}/kafka.pid"
}

node_stop() {
  local node=$1 signal=${2:-TERM} pid i
  pid="$(node_pid "$node")" || { rm -f "$(node_dir "$node")/kafka.pid"; return 0; }
  log "stopping Kafka ${node} (pid ${pid}, SIG${signal})"
  kill "-${signal}" "$pid" 2>/dev/null || true
  for ((i = 0; i < KAFKA_STOP_TIMEOUT * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "${node} did not stop within ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$(node_dir "$node")/kafka.pid"
}

cluster_up() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  mkdir -p "$KAFKA_DIR" "$KAFKA_LOGS" "$CLUSTER_DIR"
  # The jars and the log settings are the one broker's.
  kafka_write_config
  kafka_fetch_jars
  if kafka_pid >/dev/null; then
    log "the one broker holds the cluster's ports: stopping it"
    kafka_down
  fi
  cluster_write_config
  local node started=()
  for node in "${CLUSTER_CONFIG_CHANGED[@]}"; do
    if node_pid "$node" >/dev/null; then
      log "${node}'s config changed: restarting it"
      node_stop "$node"
    fi
  done
  for node in "${CLUSTER_ALL[@]}"; do
    node_pid "$node" >/dev/null || { node_start "$node"; started+=("$node"); }
  done
  if ((${#started[@]} == 0)) && cluster_answers; then
    return 0 # already up: the fast path
  fi

  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    for node in "${started[@]}"; do
      node_pid "$node" >/dev/null || node_fail "$node" "Kafka ${node} exited during startup"
    done
    cluster_answers && return 0
    sleep 1
  done
  node_fail "${started[0]:-b1}" "the cluster did not list its ${CLUSTER_NODES} brokers within ${KAFKA_START_TIMEOUT}s"
}

cluster_down() {
  local node
  for node in b3 b2 b1 c3 c2 c1; do node_stop "$node"; done
}

cluster_status() {
  [[ "$(cluster_running_nodes | wc -l)" == "${#CLUSTER_ALL[@]}" ]] && tcp_open "$KAFKA_HOST" "$KAFKA_PORT"
}

# ============================================================================
# Browser (for tests/console.rs; nothing to start, the test runs chromedriver)
# ============================================================================
browser_up() {
  apt_install chromium chromium-driver
}

# ============================================================================
# S3 (moto_server)
# ============================================================================

# s3_pid: print the PID of our running moto_server, or fail.
s3_pid() {
  local pid
  [[ -f "$S3_PID" ]] || return 1
  pid="$(cat "$S3_PID" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF "moto_server" || return 1
  echo "$pid"
}

s3_answers() {
  curl -fsS -o /dev/null --max-time 5 "http://${S3_HOST}:${S3_PORT}/" 2>/dev/null
}

s3_install() {
  [[ -x "${S3_VENV}/bin/moto_server" && "$(cat "${S3_VENV}/.stamp" 2>/dev/null)" == "$MOTO_VERSION" ]] && return 0
  command -v python3 >/dev/null || apt_install python3
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  command -v curl >/dev/null || apt_install curl
  log "installing moto[server]==${MOTO_VERSION} into ${S3_VENV}"
  rm -rf "$S3_VENV"
  python3 -m venv "$S3_VENV"
  "${S3_VENV}/bin/pip" install -q --disable-pip-version-check "moto[server]==${MOTO_VERSION}" >"${S3_DIR}/pip.log" 2>&1 ||
    { tail -n 30 "${S3_DIR}/pip.log" >&2; die "pip could not install moto"; }
  echo "$MOTO_VERSION" >"${S3_VENV}/.stamp"
}

s3_up() {
  mkdir -p "$S3_DIR"
  s3_install
  local pid
  if ! pid="$(s3_pid)"; then
    tcp_open "$S3_HOST" "$S3_PORT" && die "something else listens on ${S3_HOST}:${S3_PORT}; stop it first"
    log "starting moto S3 server on ${S3_HOST}:${S3_PORT}"
    setsid nohup "${S3_VENV}/bin/moto_server" -H "$S3_HOST" -p "$S3_PORT" \
      >>"$S3_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$S3_PID"
  fi
  local deadline=$((SECONDS + S3_START_TIMEOUT))
  until s3_answers; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$S3_LOG" >&2; die "moto_server exited during startup"; }
    ((SECONDS < deadline)) || { tail -n 20 "$S3_LOG" >&2; die "moto_server did not answer within ${S3_START_TIMEOUT}s"; }
    sleep 0.2
  done
  # The bucket (again after a restart: moto keeps everything in memory).
  curl -fsS -o /dev/null -X PUT "http://${S3_HOST}:${S3_PORT}/${S3_BUCKET}" ||
    die "could not create the bucket ${S3_BUCKET}"
}

s3_down() {
  local pid
  if pid="$(s3_pid)"; then
    log "stopping moto S3 server (pid ${pid})"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$S3_PID"
}

s3_status() {
  s3_pid >/dev/null && s3_answers
}

# ============================================================================
# Commands
# ============================================================================
summary() {
  local pg="down" kafka="down" s3="down" pid n nodes=()
  pg_status && pg="up   postgres://postgres@${PG_HOST}:${PG_PORT}/${PG_DB} (PostgreSQL ${PG_VERSION}/${PG_CLUSTER})"
  if kafka_status; then
    pid="$(kafka_pid)"
    kafka="up   ${KAFKA_HOST}:${KAFKA_PORT} (pid ${pid}, logs ${KAFKA_LOGS})"
  elif [[ -n "$(cluster_running_nodes)" ]]; then
    for n in "${CLUSTER_ALL[@]}"; do
      if pid="$(node_pid "$n")"; then nodes+=("${n}:${pid}"); else nodes+=("${n}:down"); fi
    done
    kafka="$(cluster_status && echo "up  " || echo degraded) $(cluster_bootstrap) (pids ${nodes[*]}; logs ${CLUSTER_DIR}/*/logs)"
  fi
  s3_status && s3="up   http://${S3_HOST}:${S3_PORT} bucket ${S3_BUCKET} (moto ${MOTO_VERSION}, log ${S3_LOG})"
  printf 'postgresql: %s\nkafka:      %s\ns3:         %s\n' "$pg" "$kafka" "$s3"
}

usage() {
  cat >&2 <<EOU
usage: $0 up|down|status [postgres|kafka|s3] [--brokers 1|3]
       $0 down|crash kafka --node N   (broker N of the three-broker cluster:
                                       SIGTERM, or SIGKILL as a crash)
       $0 crash postgres              (immediate stop, as a crash)
EOU
  exit 2
}

# A caller's open files (e.g. `flock /work/locks/services scripts/services.sh
# up`, whose lock fd a started PostgreSQL or broker would inherit and hold for
# its whole life, locking everyone else out) are closed before any daemon starts.
close_inherited_fds() {
  local fd
  for fd in $(ls /proc/$$/fd); do
    ((fd > 2)) && eval "exec ${fd}>&-" 2>/dev/null
  done
  return 0
}

main() {
  local args=() brokers=1 node=""
  close_inherited_fds
  while (($#)); do
    case "$1" in
    --brokers) brokers="${2:-}"; shift 2 || usage ;;
    --node) node="${2:-}"; shift 2 || usage ;;
    *) args+=("$1"); shift ;;
    esac
  done
  [[ "$brokers" == 1 || "$brokers" == 3 ]] || usage
  [[ -z "$node" || "$node" =~ ^[1-3]$ ]] || usage
  set -- "${args[@]}"
  (($# == 1 || $# == 2)) || usage
  local only="${2:-}"
  [[ -z "$only" || "$only" == postgres || "$only" == kafka || "$only" == s3 ]] || usage
  [[ $EUID -eq 0 ]] || die "run as root (installs packages, runs pg_ctlcluster)"

  # One run at a time: two concurrent `up`s would race on apt and on the
  # broker start. Re-run this script under `flock -o`: the lock is held by
  # the flock process only, so the daemons we start (postgres, the broker)
  # do not inherit the lock's file descriptor and block later runs.
  if [[ -z "${INSIKT_SERVICES_LOCKED:-}" ]]; then
    mkdir -p "$STATE_DIR"
    INSIKT_SERVICES_LOCKED=1 exec flock -o "${STATE_DIR}/services.lock" \
      bash "${BASH_SOURCE[0]}" "${args[@]}" --brokers "$brokers" ${node:+--node "$node"}
  fi

  if [[ -n "$node" ]]; then
    [[ "$only" == kafka && ("$1" == down || "$1" == crash) ]] || usage
    if [[ "$1" == crash ]]; then node_stop "b$node" KILL; else node_stop "b$node"; fi
    summary
    return 0
  fi

  case "$1" in
  up)
    [[ -n "$only" && "$only" != postgres ]] || pg_up
    if [[ -z "$only" || "$only" == kafka ]]; then
      if ((brokers == 3)); then cluster_up; else kafka_up; fi
    fi
    [[ -n "$only" && "$only" != s3 ]] || s3_up
    [[ -n "$only" ]] || browser_up
    summary
    ;;
  down)
    [[ -n "$only" && "$only" != s3 ]] || s3_down
    # Whichever runs, the one broker or the cluster.
    if [[ -z "$only" || "$only" == kafka ]]; then
      cluster_down
      kafka_down
    fi
    [[ -n "$only" && "$only" != postgres ]] || pg_down
    summary
    ;;
  crash)
    [[ "$only" == postgres ]] || usage
    # No checkpoint, no goodbye to clients: what a power cut leaves.
    log "crashing PostgreSQL ${PG_VERSION}/${PG_CLUSTER} (immediate stop)"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop -m immediate
    summary
    ;;
  status)
    summary
    local kafka_ok=1
    if ((brokers == 3)); then cluster_status || kafka_ok=0; else kafka_status || kafka_ok=0; fi
    if [[ "$only" == kafka ]]; then ((kafka_ok)) && exit 0 || exit 1; fi
    if pg_status && ((kafka_ok)) && s3_status; then exit 0; else exit 1; fi
    ;;
  *) usage ;;
  esac
}

main "$@"
