# Sourced by kubeha's Kubernetes node scripts: this node's settings and its
# secrets.
# shellcheck shell=bash
set -euo pipefail

# shellcheck source=/dev/null
. "${KUBEHA_NODE_ENV:-/etc/kubeha/node.env}"

log() {
  echo "kubeha-${ROLE}[$ZONE]: $*" >&2
}

# Writes the node's secret's entries: pki/* under /etc/kubernetes, the rest
# (join token, encryption key) under $SECRETS_DIR, all owner-only.
fetch_secrets() {
  local secret name dest
  secret=$(aws secretsmanager get-secret-value --secret-id "$SECRET_ID" --query SecretString --output text)
  install -d -m 0700 "$SECRETS_DIR" /etc/kubernetes/pki /etc/kubernetes/pki/etcd
  for name in $(jq -r 'keys[]' <<<"$secret"); do
    case $name in
      pki/*) dest=/etc/kubernetes/$name ;;
      *) dest=$SECRETS_DIR/$name ;;
    esac
    (umask 077 && jq -er --arg f "$name" '.[$f]' <<<"$secret" >"$dest")
  done
}

api_ready() {
  curl -fsk --max-time 5 "https://$API_ENDPOINT:6443/readyz" >/dev/null
}
