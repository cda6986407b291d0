#!/usr/bin/env bash
# Restores this member's data from a snapshot. Stop etcd on every member,
# run this on each with the same snapshot and the same new cluster token,
# then start etcd on each (README: etcd restore):
#   kubeha-etcd-restore s3://BUCKET/snapshots/NAME.db restore-20260101
# The current data is moved aside, never deleted.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/etcd-common.sh"

snapshot=${1:?usage: kubeha-etcd-restore SNAPSHOT NEW_CLUSTER_TOKEN (SNAPSHOT: s3:// URL or file)}
token=${2:?usage: kubeha-etcd-restore SNAPSHOT NEW_CLUSTER_TOKEN}

if etcdctl --endpoints "$LOCAL_CLIENT_URL" endpoint health >/dev/null 2>&1; then
  log "etcd is running on this member: stop it first (systemctl stop $MEMBER_SERVICE)"
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
log "restored $snapshot; start etcd on every member now"
