#!/usr/bin/env bash
# First boot of an etcd member (cloud-init runcmd): install the pinned etcd
# from the cluster's asset bucket, attach and mount this member's data
# volume, point its DNS name at this instance, fetch its certificates, then
# start etcd and the backup timer.
# shellcheck source-path=SCRIPTDIR
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/etcd-common.sh"
. "$here/imds.sh"
. "$here/assets.sh"

install_etcd() {
  local tmp
  tmp=$(mktemp -d)
  fetch_asset "$ETCD_ARCHIVE_URL" "$ETCD_ARCHIVE_SHA256" "$tmp/etcd.tar.gz"
  tar -xzf "$tmp/etcd.tar.gz" -C "$tmp" --strip-components=1
  install -m 0755 "$tmp/etcd" "$tmp/etcdctl" "$tmp/etcdutl" "$BIN_DIR/"
  rm -rf "$tmp"
}

# Prints the block device of this member's volume once it is attached here.
attach_volume() {
  local instance attached dev
  instance=$(imds instance-id)
  # The instance this one replaces may still hold the volume: retry.
  until attached=$(aws ec2 describe-volumes --volume-ids "$VOLUME_ID" \
      --query 'Volumes[0].Attachments[0].InstanceId' --output text) && [ "$attached" = "$instance" ]; do
    aws ec2 attach-volume --volume-id "$VOLUME_ID" --instance-id "$instance" --device /dev/xvdf >/dev/null 2>&1 ||
      log "waiting for $VOLUME_ID (attached to: $attached)"
    sleep 10
  done
  for _ in $(seq 90); do
    for dev in "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${VOLUME_ID//-/}" /dev/xvdf; do
      if [ -b "$dev" ]; then readlink -f "$dev"; return; fi
    done
    sleep 2
  done
  log "$VOLUME_ID is attached but no block device appeared"
  return 1
}

# Formats the volume only if it holds no filesystem at all: anything else is
# this member's data, or a device we cannot read, and must not be wiped.
mount_volume() {
  local dev=$1 rc=0
  blkid -p "$dev" >/dev/null || rc=$?
  case $rc in
    0) ;;
    2) mkfs.ext4 -q -L etcd-data "$dev" ;;
    *) log "cannot probe $dev (blkid exit $rc); not formatting"; return 1 ;;
  esac
  mkdir -p "$VOLUME_MOUNT"
  grep -q " $VOLUME_MOUNT " /etc/fstab ||
    echo "UUID=$(blkid -s UUID -o value "$dev") $VOLUME_MOUNT ext4 defaults,nofail,noatime 0 2" >>/etc/fstab
  mountpoint -q "$VOLUME_MOUNT" || mount "$VOLUME_MOUNT"
  chmod 0700 "$VOLUME_MOUNT"
}

upsert_dns() {
  local ip
  ip=$(imds local-ipv4)
  aws route53 change-resource-record-sets --hosted-zone-id "$HOSTED_ZONE_ID" --change-batch \
    "{\"Changes\":[{\"Action\":\"UPSERT\",\"ResourceRecordSet\":{\"Name\":\"$MEMBER_DNS\",\"Type\":\"A\",\"TTL\":30,\"ResourceRecords\":[{\"Value\":\"$ip\"}]}}]}" >/dev/null
  log "$MEMBER_DNS -> $ip"
}

# Writes every entry of the member's secret (its CA, server and peer
# certificates and keys) into its PKI folder, owner-only.
fetch_certs() {
  local secret file
  install -d -m 0700 "$PKI_DIR"
  secret=$(aws secretsmanager get-secret-value --secret-id "$SECRET_ID" --query SecretString --output text)
  for file in $(jq -r 'keys[]' <<<"$secret"); do
    (umask 077 && jq -er --arg f "$file" '.[$f]' <<<"$secret" >"$PKI_DIR/$file")
  done
}

install_etcd
mount_volume "$(attach_volume)"
upsert_dns
fetch_certs
systemctl daemon-reload
systemctl enable --now "$MEMBER_SERVICE" "$BACKUP_TIMER"
