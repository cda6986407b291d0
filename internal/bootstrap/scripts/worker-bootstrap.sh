#!/usr/bin/env bash
# First boot of a worker (kubeha-bootstrap.service, rerun until it
# succeeds): install the pinned Kubernetes packages, make this instance's
# own join token and hand it to the control plane, join through the load
# balancer (discovery pins the CA's key, and kubeadm writes the CA file:
# its preflight refuses one already there), and once the Node is Ready,
# let the group put the instance in service. The control plane approves
# this token's kubelet certificate for this instance's name only
# (control-plane-csr-approver.sh).
# shellcheck source-path=SCRIPTDIR
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/node-common.sh"
. "$here/kubernetes-node.sh"
. "$here/bootstrap-steps.sh"

# One try at joining; kubeadm reset on failure.
join() {
  api_ready || { log "waiting for the API at $API_ENDPOINT"; return 1; }
  "$here/node-configure.sh"
  kubeadm join --config "$KUBEADM_JOIN_CONFIG" && return 0
  log "kubeadm join failed; resetting"
  kubeadm reset -f >/dev/null 2>&1 || true
  return 1
}

# The Node's Ready condition, read with the kubelet's own credentials.
node_ready() {
  local status
  status=$(curl -fsS --max-time 5 --cacert "$KUBERNETES_PKI_DIR/ca.crt" --cert "$KUBELET_CLIENT_CERT" --key "$KUBELET_CLIENT_CERT" \
    "https://$API_ENDPOINT:$API_PORT/api/v1/nodes/$(hostname)" |
    jq -r '.status.conditions[] | select(.type == "Ready") | .status')
  [ "$status" = True ]
}

step kubernetes install_kubernetes
step node-name set_node_name
step join-token "$here/worker-join-token.sh"
step kubeadm join
step kubelet-config restrict_kubelet_config
ready_for_service node_ready
bootstrap_done
