# Sourced by kubeha's Kubernetes node scripts: installs containerd,
# kubelet, kubeadm and kubectl at the versions the node's settings pin.
# shellcheck shell=bash
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/imds.sh"

add_apt_repository() {
  local name=$1 key_url=$2 line=$3
  curl -fsSL --retry 5 "$key_url" | gpg --dearmor --yes -o "/etc/apt/keyrings/$name.gpg"
  echo "deb [signed-by=/etc/apt/keyrings/$name.gpg] $line" >"/etc/apt/sources.list.d/$name.list"
}

install_kubernetes() {
  local codename
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  while read -r module; do modprobe "$module"; done <"$KERNEL_MODULES_FILE"
  sysctl --system >/dev/null
  install -d -m 0755 /etc/apt/keyrings
  add_apt_repository kubernetes "https://pkgs.k8s.io/core:/stable:/v$KUBERNETES_MINOR/deb/Release.key" \
    "https://pkgs.k8s.io/core:/stable:/v$KUBERNETES_MINOR/deb/ /"
  add_apt_repository docker https://download.docker.com/linux/debian/gpg \
    "https://download.docker.com/linux/debian $codename stable"
  apt-get update -qq
  apt-get install -y -qq "containerd.io=$CONTAINERD_SERIES.*" "kubelet=$KUBERNETES_PACKAGE_VERSION" \
    "kubeadm=$KUBERNETES_PACKAGE_VERSION" "kubectl=$KUBERNETES_PACKAGE_VERSION"
  apt-mark hold containerd.io kubelet kubeadm kubectl >/dev/null
  # containerd.io ships with its CRI plugin off; kubelet needs it, with
  # systemd managing cgroups as kubelet does.
  containerd config default >/etc/containerd/config.toml
  sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
  systemctl restart containerd
  systemctl enable kubelet
}

# The AWS cloud-controller-manager finds a node's instance by its private
# DNS name, so the node is named after it.
set_node_name() {
  hostnamectl set-hostname "$(imds local-hostname)"
}
