#!/usr/bin/env bash
# Timer job: on the current leader only, save a snapshot, check it and upload
# it to S3. Followers exit quietly, so each interval gives one snapshot.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/etcd-common.sh"

status=$(etcdctl --endpoints "$LOCAL_CLIENT_URL" endpoint status -w fields)
member=$(awk -F' : ' '$1 == "\"MemberID\"" {print $2}' <<<"$status")
leader=$(awk -F' : ' '$1 == "\"Leader\"" {print $2}' <<<"$status")
if [ -z "$member" ] || [ "$member" != "$leader" ]; then
  log "not the leader; no snapshot this time"
  exit 0
fi

name="$CLUSTER_NAME-$(date -u +%Y%m%dT%H%M%SZ)-$MEMBER_NAME.db"
mkdir -p "$BACKUP_DIR"
trap 'rm -f "$BACKUP_DIR/$name" "$BACKUP_DIR/$name.part"' EXIT
etcdctl --endpoints "$LOCAL_CLIENT_URL" snapshot save "$BACKUP_DIR/$name" >/dev/null
etcdutl snapshot status "$BACKUP_DIR/$name" -w table >&2
aws s3 cp "$BACKUP_DIR/$name" "$BACKUP_URL/$name" --sse aws:kms --sse-kms-key-id "$KMS_KEY_ID" --only-show-errors
log "snapshot saved to $BACKUP_URL/$name"
# The snapshot-age alarm fires when this count stays at zero.
aws cloudwatch put-metric-data --namespace "$SNAPSHOT_METRIC_NAMESPACE" --metric-name "$SNAPSHOT_METRIC" \
  --dimensions "$SNAPSHOT_METRIC_DIMENSIONS" --value 1 --unit Count
