# Sourced by kubeha's Kubernetes node scripts: logging, the node's secrets
# and the API's readiness. They run with the node's settings in their
# environment, loaded from its env file by whoever starts them (cloud-init,
# the token-sync timer).
# shellcheck shell=bash
set -euo pipefail
# A failure inside $(...) fails the command substitution's caller too.
shopt -s inherit_errexit
: "${ROLE:?no node settings in the environment: run this through cloud-init or systemd}"
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/credentials.sh"

log() {
  echo "kubeha-${ROLE}[$ZONE]: $*" >&2
}

# first_ready_control_plane prints, from the Nodes (JSON on stdin), the
# control-plane node that does the cluster's chores calling AWS (draining
# leaving workers, making the join tokens workers hand over): the first
# Ready one by name, so the others do not repeat its calls.
first_ready_control_plane() {
  jq -r --arg cp "$CONTROL_PLANE_LABEL" '[.items[] | select(.metadata.labels | has($cp))
    | select(any(.status.conditions[]?; .type == "Ready" and .status == "True")) | .metadata.name] | sort | .[0] // ""'
}

# kubectl as the cluster's admin against this control-plane node's own API
# server: admin.conf names the load balancer, which routes to no node before
# it is in service (the first node's, say).
local_kubectl() {
  kubectl --kubeconfig "$ADMIN_KUBECONFIG" --server "$LOCAL_API_URL" --tls-server-name "$API_ENDPOINT" "$@"
}

# Writes the node's secret's entries, all owner-only: the PEM files named
# with $PKI_SECRET_PREFIX into $KUBERNETES_PKI_DIR (keeping any folder below
# it), the rest (join token, encryption key) into $SECRETS_DIR.
fetch_secrets() {
  write_secret_files "$SECRET_ID" "$SECRETS_DIR" "$PKI_SECRET_PREFIX" "$KUBERNETES_PKI_DIR"
}

# Whether the API answers ready through the load balancer.
api_ready() {
  curl -fsk --max-time 5 "$API_READY_URL" >/dev/null
}

# wait_until runs its arguments every second until they succeed, for at
# most $1 seconds.
wait_until() { wait_every 1 "$@"; }

# wait_every is wait_until every $1 seconds, for at most $2 seconds: for
# waits of minutes on a check that itself costs CPU (kubectl, aws).
wait_every() {
  local interval=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep "$interval"
  done
}

running() { pgrep -f "^$1 " >/dev/null; }
stopped() { ! running "$1"; }
healthy() { curl -fsk --max-time 2 "$1" >/dev/null; }

# stop_static_pod takes control-plane component $1's manifest into folder
# $2 and waits until the kubelet has stopped it as it stops any pod: a
# SIGTERM, then its grace period, in which the API server fails /readyz
# for its shutdown delay while it still serves.
stop_static_pod() {
  mv "$STATIC_POD_DIR/$1.yaml" "$2/"
  wait_until 120 stopped "$1" || log "$1 still runs 120 s after its manifest went"
}
