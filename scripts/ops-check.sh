#!/usr/bin/env bash
# Checks the deployment files and really deploys with them:
#   1. tools into the git-ignored .ops/ (pinned): ansible-core, ansible-lint
#      and kubernetes-validate from PyPI (scripts/ops-requirements.txt) in
#      .ops/venv; kustomize built with `go install` through the Go module
#      proxy into .ops/bin
#   2. ansible-playbook --syntax-check (both inventories), ansible-lint
#      (production profile)
#   3. k8s/: kubernetes-validate --strict on every manifest and on the
#      `kustomize build` output, built without network (unshare -n)
#   4. the deploy test: ansible/site.yml with inventories/local against this
#      machine (connection local) installs and starts insikt as a separate
#      instance (127.0.0.1:18080, database insikt_ansible, /opt|/etc|/var/lib|
#      /var/log/insikt-ansible-test), checks /readyz, that reads need a token
#      and that the host holds token digests only, runs again and requires
#      changed=0, then stops and removes what it installed. The shared
#      PostgreSQL and Kafka are used, never reconfigured or restarted.
#
#   5. with --full, also all three roles (inventories/local-full): a second
#      PostgreSQL cluster 15/ansibletest on 15432 with a password-protected
#      role and database, a second Kafka broker on 19092 (jars from Maven
#      Central), and insikt on 18081 using both; same three checks, then all
#      of it removed. Slower (a few minutes), so not part of scripts/test.sh.
#
# Usage: scripts/ops-check.sh [--static] [--full] [--keep]
#   --static  steps 1-3 only (no deploy)
#   --full    step 5 too
#   --keep    leave the deployed test instances running
# INSIKT_BINARY=path deploys that binary (default target/release/insikt,
# built when missing). Needs root, PostgreSQL and Kafka up (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

STATIC=0
KEEP=0
FULL=0
for arg in "$@"; do
  case "$arg" in
  --static) STATIC=1 ;;
  --keep) KEEP=1 ;;
  --full) FULL=1 ;;
  *)
    echo "usage: $0 [--static] [--full] [--keep]" >&2
    exit 2
    ;;
  esac
done

KUSTOMIZE_VERSION=v5.5.0
OPS_DIR="${ROOT}/.ops"
VENV="${OPS_DIR}/venv"
REQUIREMENTS="${ROOT}/scripts/ops-requirements.txt"
INVENTORY_LOCAL=inventories/local/hosts.yml
VAULT_PASSWORD_FILE=inventories/local/vault-password.txt
TEST_INSTANCE=insikt-ansible-test
TEST_PORT=18080
TEST_DB=insikt_ansible

log() { printf '[ops-check] %s\n' "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}
step_start() {
  STEP_T0=$SECONDS
  log "== $*"
}
step_done() { log "   done in $((SECONDS - STEP_T0))s"; }
T0=$SECONDS

# --- 1. tools -----------------------------------------------------------------
step_start "tools (.ops/)"
mkdir -p "$OPS_DIR"
want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [[ "$(cat "${VENV}/.stamp" 2>/dev/null || true)" != "$want" ]]; then
  log "creating ${VENV} from scripts/ops-requirements.txt"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "${VENV}/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  echo "$want" >"${VENV}/.stamp"
fi
export PATH="${VENV}/bin:${OPS_DIR}/bin:${PATH}"

# `go install` builds report "(devel)" as their version: a stamp records it.
if [[ ! -x "${OPS_DIR}/bin/kustomize" || "$(cat "${OPS_DIR}/bin/.kustomize-version" 2>/dev/null || true)" != "$KUSTOMIZE_VERSION" ]]; then
  command -v go >/dev/null || die "go is needed to build kustomize (go install via the Go module proxy)"
  log "building kustomize ${KUSTOMIZE_VERSION} (go install)"
  GOBIN="${OPS_DIR}/bin" go install "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
  echo "$KUSTOMIZE_VERSION" >"${OPS_DIR}/bin/.kustomize-version"
fi
log "$(ansible --version | head -1); ansible-lint $(ansible-lint --nocolor --version | awk '{print $2; exit}'); kubernetes-validate $(kubernetes-validate --version); kustomize ${KUSTOMIZE_VERSION}"
step_done

# --- 2. ansible ---------------------------------------------------------------
step_start "ansible-playbook --syntax-check"
cd "${ROOT}/ansible"
ansible-playbook -i "$INVENTORY_LOCAL" --vault-password-file "$VAULT_PASSWORD_FILE" --syntax-check site.yml
ansible-playbook -i inventories/example/hosts.yml --syntax-check site.yml
step_done

step_start "ansible-lint --profile production"
ANSIBLE_VAULT_PASSWORD_FILE="$VAULT_PASSWORD_FILE" ansible-lint --nocolor --offline --profile production
step_done

# --- 3. kubernetes --------------------------------------------------------------
step_start "k8s/: kubernetes-validate --strict, kustomize build (offline)"
cd "${ROOT}/k8s"
manifests=()
for f in *.yaml; do [[ "$f" == kustomization.yaml ]] || manifests+=("$f"); done
kubernetes-validate --strict --quiet "${manifests[@]}"
built="${OPS_DIR}/k8s-built.yaml"
# A network namespace of its own: the build must need nothing remote.
if unshare -n true 2>/dev/null; then
  unshare -n kustomize build . >"$built"
else
  log "unshare -n unavailable; building with the network reachable"
  kustomize build . >"$built"
fi
kubernetes-validate --strict --quiet "$built"
# Where kubectl is installed, `kubectl kustomize` (its embedded kustomize)
# must build the same offline.
if command -v kubectl >/dev/null && unshare -n true 2>/dev/null; then
  unshare -n kubectl kustomize . >"${OPS_DIR}/k8s-built-kubectl.yaml"
  if cmp -s "$built" "${OPS_DIR}/k8s-built-kubectl.yaml"; then
    log "   kubectl kustomize (offline) builds the same"
  else
    log "   note: kubectl kustomize's output differs from kustomize ${KUSTOMIZE_VERSION}'s (another embedded version?)"
  fi
fi
kinds="$(grep -c '^kind:' "$built")"
log "   ${#manifests[@]} manifests valid; kustomize built ${kinds} resources, valid"
step_done

if ((STATIC)); then
  log "static checks passed in $((SECONDS - T0))s"
  exit 0
fi

# --- 4. deploy test -------------------------------------------------------------
[[ $EUID -eq 0 ]] || die "the deploy test needs root"
cd "$ROOT"
BINARY="${INSIKT_BINARY:-${ROOT}/target/release/insikt}"
if [[ ! -x "$BINARY" ]]; then
  step_start "cargo build --release (no binary at ${BINARY})"
  cargo build --release --locked
  step_done
fi
INSIKT_BINARY="$(realpath "$BINARY")"
export INSIKT_BINARY

# One deploy test at a time on this machine (CI and a developer share it).
exec 9>/var/lock/insikt-ops-check.lock
flock 9

readyz_status() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz" || true; }

# remove_instance NAME: stop and delete an insikt instance the playbook made.
remove_instance() {
  local name=${1:?}
  if [[ -x "/opt/${name}/bin/insikt-ctl" ]]; then "/opt/${name}/bin/insikt-ctl" stop >/dev/null || true; fi
  rm -rf "/opt/${name:?}" "/etc/${name:?}" "/var/lib/${name:?}" "/var/log/${name:?}" "/run/${name:?}"
  if id "$name" >/dev/null 2>&1; then userdel "$name" || true; fi
  if getent group "$name" >/dev/null; then groupdel "$name" || true; fi
}

cleanup_local() {
  log "== cleanup: removing the test instance ${TEST_INSTANCE} and database ${TEST_DB}"
  remove_instance "$TEST_INSTANCE"
  psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres \
    -c "DROP DATABASE IF EXISTS ${TEST_DB} WITH (FORCE)" || true
}

# The --full test's own cluster, broker and instance (inventories/local-full);
# never the shared 15/main cluster or the broker on 9092.
cleanup_full() {
  log "== cleanup: removing ${FULL_INSTANCE}, the broker on ${FULL_KAFKA_PORT} and cluster 15/${FULL_PG_CLUSTER}"
  remove_instance "$FULL_INSTANCE"
  if [[ -x /opt/kafka-ansible-test/bin/kafka-ctl ]]; then /opt/kafka-ansible-test/bin/kafka-ctl stop >/dev/null || true; fi
  rm -rf /opt/kafka-ansible-test /var/lib/kafka-ansible-test /var/log/kafka-ansible-test /run/kafka-ansible-test
  if id kafka-ansible-test >/dev/null 2>&1; then userdel kafka-ansible-test || true; fi
  if getent group kafka-ansible-test >/dev/null; then groupdel kafka-ansible-test || true; fi
  if [[ -d "/etc/postgresql/15/${FULL_PG_CLUSTER}" ]]; then pg_dropcluster --stop 15 "$FULL_PG_CLUSTER" || true; fi
}
FULL_INSTANCE=insikt-ansible-full
FULL_PORT=18081
FULL_KAFKA_PORT=19092
FULL_PG_CLUSTER=ansibletest

cleanup() {
  cleanup_local
  if ((FULL)); then cleanup_full; fi
}

# run_playbook INVENTORY OUT: site.yml against this machine; the output goes to
# OUT and the PLAY RECAP line of localhost is echoed.
run_playbook() {
  (cd "${ROOT}/ansible" && ansible-playbook -i "$1" \
    --vault-password-file "$VAULT_PASSWORD_FILE" site.yml) >"$2" 2>&1 ||
    {
      tail -n 60 "$2" >&2
      die "ansible-playbook -i $1 failed (full output: $2)"
    }
  grep -E '^localhost +: ' "$2"
}

# deploy_test LABEL INVENTORY INSTANCE PORT: first run deploys and /readyz is
# 200, a second run changes nothing, a killed service comes back.
deploy_test() {
  local label=$1 inventory=$2 instance=$3 port=$4 recap pid newpid ok
  if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
    die "something else listens on 127.0.0.1:${port}"
  fi

  step_start "deploy (${label}): ansible-playbook -i ${inventory} site.yml, first run (${INSIKT_BINARY})"
  recap="$(run_playbook "$inventory" "${OPS_DIR}/deploy-${label}-1.log")"
  log "   ${recap}"
  [[ "$recap" =~ changed=[1-9] ]] || die "the first run changed nothing"
  [[ "$(readyz_status "$port")" == 200 ]] || die "/readyz on ${port} is not 200"
  log "   GET 127.0.0.1:${port}/readyz -> 200"
  # Never open: reads need a token, and the host holds token digests only.
  local env_file="/etc/${instance}/insikt.env" jobs
  jobs="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port}/jobs" || true)"
  [[ "$jobs" == 401 ]] || die "GET /jobs without a token answered ${jobs}, not 401: the service runs open"
  grep -q "^INSIKT_REQUIRE_TOKENS='true'" "$env_file" || die "${env_file} does not require tokens"
  grep -Eq "^INSIKT_(READ|WRITE)_TOKENS='[^']*:[0-9a-f]{64}" "$env_file" || die "${env_file} configures no read or write token digest"
  if grep -Eq "test-(read|write|admin)-token|^INSIKT_ADMIN_TOKEN=" "$env_file"; then
    die "${env_file} holds a plaintext token"
  fi
  log "   GET /jobs without a token -> 401; ${env_file} holds token digests only"
  step_done

  step_start "deploy (${label}): a second run changes nothing"
  recap="$(run_playbook "$inventory" "${OPS_DIR}/deploy-${label}-2.log")"
  log "   ${recap}"
  [[ "$recap" =~ changed=0\  && "$recap" =~ failed=0\  ]] || {
    grep -B3 '^changed:' "${OPS_DIR}/deploy-${label}-2.log" >&2 || true
    die "the second run was not idempotent"
  }
  [[ "$(readyz_status "$port")" == 200 ]] || die "/readyz on ${port} is not 200 after the second run"
  step_done

  step_start "deploy (${label}): the supervisor restarts a killed service"
  pid="$(pgrep -u "$instance" -f "/opt/${instance}/bin/insikt serve" | head -1 || true)"
  [[ -n "$pid" ]] || die "no running insikt of ${instance}"
  kill -KILL "$pid"
  ok=0
  for _ in $(seq 1 30); do
    sleep 1
    if [[ "$(readyz_status "$port")" == 200 ]]; then
      ok=1
      break
    fi
  done
  ((ok)) || die "insikt did not come back after being killed"
  newpid="$(pgrep -u "$instance" -f "/opt/${instance}/bin/insikt serve" | head -1 || true)"
  [[ -n "$newpid" && "$newpid" != "$pid" ]] || die "no new process serves"
  log "   killed pid ${pid}; pid ${newpid} serves /readyz 200"
  step_done
}

# A left-over instance of an interrupted run would make the first run a
# no-op: start from nothing.
cleanup
((KEEP)) || trap cleanup EXIT

deploy_test local "$INVENTORY_LOCAL" "$TEST_INSTANCE" "$TEST_PORT"
if ((FULL)); then
  deploy_test full inventories/local-full/hosts.yml "$FULL_INSTANCE" "$FULL_PORT"
fi

((KEEP)) && log "--keep: the test instances stay (/opt/<instance>/bin/insikt-ctl stop)"
log "all ops checks passed in $((SECONDS - T0))s"
