#!/usr/bin/env bash
# First boot of an etcd member (kubeha-bootstrap.service, rerun until it
# succeeds): install the pinned etcd from the cluster's asset bucket,
# attach and mount this member's data volume, point its DNS name at this
# instance, fetch its certificates, start etcd and its timers, and once the
# member is a healthy voter, let its group put the instance in service.
# shellcheck source-path=SCRIPTDIR
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/etcd-common.sh"
. "$here/imds.sh"
. "$here/assets.sh"
. "$here/credentials.sh"
. "$here/bootstrap-steps.sh"

install_etcd() {
  local tmp
  tmp=$(mktemp -d)
  fetch_asset "$ETCD_ARCHIVE_URL" "$ETCD_ARCHIVE_SHA256" "$tmp/etcd.tar.gz"
  tar -xzf "$tmp/etcd.tar.gz" -C "$tmp" --strip-components=1
  install -m 0755 "$tmp/etcd" "$tmp/etcdctl" "$tmp/etcdutl" "$BIN_DIR/"
  rm -rf "$tmp"
}

# Prints the block device of this member's volume once it is attached
# here. The instance this one replaces may still hold the volume: wait up
# to 3 minutes for it to let go; any refusal from EC2 fails the step.
attach_volume() {
  local instance mine attached dev
  instance=$(imds instance-id)
  mine="$instance"$'\t'attached
  for _ in $(seq 18); do
    attached=$(aws ec2 describe-volumes --volume-ids "$VOLUME_ID" \
      --query 'Volumes[0].Attachments[0].[InstanceId,State]' --output text)
    case $attached in
      "$mine") break ;;
      None | *detached) aws ec2 attach-volume --volume-id "$VOLUME_ID" --instance-id "$instance" --device /dev/xvdf >/dev/null ;;
      *) log "waiting for $VOLUME_ID (attachment: $attached)" ;;
    esac
    sleep 10
  done
  [ "$attached" = "$mine" ] || { log "$VOLUME_ID is still not attached here"; return 1; }
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

attach_and_mount() {
  local dev
  dev=$(attach_volume)
  mount_volume "$dev"
}

upsert_dns() {
  local ip
  ip=$(imds local-ipv4)
  aws route53 change-resource-record-sets --hosted-zone-id "$HOSTED_ZONE_ID" --change-batch \
    "{\"Changes\":[{\"Action\":\"UPSERT\",\"ResourceRecordSet\":{\"Name\":\"$MEMBER_DNS\",\"Type\":\"A\",\"TTL\":$MEMBER_DNS_TTL,\"ResourceRecords\":[{\"Value\":\"$ip\"}]}}]}" >/dev/null
  log "$MEMBER_DNS -> $ip"
}

# Peers find this member by name: start only once the name gives this
# address, so that none caches an old answer or none at all.
dns_in_sync() {
  local ip
  ip=$(imds local-ipv4)
  for _ in $(seq 12); do
    [ "$(getent ahostsv4 "$MEMBER_DNS" | awk 'NR == 1 {print $1}')" = "$ip" ] && return 0
    sleep 5
  done
  log "$MEMBER_DNS does not resolve to $ip yet"
  return 1
}

start_member() {
  systemctl daemon-reload
  systemctl enable --now "$MEMBER_SERVICE" "$BACKUP_TIMER" "$PROMOTE_TIMER" "$CERT_REFRESH_TIMER" "$LEAVE_TIMER"
}

# Healthy for its role: a voter (a learner is promoted only once it caught
# up with the leader) that answers.
member_voting() {
  local learner
  learner=$(etcdctl --endpoints "$CLIENT_ENDPOINTS" member list |
    awk -F', ' -v name="$MEMBER_NAME" '$3 == name {print $6}')
  if [ "$learner" != false ]; then
    log "not a voter yet (learner: ${learner:-not a member})"
    return 1
  fi
  etcdctl --endpoints "$LOCAL_CLIENT_URL" endpoint health >/dev/null
}

step etcd install_etcd
step volume attach_and_mount
step dns upsert_dns
step dns-in-sync dns_in_sync
# The member's CA, server and peer certificates and keys.
step certs write_secret_files "$SECRET_ID" "$PKI_DIR"
step start start_member
ready_for_service member_voting
bootstrap_done
