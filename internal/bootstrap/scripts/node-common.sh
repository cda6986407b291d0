# Sourced by kubeha's Kubernetes node scripts: logging, the node's secrets
# and the API's readiness. They run with the node's settings in their
# environment, loaded from its env file by whoever starts them (cloud-init,
# the token-sync timer).
# shellcheck shell=bash
set -euo pipefail
# A failure inside $(...) fails the command substitution's caller too.
shopt -s inherit_errexit
: "${ROLE:?no node settings in the environment: run this through cloud-init or systemd}"

log() {
  echo "kubeha-${ROLE}[$ZONE]: $*" >&2
}

# count_failure, as an EXIT trap, counts metric $1 in CloudWatch when the
# script fails, for the alarm that watches it.
count_failure() {
  local rc=$?
  [ "$rc" -ne 0 ] || return 0
  log "$(basename "$0") failed (exit $rc)"
  aws cloudwatch put-metric-data --namespace "$BOOTSTRAP_METRIC_NAMESPACE" --metric-name "$1" \
    --dimensions "$BOOTSTRAP_METRIC_DIMENSIONS" --value 1 --unit Count || log "could not count $1"
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
  local secret name dest
  secret=$(aws secretsmanager get-secret-value --secret-id "$SECRET_ID" --query SecretString --output text)
  install -d -m 0700 "$SECRETS_DIR" "$KUBERNETES_PKI_DIR"
  for name in $(jq -r 'keys[]' <<<"$secret"); do
    case $name in
      "$PKI_SECRET_PREFIX"*) dest=$KUBERNETES_PKI_DIR/${name#"$PKI_SECRET_PREFIX"} ;;
      *) dest=$SECRETS_DIR/$name ;;
    esac
    install -d -m 0700 "$(dirname "$dest")"
    (umask 077 && jq -er --arg f "$name" '.[$f]' <<<"$secret" >"$dest")
  done
}

# Whether the API answers ready through the load balancer.
api_ready() {
  curl -fsk --max-time 5 "$API_READY_URL" >/dev/null
}
