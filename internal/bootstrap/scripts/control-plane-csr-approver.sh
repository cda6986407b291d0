#!/usr/bin/env bash
# Decides kubelets' serving certificate requests (serverTLSBootstrap),
# which nothing else approves: approved only if the node asks for itself,
# for no name or address but those EC2 gives its instance (the running
# instance of this cluster with the node's private DNS name); any other is
# denied. So the API server and metrics-server verify kubelets against the
# cluster CA. Every control-plane node runs this on a timer; a failed run
# counts CSR_APPROVER_FAILED_METRIC, which an alarm watches.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"
trap 'count_failure "$CSR_APPROVER_FAILED_METRIC"' EXIT

serving_signer=kubernetes.io/kubelet-serving

# The functions below fail when they cannot tell; set -e does not hold in
# them (their callers test them), so each call that can fail returns on
# its own.

# instance_of prints the running instances of this cluster named $1 (a
# JSON list).
instance_of() {
  aws ec2 describe-instances --output json --query 'Reservations[].Instances[]' --filters "Name=private-dns-name,Values=$1" \
    "Name=instance-state-name,Values=running" "Name=tag:kubernetes.io/cluster/$CLUSTER_NAME,Values=owned"
}

# subject_node prints the node the request (PEM, $1) names, or nothing.
subject_node() {
  local subject
  subject=$(openssl req -noout -subject -nameopt RFC2253 <<<"$1") || return
  if [[ $subject =~ ^subject=CN=system:node:([a-z0-9.-]+),O=system:nodes$ ]]; then
    echo "${BASH_REMATCH[1]}"
  fi
}

# wrong_usages succeeds, saying why, unless the request's usages ($1,
# JSON) are a kubelet's for serving.
wrong_usages() {
  if ! jq -e '.spec.usages | sort | . == ["digital signature", "key encipherment", "server auth"] or . == ["digital signature", "server auth"]' <<<"$1" >/dev/null; then
    echo "usages $(jq -c .spec.usages <<<"$1") are not a kubelet's for serving"
    return 0
  fi
  return 1
}

# refusal prints why the serving certificate request $1 (JSON) is not its
# node's own, or nothing when it is.
refusal() {
  local csr=$1 user node request instances allowed sans san
  user=$(jq -r .spec.username <<<"$csr")
  node=${user#system:node:}
  if [ "$node" = "$user" ] || ! jq -e '.spec.groups | index("system:nodes")' <<<"$csr" >/dev/null; then
    echo "requested by $user, not by a node"
    return
  fi
  wrong_usages "$csr" && return
  request=$(jq -r .spec.request <<<"$csr" | base64 -d) || return
  if [ "$(subject_node "$request")" != "$node" ]; then
    echo "its subject is not $user's"
    return
  fi
  instances=$(instance_of "$node") || return
  if [ "$(jq length <<<"$instances")" != 1 ]; then
    echo "no running instance of cluster $CLUSTER_NAME is named $node"
    return
  fi
  allowed=$(jq -r --arg node "$node" '.[0] | "DNS:" + $node, "DNS:" + .PrivateDnsName,
    "IP Address:" + (.PrivateIpAddress, .NetworkInterfaces[]?.PrivateIpAddresses[]?.PrivateIpAddress)' <<<"$instances") || return
  sans=$(openssl req -noout -text <<<"$request" | sed -n '/X509v3 Subject Alternative Name/{n;s/^ *//;s/, /\n/g;p;}') || return
  while read -r san; do
    if [ -n "$san" ] && ! grep -qxF "$san" <<<"$allowed"; then
      echo "$san is not an address of $node"
      return
    fi
  done <<<"$sans"
}

# decide sets request $1's condition to $2 (Approved or Denied) saying $3;
# another node deciding it first is no failure.
decide() {
  if ! local_kubectl get csr "$1" -o json |
    jq --arg type "$2" --arg message "$3" \
      '.status.conditions = [{type: $type, status: "True", reason: "KubehaNodeIdentity", message: $message}]' |
    local_kubectl replace --raw "/apis/certificates.k8s.io/v1/certificatesigningrequests/$1/approval" -f - >/dev/null; then
    [ "$(local_kubectl get csr "$1" -o jsonpath='{.status.conditions[0].type}')" != "" ]
  fi
  log "certificate request $1: $2: $3"
}

pending=$(local_kubectl get csr -o json |
  jq -c --arg signer "$serving_signer" '.items[] | select(.spec.signerName == $signer and (.status.conditions // []) == [])')
unchecked=0
while read -r csr; do
  [ -n "$csr" ] || continue
  name=$(jq -r .metadata.name <<<"$csr")
  if ! reason=$(refusal "$csr"); then
    log "certificate request $name: could not check it; left pending"
    unchecked=$((unchecked + 1))
  elif [ -z "$reason" ]; then
    decide "$name" Approved "the serving certificate of the node that asked, for its EC2 addresses only"
  else
    decide "$name" Denied "$reason"
  fi
done <<<"$pending"
[ "$unchecked" -eq 0 ]
