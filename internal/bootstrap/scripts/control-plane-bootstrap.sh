#!/usr/bin/env bash
# First boot of a control-plane node (cloud-init runcmd). Every node runs
# the same steps, so a node replaced months later comes back the same way:
#  - the API answers through the load balancer: join it;
#  - it does not, and this is the first zone's node: create the cluster
#    (on existing etcd data, kubeadm init picks the cluster up again);
#  - otherwise wait for the first zone's node, and retry.
# shellcheck source-path=SCRIPTDIR
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/node-common.sh"
. "$here/kubernetes-node.sh"

# A private API's one way in from outside the VPC: an EC2 Instance Connect
# Endpoint tunnel to port 22, which this node forwards to its API server.
if [ -n "${API_TUNNEL_SOCKET:-}" ]; then
  for unit in ssh.socket ssh.service sshd.service; do
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  done
  systemctl enable --now "$API_TUNNEL_SOCKET" ||
    log "warning: port 22 is taken: this node cannot be reached through the Instance Connect Endpoint"
fi
install_kubernetes
set_node_name
while true; do
  fetch_secrets
  "$here/node-configure.sh"
  if api_ready; then
    log "the API answers at $API_ENDPOINT: joining"
    kubeadm join --config "$KUBEADM_JOIN_CONFIG" && break
  elif [ "$ZONE" = "$INIT_ZONE" ]; then
    log "no API at $API_ENDPOINT: creating the cluster"
    kubeadm init --config "$KUBEADM_INIT_CONFIG" && break
  else
    log "waiting for the $INIT_ZONE node to create the cluster"
    sleep 15
    continue
  fi
  # kubeadm reset also empties the PKI folder: the loop fetches again.
  log "kubeadm failed; resetting and retrying"
  kubeadm reset -f >/dev/null 2>&1 || true
  sleep 15
done
install_control_plane_tools
systemctl daemon-reload
# shellcheck disable=SC2086 # TIMERS is a comma-separated list of units
systemctl enable --now ${TIMERS//,/ }
