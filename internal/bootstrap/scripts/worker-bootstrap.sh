#!/usr/bin/env bash
# First boot of a worker (cloud-init runcmd): install the pinned Kubernetes
# packages, read the join token and CA from the join secret, and join
# through the load balancer, retrying until the control plane answers.
# The token never expires (control-plane-token-sync.sh keeps it equal to
# the secret's), so a worker launched months later joins the same way.
# shellcheck source-path=SCRIPTDIR
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/node-common.sh"
. "$here/kubernetes-node.sh"

install_kubernetes
set_node_name
until api_ready; do
  log "waiting for the API at $API_ENDPOINT"
  sleep 15
done
while true; do
  fetch_secrets
  "$here/node-configure.sh"
  kubeadm join --config "$KUBEADM_JOIN_CONFIG" && break
  log "kubeadm join failed; resetting and retrying"
  kubeadm reset -f >/dev/null 2>&1 || true
  sleep 15
done
