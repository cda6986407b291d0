#!/usr/bin/env bash
# Checks node identities against EC2, where nothing else does:
#  - a worker's own join token, handed over under its IAM user ID
#    (worker-bootstrap.sh), becomes a bootstrap token of
#    WORKER_BOOTSTRAP_GROUP labelled with its instance;
#  - a kubelet client certificate request made with such a token is
#    approved only for the node named as its instance's private DNS name;
#  - a kubelet's serving certificate request (serverTLSBootstrap) is
#    approved only if the node asks for itself, for no name or address but
#    those EC2 gives its instance.
# Any other such request is denied. So a worker cannot get another node's
# credentials, and the API server and metrics-server verify kubelets
# against the cluster CA. Every control-plane node runs this on a timer;
# the first Ready one by name acts. A failed run counts
# CSR_APPROVER_FAILED_METRIC, which an alarm watches.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/due.sh"
trap 'count_failure "$CSR_APPROVER_FAILED_METRIC"' EXIT

serving_signer=kubernetes.io/kubelet-serving
client_signer=kubernetes.io/kube-apiserver-client-kubelet

# The functions below fail when they cannot tell; set -e does not hold in
# them (their callers test them), so each call that can fail returns on
# its own.

# instances_where prints the running instances of this cluster that EC2
# filter $1 selects (a JSON list).
instances_where() {
  aws ec2 describe-instances --output json --query 'Reservations[].Instances[]' --filters "$1" \
    "Name=instance-state-name,Values=running" "Name=tag:kubernetes.io/cluster/$CLUSTER_NAME,Values=owned"
}

# mint_tokens turns each join token a worker handed over into a bootstrap
# token of its instance, then deletes what was handed over.
mint_tokens() {
  local listing rc=0 keys key instance token id expires owner
  listing=$(aws s3 ls "$NODE_TOKEN_URL") || rc=$?
  [ "$rc" -le 1 ] || return 1 # 1: nothing there
  keys=$(awk '{print $4}' <<<"$listing")
  for key in $keys; do
    instance=${key#*:}
    token=$(aws s3 cp --only-show-errors "$NODE_TOKEN_URL$key" -) || return 1
    id=${token%%.*}
    unset owner
    if [[ $instance =~ ^i-[0-9a-z-]+$ ]] && [[ $token =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]]; then
      expires=$(date -u -d "+$WORKER_TOKEN_TTL_SECONDS seconds" +%Y-%m-%dT%H:%M:%SZ)
      jq -n --arg id "$id" --arg secret "${token#*.}" --arg instance "$instance" \
        --arg key "$INSTANCE_LABEL" --arg group "$WORKER_BOOTSTRAP_GROUP" --arg expires "$expires" \
        '{apiVersion: "v1", kind: "Secret", type: "bootstrap.kubernetes.io/token",
          metadata: {name: ("bootstrap-token-" + $id), namespace: "kube-system", labels: {($key): $instance}},
          stringData: {"token-id": $id, "token-secret": $secret, expiration: $expires, "auth-extra-groups": $group,
            "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
            description: ("join token of instance " + $instance)}}' |
        local_kubectl create -f - >/dev/null || owner=$(token_instance "$id") || return 1
      case ${owner-$instance} in
        "$instance") log "join token $id made for instance $instance" ;;
        "") return 1 ;; # the create failed, and not for a token in the way
        *) log "join token $id of instance $instance is taken (by $owner); ignoring it" ;;
      esac
    else
      log "$NODE_TOKEN_URL$key is no instance's join token; deleting it"
    fi
    aws s3 rm --only-show-errors "$NODE_TOKEN_URL$key" || return 1
  done
}

# token_instance prints the instance whose join token has ID $1: "none"
# for a token of no instance, nothing if there is no such token.
token_instance() {
  local secret
  secret=$(local_kubectl -n kube-system get secret "bootstrap-token-$1" --ignore-not-found -o json) || return
  [ -z "$secret" ] || jq -r --arg key "$INSTANCE_LABEL" '.metadata.labels[$key] // "none"' <<<"$secret"
}

# subject_node prints the node the request (PEM, $1) names, or nothing.
# Kubelets ask with the subject CN=system:node:<node>, O=system:nodes.
subject_node() {
  local subject
  subject=$(openssl req -noout -subject -nameopt RFC2253 <<<"$1") || return
  if [[ $subject =~ ^subject=CN=system:node:([a-z0-9.-]+),O=system:nodes$ ]]; then
    echo "${BASH_REMATCH[1]}"
  fi
}

# wrong_usages succeeds, saying why, unless the request's usages ($1,
# JSON) are a kubelet's for $2 (server or client).
wrong_usages() {
  if ! jq -e --arg use "$2 auth" '.spec.usages | sort | . == (["digital signature", "key encipherment", $use] | sort) or . == (["digital signature", $use] | sort)' <<<"$1" >/dev/null; then
    echo "usages $(jq -c .spec.usages <<<"$1") are not a kubelet's for $2 certificates"
    return 0
  fi
  return 1
}

# client_refusal prints why the kubelet client certificate request $1
# (JSON), made with a worker's own join token, is not for the node of the
# token's instance, or nothing when it is.
client_refusal() {
  local csr=$1 user instance instances node request
  user=$(jq -r .spec.username <<<"$csr")
  instance=$(token_instance "${user#system:bootstrap:}") || return
  if [ -z "$instance" ] || [ "$instance" = none ]; then
    echo "$user is no join token of an instance"
    return
  fi
  wrong_usages "$csr" client && return
  instances=$(instances_where "Name=instance-id,Values=$instance") || return
  if [ "$(jq length <<<"$instances")" != 1 ]; then
    echo "instance $instance, whose join token asked, is no running instance of cluster $CLUSTER_NAME"
    return
  fi
  node=$(jq -r '.[0].PrivateDnsName' <<<"$instances")
  request=$(jq -r .spec.request <<<"$csr" | base64 -d) || return
  if [ "$(subject_node "$request")" != "$node" ]; then
    echo "it is not for node $node, the name of instance $instance, whose join token asked"
    return
  fi
  if openssl req -noout -text <<<"$request" | grep -q 'Subject Alternative Name'; then
    echo "a kubelet client certificate names no address"
  fi
}

# serving_refusal prints why the serving certificate request $1 (JSON) is
# not its node's own, or nothing when it is.
serving_refusal() {
  local csr=$1 user node request instances allowed sans san
  user=$(jq -r .spec.username <<<"$csr")
  node=${user#system:node:}
  if [ "$node" = "$user" ] || ! jq -e '.spec.groups | index("system:nodes")' <<<"$csr" >/dev/null; then
    echo "requested by $user, not by a node"
    return
  fi
  wrong_usages "$csr" server && return
  request=$(jq -r .spec.request <<<"$csr" | base64 -d) || return
  if [ "$(subject_node "$request")" != "$node" ]; then
    echo "its subject is not $user's"
    return
  fi
  instances=$(instances_where "Name=private-dns-name,Values=$node") || return
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

# workers_joining succeeds while the drainer lists workers still launching
# (control-plane-worker-drain.sh), or has not listed any for
# JOINING_WORKERS_MINUTES: it runs on this node, and it failing must not
# keep a worker from its token.
workers_joining() {
  [ -s "$JOINING_WORKERS_FILE" ] || [ ! -e "$JOINING_WORKERS_FILE" ] ||
    [ -n "$(find "$JOINING_WORKERS_FILE" -mmin "+$JOINING_WORKERS_MINUTES")" ]
}

# Only the first Ready control-plane node decides, as it drains workers and
# makes their tokens: each check asks EC2 (an AWS CLI start), and the
# others would repeat it.
nodes=$(local_kubectl get nodes -o json)
[ "$(first_ready_control_plane <<<"$nodes")" = "$(hostname)" ] || exit 0

unchecked=0
# Listing S3 starts the AWS CLI too: the tokens handed over are made at
# most every TOKEN_LIST_SECONDS, and only while a worker is launching.
tokens_listed=$APPROVER_STATE_DIR/tokens-listed
if workers_joining && due "$tokens_listed" "$TOKEN_LIST_SECONDS" && ! mint_tokens; then
  log "could not make the join tokens workers handed over; trying again next run"
  rm -f "$tokens_listed"
  unchecked=1
fi
# Pending requests this script decides: serving ones, and client ones
# made with a worker's own join token.
pending=$(local_kubectl get csr -o json |
  jq -c --arg serving "$serving_signer" --arg client "$client_signer" --arg group "$WORKER_BOOTSTRAP_GROUP" \
    '.items[] | select((.status.conditions // []) == [])
      | select(.spec.signerName == $serving or (.spec.signerName == $client and (.spec.groups | index($group))))')
while read -r csr; do
  [ -n "$csr" ] || continue
  name=$(jq -r .metadata.name <<<"$csr")
  if [ "$(jq -r .spec.signerName <<<"$csr")" = "$client_signer" ]; then
    check=client_refusal approval="the kubelet client certificate of the node its instance is named"
  else
    check=serving_refusal approval="the serving certificate of the node that asked, for its EC2 addresses only"
  fi
  if ! reason=$("$check" "$csr"); then
    log "certificate request $name: could not check it; left pending"
    unchecked=$((unchecked + 1))
  elif [ -z "$reason" ]; then
    decide "$name" Approved "$approval"
  else
    decide "$name" Denied "$reason"
  fi
done <<<"$pending"
[ "$unchecked" -eq 0 ]
