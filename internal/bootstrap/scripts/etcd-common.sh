# Sourced by kubeha's etcd scripts: this member's settings, and an etcdctl
# that authenticates with the member's own certificate.
# shellcheck shell=bash
set -euo pipefail

# shellcheck source=/dev/null
. "${KUBEHA_ETCD_ENV:-/etc/kubeha/etcd.env}"

# Used by the scripts that source this file.
# shellcheck disable=SC2034
PKI=/etc/etcd/pki DATA_DIR=/var/lib/etcd/data LOCAL=https://127.0.0.1:2379

ctl() {
  etcdctl --cacert "$PKI/ca.crt" --cert "$PKI/server.crt" --key "$PKI/server.key" "$@"
}

log() {
  echo "kubeha-etcd[$MEMBER_NAME]: $*" >&2
}

# The other members' client URLs, comma-separated.
other_endpoints() {
  local url others=()
  IFS=, read -r -a urls <<<"$CLIENT_ENDPOINTS"
  for url in "${urls[@]}"; do
    [ "$url" = "https://$MEMBER_DNS:2379" ] || others+=("$url")
  done
  (IFS=,; echo "${others[*]}")
}
