#!/usr/bin/env bash
# First boot of a control-plane node (kubeha-bootstrap.service, rerun until
# it succeeds). Every node runs the same steps, so a node replaced months
# later comes back the same way. Whether the cluster exists is read from
# etcd, the one durable record of it, never from whether the load balancer
# answers (it does not during an etcd blip):
#  - etcd holds kube-system/kubeadm-config: join through the load balancer;
#  - it does not, and this is the first zone's node: create the cluster;
#  - otherwise wait for the first zone's node.
# Once its API server is ready, the node lets its group put it in service,
# then starts its chores' timers.
# shellcheck source-path=SCRIPTDIR
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/node-common.sh"
. "$here/kubernetes-node.sh"
. "$here/bootstrap-steps.sh"

# A private API's one way in from outside the VPC: an EC2 Instance Connect
# Endpoint tunnel to port 22, which this node forwards to its API server.
api_tunnel() {
  local unit
  for unit in ssh.socket ssh.service sshd.service; do
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  done
  systemctl enable --now "$API_TUNNEL_SOCKET" ||
    log "warning: port 22 is taken: this node cannot be reached through the Instance Connect Endpoint"
}

# Prints whether etcd holds kubeadm's record of the cluster (yes or no),
# asked with the API server's own etcd client certificate through etcd's
# JSON gateway; fails when no member answers.
cluster_recorded() {
  local key endpoint answer endpoints
  key=$(printf '%s' "$KUBEADM_CONFIG_ETCD_KEY" | base64 -w0)
  IFS=, read -r -a endpoints <<<"$ETCD_ENDPOINTS"
  for endpoint in "${endpoints[@]}"; do
    if answer=$(curl -fsS --max-time 5 --cacert "$ETCD_CA_FILE" --cert "$ETCD_CERT_FILE" --key "$ETCD_KEY_FILE" \
      -X POST "$endpoint/v3/kv/range" -d "{\"key\":\"$key\",\"count_only\":true}"); then
      if [ "$(jq -r '.count // "0"' <<<"$answer")" = 0 ]; then echo no; else echo yes; fi
      return 0
    fi
  done
  log "no etcd member answers at $ETCD_ENDPOINTS"
  return 1
}

# kubeadm init reaches the API through the endpoint (admin.conf), but the
# load balancer takes a new instance as a target only once it is in
# service, after its first boot: while this node creates the cluster, the
# endpoint's name is this node's own API server (its certificate holds
# the name).
init_here() {
  local rc=0 hosts
  echo "$INIT_HOSTS_ENTRY" >>/etc/hosts
  kubeadm init --config "$KUBEADM_INIT_CONFIG" || rc=$?
  hosts=$(grep -vxF "$INIT_HOSTS_ENTRY" /etc/hosts || true)
  printf '%s\n' "$hosts" >/etc/hosts
  return "$rc"
}

# One try at creating or joining the cluster; kubeadm reset on failure
# (it also empties the PKI folder: the next try fetches it again). A node
# whose own init failed part way (kubeadm-config uploaded, no API server
# left) runs init again rather than join a cluster nobody serves.
create_or_join() {
  local recorded
  fetch_secrets
  "$here/node-configure.sh"
  recorded=$(cluster_recorded)
  if [ "$recorded" = yes ] && [ ! -e "$BOOTSTRAP_STATE_DIR/init-attempted" ]; then
    log "etcd holds the cluster: joining through $API_ENDPOINT"
    kubeadm join --config "$KUBEADM_JOIN_CONFIG" && return 0
  elif [ "$ZONE" = "$INIT_ZONE" ]; then
    if [ "$recorded" = yes ]; then
      log "this node's own init stopped part way: running it again"
    else
      log "etcd holds no cluster: creating it"
    fi
    touch "$BOOTSTRAP_STATE_DIR/init-attempted"
    init_here && return 0
  else
    log "waiting for the $INIT_ZONE node to create the cluster"
    return 1
  fi
  log "kubeadm failed; resetting"
  kubeadm reset -f >/dev/null 2>&1 || true
  return 1
}

# The timers' scripts come from the asset bucket (CHORES_URL), checked by
# digest: the user-data, which EC2 caps at 16 KB, has no room for them.
start_timers() {
  local tmp
  tmp=$(mktemp -d)
  fetch_asset "$CHORES_URL" "$CHORES_SHA256" "$tmp/chores.tar.gz"
  tar -xzf "$tmp/chores.tar.gz" -C "$here" --no-same-owner --touch
  rm -rf "$tmp"
  systemctl daemon-reload
  # shellcheck disable=SC2086 # TIMERS is a comma-separated list of units
  systemctl enable --now ${TIMERS//,/ }
}

# What a worker's own join token may do (WORKER_RBAC): applied by every
# node, so that one replaced later brings a newer version.
allow_worker_joins() {
  local_kubectl apply -f "$WORKER_RBAC" >/dev/null
}

# The node that created the cluster records its release at
# VERSION_PARAMETER: the release every API server runs, which holding
# nodes read (kubernetes-node.sh) and the stack program checks a version
# change against. Later only `kubeha upgrade` moves it, once every API
# server runs the new release.
record_version() {
  local version
  [ -e "$BOOTSTRAP_STATE_DIR/init-attempted" ] || return 0
  version=$(local_kubectl -n kube-system get configmap kubeadm-config -o jsonpath='{.data.ClusterConfiguration}' |
    sed -n 's/^kubernetesVersion: *//p')
  if [ -z "$version" ]; then
    log "kubeadm-config records no kubernetesVersion"
    return 1
  fi
  # Best effort: the deploy wrote the stack's version there, and a node
  # that cannot reach SSM still serves.
  if aws ssm put-parameter --name "$VERSION_PARAMETER" --type String --overwrite --value "$version" >/dev/null; then
    log "the cluster records Kubernetes $version"
  else
    log "warning: could not copy Kubernetes $version to $VERSION_PARAMETER"
  fi
}

api_server_ready() {
  curl -fsk --max-time 5 "$LOCAL_READY_URL" >/dev/null
}

if [ -n "${API_TUNNEL_SOCKET:-}" ]; then
  step api-tunnel api_tunnel
fi
step kubernetes install_kubernetes
step node-name set_node_name
step kubeadm create_or_join
step kubelet-config restrict_kubelet_config
step tools install_control_plane_tools
step worker-rbac allow_worker_joins
step version-record record_version
ready_for_service api_server_ready
# The chores start once the node is in service: on a busy host their first
# runs, each calling AWS, held the launch hook up for two minutes.
step timers start_timers
bootstrap_done
