#!/usr/bin/env bash
# Renews this control-plane node's kubeadm certificates (the API server's,
# the kubeconfigs of the controller-manager, scheduler and admin) before
# they expire, then restarts the components that read them only at start,
# one at a time, each back healthy before the next. A node renews once the
# least time left is under RENEW_BEFORE_SECONDS plus its own share of
# RENEW_SPREAD_SECONDS (from its instance ID), so that nodes created
# together renew, and so expire, apart. Every run first re-reads the
# node's secret, where `pulumi up` puts a new etcd client certificate ahead
# of expiry (the API server reads it at each handshake with etcd), and
# reports the days left on the node's shortest-lived certificate
# (kubeadm's, the etcd client's, the kubelet's) as CERT_DAYS_LEFT_METRIC;
# a failed run counts CERT_RENEWAL_FAILED_METRIC. Both have alarms.
# One node at a time restarts its API server, under a kube-system Lease:
# nodes made together renew on the same day, their timers minutes apart.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"
. "$(dirname "${BASH_SOURCE[0]}")/imds.sh"
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lease.sh"
trap 'count_failure "$CERT_RENEWAL_FAILED_METRIC"' EXIT
export KUBECONFIG=$ADMIN_KUBECONFIG

# kubeadm_seconds_left: the least time left of kubeadm's certificates.
kubeadm_seconds_left() {
  kubeadm certs check-expiration --config "$KUBEADM_INIT_CONFIG" -o json |
    jq -e '[.certificates[] | select(.missing | not) | .residualTime] | min'
}

# restart_static_pod stops component $1 by taking its manifest away and
# starts it again by putting it back; $2 is its health URL.
restart_static_pod() {
  local held
  log "restarting $1"
  held=$(mktemp -d)
  stop_static_pod "$1" "$held"
  mv "$held/$1.yaml" "$STATIC_POD_DIR/"
  rmdir "$held"
  wait_until 300 healthy "$2"
}

# restart_api_server restarts the API server under the Lease
# RESTART_LEASE, with the etcd client certificate read again: `pulumi up`
# may have replaced it since this run began, and the one read then may
# have expired. Without the Lease after RESTART_LEASE_WAIT_SECONDS (the API
# unreachable), it restarts anyway: the renewed certificates come first.
# One that does not come back keeps the Lease until it expires, so the
# next node waits.
restart_api_server() {
  local held=yes
  # Asked every 10 s: each ask runs kubectl, and another node's restart
  # takes minutes on a busy control plane.
  if ! wait_every 10 "$RESTART_LEASE_WAIT_SECONDS" take_lease "$RESTART_LEASE" "$RESTART_LEASE_SECONDS"; then
    log "no lease $RESTART_LEASE after ${RESTART_LEASE_WAIT_SECONDS}s: restarting without it"
    held=no
  fi
  fetch_secrets
  restart_static_pod kube-apiserver "$LOCAL_READY_URL"
  log "kube-apiserver back"
  if [ "$held" = yes ] && ! release_lease "$RESTART_LEASE"; then
    log "could not release the lease $RESTART_LEASE; it expires in ${RESTART_LEASE_SECONDS}s"
  fi
}

fetch_secrets
left=$(kubeadm_seconds_left)
instance=$(imds instance-id)
share=$(($(cksum <<<"$instance" | cut -d' ' -f1) % 1000))
renew_at=$((RENEW_BEFORE_SECONDS + RENEW_SPREAD_SECONDS * share / 1000))
if [ "$left" -lt "$renew_at" ]; then
  log "kubeadm's certificates have ${left}s left, under this node's ${renew_at}s: renewing"
  kubeadm certs renew all --config "$KUBEADM_INIT_CONFIG" >/dev/null
  restart_static_pod kube-scheduler "$SCHEDULER_HEALTH_URL"
  restart_static_pod kube-controller-manager "$CONTROLLER_MANAGER_HEALTH_URL"
  restart_api_server
  left=$(kubeadm_seconds_left)
  log "renewed: ${left}s left"
fi
report_days_left "$left" "$ETCD_CERT_FILE" "$KUBELET_CERT_DIR/kubelet-client-current.pem" "$KUBELET_CERT_DIR/kubelet-server-current.pem"
