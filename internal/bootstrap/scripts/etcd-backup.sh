#!/usr/bin/env bash
# Timer job: on the current leader only, save a snapshot, check it and upload
# it to S3. Followers exit quietly, so each interval gives one snapshot.
# shellcheck source=etcd-common.sh
. /usr/local/lib/kubeha/etcd-common.sh

status=$(ctl --endpoints "$LOCAL" endpoint status -w fields)
member=$(awk -F' : ' '$1 == "\"MemberID\"" {print $2}' <<<"$status")
leader=$(awk -F' : ' '$1 == "\"Leader\"" {print $2}' <<<"$status")
if [ -z "$member" ] || [ "$member" != "$leader" ]; then
  log "not the leader; no snapshot this time"
  exit 0
fi

name="$CLUSTER_NAME-$(date -u +%Y%m%dT%H%M%SZ)-$MEMBER_NAME.db"
dir=/var/lib/etcd/backup
mkdir -p "$dir"
trap 'rm -f "$dir/$name" "$dir/$name.part"' EXIT
ctl --endpoints "$LOCAL" snapshot save "$dir/$name" >/dev/null
etcdutl snapshot status "$dir/$name" -w table >&2
aws s3 cp "$dir/$name" "$BACKUP_URL/$name" --sse aws:kms --sse-kms-key-id "$KMS_KEY_ID" --only-show-errors
log "snapshot saved to $BACKUP_URL/$name"
# The snapshot-age alarm fires when this count stays at zero.
aws cloudwatch put-metric-data --namespace kubeha --metric-name EtcdSnapshotUploaded \
  --dimensions "Cluster=$CLUSTER_NAME" --value 1 --unit Count
