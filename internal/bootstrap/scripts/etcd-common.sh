# Sourced by kubeha's etcd scripts. They run with the member's settings in
# their environment, loaded from its env file by whoever starts them
# (etcd.service, the backup timer, cloud-init, kubeha-etcd-restore), and
# etcdctl authenticates with the member's certificate through them.
# shellcheck shell=bash
set -euo pipefail
# A failure inside $(...) fails the command substitution's caller too.
shopt -s inherit_errexit
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

# s3_listing URL prints what `aws s3 ls` lists there: nothing when nothing
# matches (its exit 1); any other failure fails, rather than guess.
s3_listing() {
  local rc=0
  aws s3 ls "$1" || rc=$?
  if [ "$rc" -gt 1 ]; then
    log "cannot list $1 (exit $rc); retrying later"
    return 1
  fi
}

# Whether the cluster ever formed: its marker, written once it did and
# never expired, or a snapshot (a cluster made before kubeha wrote
# markers). Callers test it, so a failed listing exits.
cluster_exists() {
  local listing
  listing=$(s3_listing "$CLUSTER_MARKER_URL") || exit 1
  [ -z "$listing" ] || return 0
  listing=$(s3_listing "$BACKUP_URL/") || exit 1
  grep -q '\.db$' <<<"$listing"
}

# mark_cluster_created writes the marker once every member is healthy
# (callers test it, so errexit is off inside: each failure returns):
# from then on a member that lost its data rejoins, and never forms a new
# cluster under its old name.
mark_cluster_created() {
  local listing
  listing=$(s3_listing "$CLUSTER_MARKER_URL") || return 1
  [ -z "$listing" ] || return 0
  etcdctl --endpoints "$CLIENT_ENDPOINTS" endpoint health >/dev/null 2>&1 || return 1
  jq -n --arg c "$CLUSTER_NAME" --arg m "$MEMBER_NAME" --arg t "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    '{cluster: $c, formedAt: $t, writtenBy: $m}' |
    aws s3 cp --only-show-errors --sse aws:kms --sse-kms-key-id "$KMS_KEY_ID" - "$CLUSTER_MARKER_URL" || return 1
  log "the cluster formed: marker written to $CLUSTER_MARKER_URL"
}
