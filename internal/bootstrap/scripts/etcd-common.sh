# Sourced by kubeha's etcd scripts. They run with the member's settings in
# their environment, loaded from its env file by whoever starts them
# (etcd.service, the backup timer, cloud-init, kubeha-etcd-restore), and
# etcdctl authenticates with the member's certificate through them.
# shellcheck shell=bash
set -euo pipefail
: "${MEMBER_NAME:?no member settings in the environment: run this through systemd or kubeha-etcd-restore}"

log() {
  echo "kubeha-etcd[$MEMBER_NAME]: $*" >&2
}

# The other members' client URLs, comma-separated.
other_endpoints() {
  local url others=()
  IFS=, read -r -a urls <<<"$CLIENT_ENDPOINTS"
  for url in "${urls[@]}"; do
    [ "$url" = "$MEMBER_CLIENT_URL" ] || others+=("$url")
  done
  (IFS=,; echo "${others[*]}")
}
