#!/usr/bin/env bash
# Restores this member's data from a snapshot (README: etcd restore). On
# every member first, then on each in turn:
#   kubeha-etcd-restore hold
#   kubeha-etcd-restore s3://BUCKET/snapshots/NAME.db restore-20260101
#   kubeha-etcd-restore release
# The same snapshot and the same new cluster token on every member. The
# current data is moved aside, never deleted.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/etcd-common.sh"

# A stop alone is not enough: a first boot still retrying, or
# Restart=always, starts etcd again, and a member started with no data
# while two restored ones have quorum re-registers itself, removing its
# restored entry. The hold file keeps etcd.service from starting at all.
case ${1:-} in
  hold)
    mkdir -p "$(dirname "$HOLD_FILE")"
    touch "$HOLD_FILE"
    # A start queued just before the hold cancels a stop: stop again.
    for _ in 1 2 3 4 5; do
      systemctl stop "$MEMBER_SERVICE" || true
      case $(systemctl show --property ActiveState --value "$MEMBER_SERVICE") in
        inactive | failed)
          log "etcd held and stopped; once every member is held, restore each"
          exit 0
          ;;
      esac
      sleep 2
    done
    log "etcd is held but still running"
    exit 1
    ;;
  release)
    rm -f "$HOLD_FILE"
    # Not waiting: a member is ready only once a majority of them runs.
    systemctl start --no-block "$MEMBER_SERVICE"
    log "etcd released and starting"
    exit 0
    ;;
esac

usage="usage: kubeha-etcd-restore hold | SNAPSHOT NEW_CLUSTER_TOKEN | release (SNAPSHOT: s3:// URL or file)"
snapshot=${1:?$usage}
token=${2:?$usage}

if [ ! -e "$HOLD_FILE" ]; then
  log "etcd is not held: on every member first run kubeha-etcd-restore hold"
  exit 1
fi
if etcdctl --endpoints "$LOCAL_CLIENT_URL" endpoint health >/dev/null 2>&1; then
  log "etcd is running on this member: run kubeha-etcd-restore hold first"
  exit 1
fi

work=$(mktemp -d "$VOLUME_MOUNT/restore.XXXXXX")
trap 'rm -rf "$work"' EXIT
case $snapshot in
  s3://*) aws s3 cp "$snapshot" "$work/snapshot.db" --only-show-errors ;;
  *) cp "$snapshot" "$work/snapshot.db" ;;
esac
etcdutl snapshot status "$work/snapshot.db" -w table >&2
# Revisions must never go backwards under the API servers' watch caches:
# Kubernetes' procedure bumps them past anything served since the snapshot
# and marks the old ones compacted, so watchers relist.
etcdutl snapshot restore "$work/snapshot.db" --data-dir "$work/data" \
  --name "$MEMBER_NAME" --initial-cluster "$INITIAL_CLUSTER" \
  --initial-cluster-token "$token" --initial-advertise-peer-urls "$MEMBER_PEER_URL" \
  --bump-revision "$RESTORE_BUMP_REVISION" --mark-compacted

if [ -d "$DATA_DIR" ]; then
  aside="$DATA_DIR.before-restore-$(date -u +%Y%m%dT%H%M%SZ)"
  mv "$DATA_DIR" "$aside"
  log "previous data kept at $aside"
fi
mv "$work/data" "$DATA_DIR"
log "restored $snapshot; once every member is restored, run kubeha-etcd-restore release on each"
