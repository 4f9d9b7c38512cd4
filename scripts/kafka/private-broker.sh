#!/usr/bin/env bash
# A Kafka broker of a benchmark's own, for benchmarks that make thousands of
# topics: the shared development broker (scripts/services.sh, 512 MiB heap)
# runs out of heap with some 5,000 more partitions, and would take every
# other user's tests down with it. Same jars (those scripts/services.sh
# fetched), same KRaft single-node settings, its own ports, data directory
# and heap; gone when the benchmark ends.
#
# Sourced: `private_kafka_up` starts it and exports INSIKT_KAFKA_BROKERS;
# `private_kafka_down` stops it and removes its data (also on EXIT).
# Settings: BENCH_KAFKA_PORT (default 19092; the controller takes the next),
# BENCH_KAFKA_HEAP (default 2g). Used by `scripts/bench.sh jobs` when
# BENCH_PRIVATE_KAFKA=1.

PRIVATE_KAFKA_LIBS="${INSIKT_SERVICES_DIR:-/var/lib/insikt-dev}/kafka/libs"
PRIVATE_KAFKA_PORT="${BENCH_KAFKA_PORT:-19092}"
PRIVATE_KAFKA_HEAP="${BENCH_KAFKA_HEAP:-2g}"
PRIVATE_KAFKA_DIR=""
PRIVATE_KAFKA_PID=""

private_kafka_up() {
  [[ -d "$PRIVATE_KAFKA_LIBS" ]] || { echo "no Kafka jars in $PRIVATE_KAFKA_LIBS: run scripts/services.sh up" >&2; return 1; }
  local controller=$((PRIVATE_KAFKA_PORT + 1))
  if (exec 3<>"/dev/tcp/127.0.0.1/${PRIVATE_KAFKA_PORT}") 2>/dev/null; then
    echo "something already listens on 127.0.0.1:${PRIVATE_KAFKA_PORT} (BENCH_KAFKA_PORT)" >&2
    return 1
  fi
  PRIVATE_KAFKA_DIR="$(mktemp -d /tmp/insikt-bench-kafka.XXXXXX)"
  trap private_kafka_down EXIT
  cat >"${PRIVATE_KAFKA_DIR}/server.properties" <<EOF
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:${PRIVATE_KAFKA_PORT},CONTROLLER://127.0.0.1:${controller}
advertised.listeners=PLAINTEXT://127.0.0.1:${PRIVATE_KAFKA_PORT}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:${controller}
log.dirs=${PRIVATE_KAFKA_DIR}/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
EOF
  cat >"${PRIVATE_KAFKA_DIR}/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${PRIVATE_KAFKA_DIR}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
EOF
  java -Xmx256m -Dlog4j2.configurationFile="${PRIVATE_KAFKA_DIR}/log4j2.properties" \
    -cp "${PRIVATE_KAFKA_LIBS}/*" kafka.tools.StorageTool format --standalone \
    --cluster-id "$(java -cp "${PRIVATE_KAFKA_LIBS}/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
    --config "${PRIVATE_KAFKA_DIR}/server.properties" >"${PRIVATE_KAFKA_DIR}/format.log" 2>&1 ||
    { cat "${PRIVATE_KAFKA_DIR}/format.log" >&2; return 1; }
  java "-Xms${PRIVATE_KAFKA_HEAP}" "-Xmx${PRIVATE_KAFKA_HEAP}" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="${PRIVATE_KAFKA_DIR}/log4j2.properties" \
    -cp "${PRIVATE_KAFKA_LIBS}/*" kafka.Kafka "${PRIVATE_KAFKA_DIR}/server.properties" \
    >"${PRIVATE_KAFKA_DIR}/kafka.out" 2>&1 </dev/null &
  PRIVATE_KAFKA_PID=$!
  echo "$PRIVATE_KAFKA_PID" >"${PRIVATE_KAFKA_DIR}/kafka.pid"
  local deadline=$((SECONDS + 120))
  until timeout 60 java -Xmx256m -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="${PRIVATE_KAFKA_DIR}/log4j2.properties" \
    -cp "${PRIVATE_KAFKA_LIBS}/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "127.0.0.1:${PRIVATE_KAFKA_PORT}" --list >/dev/null 2>&1; do
    kill -0 "$PRIVATE_KAFKA_PID" 2>/dev/null || { tail -20 "${PRIVATE_KAFKA_DIR}/kafka.out" >&2; return 1; }
    ((SECONDS < deadline)) || { echo "the private broker did not answer in 120 s" >&2; return 1; }
    sleep 1
  done
  export INSIKT_KAFKA_BROKERS="127.0.0.1:${PRIVATE_KAFKA_PORT}"
  export INSIKT_BENCH_BROKER_PID_FILE="${PRIVATE_KAFKA_DIR}/kafka.pid"
  echo "(private Kafka broker on ${INSIKT_KAFKA_BROKERS}, heap ${PRIVATE_KAFKA_HEAP}, pid ${PRIVATE_KAFKA_PID})"
}

private_kafka_down() {
  if [[ -n "$PRIVATE_KAFKA_PID" ]] && kill -0 "$PRIVATE_KAFKA_PID" 2>/dev/null; then
    kill -TERM "$PRIVATE_KAFKA_PID" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$PRIVATE_KAFKA_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL "$PRIVATE_KAFKA_PID" 2>/dev/null || true
  fi
  PRIVATE_KAFKA_PID=""
  [[ -n "$PRIVATE_KAFKA_DIR" ]] && rm -rf "$PRIVATE_KAFKA_DIR"
  PRIVATE_KAFKA_DIR=""
}
