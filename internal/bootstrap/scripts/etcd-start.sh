#!/usr/bin/env bash
# ExecStart of etcd.service: decide how this member starts, then run etcd.
#  - data on the volume: it restarts as the member it was;
#  - no data, but the cluster has snapshots (so it existed): this member's
#    volume was lost. With a healthy majority it re-registers itself and
#    joins as a new member; without one it refuses (see the restore runbook);
#  - no data and no snapshots: the cluster is being created.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/etcd-common.sh"

rejoin() {
  local others id
  others=$(other_endpoints)
  if ! etcdctl --endpoints "$others" member list >/dev/null; then
    log "no data, and the other members have no quorum: refusing to start. Restore from a snapshot (README: etcd restore)."
    exit 1
  fi
  id=$(etcdctl --endpoints "$others" member list | awk -F', ' -v url="$MEMBER_PEER_URL" '$4 == url {print $1}')
  if [ -n "$id" ]; then
    etcdctl --endpoints "$others" member remove "$id"
  fi
  # etcd refuses a new voter until the member asked has been connected to
  # all the others for 5 s: retry for a minute.
  for _ in $(seq $((60 / MEMBER_ADD_RETRY_SECONDS))); do
    if etcdctl --endpoints "$others" member add "$MEMBER_NAME" --peer-urls "$MEMBER_PEER_URL"; then
      return
    fi
    sleep "$MEMBER_ADD_RETRY_SECONDS"
  done
  log "could not re-register with the cluster; systemd will retry"
  exit 1
}

# Whether the cluster has ever taken a snapshot. `aws s3 ls` exits 1 for an
# empty prefix; any other failure stops here rather than guess.
has_snapshots() {
  local listing rc=0
  listing=$(aws s3 ls "$BACKUP_URL/") || rc=$?
  if [ "$rc" -gt 1 ]; then
    log "cannot list $BACKUP_URL (exit $rc); retrying later"
    exit 1
  fi
  grep -q '\.db$' <<<"$listing"
}

state=new
if [ -d "$DATA_DIR/member" ]; then
  state=existing
elif has_snapshots; then
  log "no data but the cluster exists: rejoining as a replacement member"
  rejoin
  state=existing
fi
log "starting with initial-cluster-state $state"
mkdir -p "$(dirname "$RUNTIME_CONFIG_FILE")"
sed "s/^initial-cluster-state: .*/initial-cluster-state: $state/" "$CONFIG_FILE" >"$RUNTIME_CONFIG_FILE"
exec etcd --config-file "$RUNTIME_CONFIG_FILE"
