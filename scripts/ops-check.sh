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
#      /var/log/insikt-ansible-test), checks /readyz, runs again and requires
#      changed=0, then stops and removes what it installed. The shared
#      PostgreSQL and Kafka are used, never reconfigured or restarted.
#
# Usage: scripts/ops-check.sh [--static] [--keep]
#   --static  steps 1-3 only (no deploy)
#   --keep    leave the deployed test instance running
# INSIKT_BINARY=path deploys that binary (default target/release/insikt,
# built when missing). Needs root, PostgreSQL and Kafka up (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

STATIC=0
KEEP=0
for arg in "$@"; do
  case "$arg" in
  --static) STATIC=1 ;;
  --keep) KEEP=1 ;;
  *)
    echo "usage: $0 [--static] [--keep]" >&2
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
export INSIKT_BINARY="$(realpath "$BINARY")"

# One deploy test at a time on this machine (CI and a developer share it).
exec 9>/var/lock/insikt-ops-check.lock
flock 9

cleanup() {
  local ctl="/opt/${TEST_INSTANCE}/bin/insikt-ctl"
  log "== cleanup: stopping and removing the test instance"
  if [[ -x "$ctl" ]]; then "$ctl" stop >/dev/null || true; fi
  rm -rf "/opt/${TEST_INSTANCE}" "/etc/${TEST_INSTANCE}" "/var/lib/${TEST_INSTANCE}" \
    "/var/log/${TEST_INSTANCE}" "/run/${TEST_INSTANCE}"
  if id "$TEST_INSTANCE" >/dev/null 2>&1; then userdel "$TEST_INSTANCE" || true; fi
  if getent group "$TEST_INSTANCE" >/dev/null; then groupdel "$TEST_INSTANCE" || true; fi
  psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres \
    -c "DROP DATABASE IF EXISTS ${TEST_DB} WITH (FORCE)" || true
}
# A left-over instance of an interrupted run would make the first run a
# no-op: start from nothing.
cleanup
if (exec 3<>"/dev/tcp/127.0.0.1/${TEST_PORT}") 2>/dev/null; then
  die "something else listens on 127.0.0.1:${TEST_PORT}"
fi
((KEEP)) || trap cleanup EXIT

# run_playbook OUT: site.yml against this machine; the output goes to OUT and
# the PLAY RECAP line of localhost is echoed.
run_playbook() {
  (cd "${ROOT}/ansible" && ansible-playbook -i "$INVENTORY_LOCAL" \
    --vault-password-file "$VAULT_PASSWORD_FILE" site.yml) >"$1" 2>&1 ||
    {
      tail -n 60 "$1" >&2
      tail -n 20 "/var/log/${TEST_INSTANCE}/insikt.log" >&2 2>/dev/null || true
      die "ansible-playbook failed (full output: $1)"
    }
  grep -E '^localhost +: ' "$1"
}

step_start "deploy: ansible-playbook site.yml -c local (first run, ${INSIKT_BINARY})"
recap="$(run_playbook "${OPS_DIR}/deploy-1.log")"
log "   ${recap}"
[[ "$recap" =~ changed=[1-9] ]] || die "the first run changed nothing"
status="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${TEST_PORT}/readyz")"
[[ "$status" == 200 ]] || die "/readyz answered ${status}"
log "   GET /readyz -> 200"
step_done

step_start "deploy: second run must change nothing"
recap="$(run_playbook "${OPS_DIR}/deploy-2.log")"
log "   ${recap}"
[[ "$recap" =~ changed=0\  && "$recap" =~ failed=0\  ]] ||
  { grep -B3 '^changed:' "${OPS_DIR}/deploy-2.log" >&2 || true; die "the second run was not idempotent"; }
status="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${TEST_PORT}/readyz")"
[[ "$status" == 200 ]] || die "/readyz answered ${status} after the second run"
step_done

# The supervisor must bring the service back when it dies.
step_start "deploy: the supervisor restarts a killed service"
pid="$(pgrep -u "$TEST_INSTANCE" -f "/opt/${TEST_INSTANCE}/bin/insikt serve" | head -1)"
[[ -n "$pid" ]] || die "no running insikt of the test instance"
kill -KILL "$pid"
ok=0
for _ in $(seq 1 30); do
  sleep 1
  if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${TEST_PORT}/readyz")" == 200 ]]; then
    ok=1
    break
  fi
done
((ok)) || die "insikt did not come back after being killed"
newpid="$(pgrep -u "$TEST_INSTANCE" -f "/opt/${TEST_INSTANCE}/bin/insikt serve" | head -1)"
[[ "$newpid" != "$pid" ]] || die "the same pid still answers"
log "   killed pid ${pid}; pid ${newpid} serves /readyz 200"
step_done

((KEEP)) && log "--keep: the test instance stays on 127.0.0.1:${TEST_PORT} (/opt/${TEST_INSTANCE}/bin/insikt-ctl stop)"
log "all ops checks passed in $((SECONDS - T0))s"
