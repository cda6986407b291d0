#!/usr/bin/env bash
# ExecStart of etcd.service: decide how this member starts, then run etcd.
#  - data on the volume: it restarts as the member it was;
#  - no data, but the cluster exists (its marker, or a snapshot): this
#    member's volume was lost. With a healthy majority it re-registers
#    itself and joins as a learner, which the promote timer makes a voter
#    once it caught up; without a majority it refuses (restore runbook);
#  - no data and no marker: the cluster is being created.
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
  # A learner takes no part in quorum until it caught up, so adding it
  # never puts the cluster at risk. etcd may refuse while a member asked
  # is still connecting to the others: retry for a minute.
  for _ in $(seq $((60 / MEMBER_ADD_RETRY_SECONDS))); do
    if etcdctl --endpoints "$others" member add "$MEMBER_NAME" --peer-urls "$MEMBER_PEER_URL" --learner; then
      return
    fi
    sleep "$MEMBER_ADD_RETRY_SECONDS"
  done
  log "could not re-register with the cluster; systemd will retry"
  exit 1
}

state=new
if [ -d "$DATA_DIR/member" ]; then
  state=existing
elif cluster_exists; then
  log "no data but the cluster exists: rejoining as a replacement member"
  rejoin
  state=existing
fi
log "starting with initial-cluster-state $state"
mkdir -p "$(dirname "$RUNTIME_CONFIG_FILE")"
sed "s/^initial-cluster-state: .*/initial-cluster-state: $state/" "$CONFIG_FILE" >"$RUNTIME_CONFIG_FILE"
exec etcd --config-file "$RUNTIME_CONFIG_FILE"
