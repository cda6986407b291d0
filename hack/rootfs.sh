#!/usr/bin/env bash
# Builds the Debian 12 root filesystem the rehearsal boots as nodes
# (systemd-nspawn system containers), once, into
# $KUBEHA_CACHE/rootfs/bookworm-<hash of this script> (default
# ~/.cache/kubeha, outside the clone), and prints that folder. Needs root,
# debootstrap and Debian's mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
# The image carries the module index of the machine's kernel (below).
key=$( (cat hack/rootfs.sh; uname -r) | sha256sum | cut -c1-12)
root="${KUBEHA_CACHE:-$HOME/.cache/kubeha}/rootfs"
dir="$root/bookworm-$key"
if [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi
# Tests in several packages may ask at once: one builds, the others wait
# for it and take its image.
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9
if [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi

# What an EC2 node of kubeha's image has before its user-data runs: systemd,
# cloud-init, and the tools kubeha's scripts call.
packages=(systemd systemd-sysv dbus udev cloud-init python3-cffi-backend awscli jq curl ca-certificates
  iproute2 iptables kmod procps util-linux e2fsprogs gpg conntrack socat ethtool)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

start=$(date +%s)
rm -rf "$dir.tmp"
mkdir -p "$root"
echo "building the node rootfs in $dir" >&2
debootstrap --variant=minbase bookworm "$dir.tmp" "$mirror" >&2
# Nothing may start services inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' >"$dir.tmp/usr/sbin/policy-rc.d"
chmod 0755 "$dir.tmp/usr/sbin/policy-rc.d"
chroot "$dir.tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
chroot "$dir.tmp" apt-get clean
rm -f "$dir.tmp/usr/sbin/policy-rc.d"
# The packages are in the image; no mirror is reachable from the lab, so
# apt has none (cloud-init's package_update then has nothing to fetch).
rm -f "$dir.tmp/etc/apt/sources.list"

# NoCloud only (the seed kubeha writes), the rehearsal's own network, and a
# locale the image has: without it the first boot ends in error.
cat >"$dir.tmp/etc/cloud/cloud.cfg.d/90-kubeha-rehearsal.cfg" <<'EOF'
datasource_list: [NoCloud, None]
network: {config: disabled}
locale: C.UTF-8
EOF
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$dir.tmp/etc/hosts"

# Nodes run on the machine's kernel, so the image's module index is the
# kernel's: the modules kubeha's nodes load that this kernel has built in
# (modprobe then succeeds for those, and fails for any it lacks).
kernel=$(uname -r)
mkdir -p "$dir.tmp/lib/modules/$kernel"
builtin=()
grep -qw overlay /proc/filesystems && builtin+=(kernel/fs/overlayfs/overlay.ko)
[ -d /proc/sys/net/bridge ] && builtin+=(kernel/net/bridge/br_netfilter.ko)
printf '%s\n' "${builtin[@]}" >"$dir.tmp/lib/modules/$kernel/modules.builtin"
chroot "$dir.tmp" depmod "$kernel" 2>/dev/null

# The nodes' PID 1: nspawn mounts the machine's cgroup v1 hierarchies and
# /proc/sys read-only; kubelet and containerd write to both, as they do on
# EC2, so this makes them writable and becomes systemd.
cat >"$dir.tmp/usr/local/sbin/kubeha-lab-init" <<'INIT'
#!/bin/sh
# nspawn bind-mounts each hierarchy read-only: a bind remount lifts it.
mount -o remount,rw /sys/fs/cgroup 2>/dev/null
for hierarchy in /sys/fs/cgroup/*/; do
  mount -o remount,bind,rw "$hierarchy" 2>/dev/null
done
mount -o remount,rw /proc/sys
exec /sbin/init "$@"
INIT
chmod 0755 "$dir.tmp/usr/local/sbin/kubeha-lab-init"
# kubelet refuses cgroup v1, which is all the machine's kernel offers here,
# unless told otherwise; on EC2 the image has cgroup v2.
printf 'KUBELET_EXTRA_ARGS=--fail-cgroupv1=false\n' >"$dir.tmp/etc/default/kubelet"
# The machine gives containers no CAP_SYS_RESOURCE, which lowering an OOM
# score needs: containerd keeps its own and its containers' at 0 here.
mkdir -p "$dir.tmp/etc/systemd/system/containerd.service.d" "$dir.tmp/etc/containerd/conf.d"
printf '[Service]\nOOMScoreAdjust=0\n' >"$dir.tmp/etc/systemd/system/containerd.service.d/10-lab.conf"
cat >"$dir.tmp/etc/containerd/conf.d/10-lab.toml" <<'TOML'
version = 3
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
TOML
# Each boot is a first boot with its own machine id.
: >"$dir.tmp/etc/machine-id"
rm -f "$dir.tmp/var/lib/dbus/machine-id"
touch "$dir.tmp/.complete"
mv "$dir.tmp" "$dir"
echo "node rootfs built in $(( $(date +%s) - start ))s" >&2
echo "$dir"
