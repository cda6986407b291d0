# Sourced by kubeha's Kubernetes node scripts: installs containerd, runc,
# kubelet, kubeadm and the CNI reference plugins from the cluster's asset
# bucket, each checked against
# its pinned digest, and imports the image archives the node's settings
# list, so that joining pulls nothing from a registry.
# shellcheck shell=bash
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/imds.sh"
. "$(dirname "${BASH_SOURCE[0]}")/assets.sh"

install_kubernetes() {
  local tmp entry ref archives=()
  while read -r module; do modprobe "$module"; done <"$KERNEL_MODULES_FILE"
  sysctl --system >/dev/null
  tmp=$(mktemp -d)
  fetch_asset "$CONTAINERD_ARCHIVE_URL" "$CONTAINERD_ARCHIVE_SHA256" "$tmp/containerd.tar.gz"
  tar -xzf "$tmp/containerd.tar.gz" -C "$tmp"
  install -m 0755 "$tmp"/bin/* "$BIN_DIR/"
  fetch_asset "$RUNC_URL" "$RUNC_SHA256" "$tmp/runc"
  install -m 0755 "$tmp/runc" "$RUNC_PATH"
  fetch_asset "$KUBEADM_URL" "$KUBEADM_SHA256" "$tmp/kubeadm"
  fetch_asset "$KUBELET_URL" "$KUBELET_SHA256" "$tmp/kubelet"
  install -m 0755 "$tmp/kubeadm" "$tmp/kubelet" "$BIN_DIR/"
  if [ -n "${KUBELET_HELD_VERSION:-}" ]; then
    hold_kubelet "$tmp"
  fi
  fetch_asset "$CNI_PLUGINS_ARCHIVE_URL" "$CNI_PLUGINS_ARCHIVE_SHA256" "$tmp/cni-plugins.tgz"
  mkdir -p "$CNI_BIN_DIR"
  tar -xzf "$tmp/cni-plugins.tgz" -C "$CNI_BIN_DIR"
  systemctl daemon-reload
  systemctl enable --now containerd
  IFS=, read -r -a archives <<<"${IMAGE_ARCHIVES:-}"
  for entry in "${archives[@]}"; do
    fetch_asset "${entry%#*}" "${entry##*#}" "$tmp/image.tar"
    ctr --namespace k8s.io images import "$tmp/image.tar" >/dev/null
    rm -f "$tmp/image.tar"
  done
  # The release's archives name each image for its architecture
  # (kube-apiserver-amd64); kubeadm asks for it without.
  for ref in $(ctr --namespace k8s.io images list --quiet | grep -e '-amd64:' || true); do
    ctr --namespace k8s.io images tag --force "$ref" "${ref/-amd64:/:}" >/dev/null
  done
  # Pinned: the kubelet's image garbage collection, under disk pressure,
  # deletes unused images, and the node has no registry to pull these
  # again from (an upgrade's kube-proxy waits unused until its turn).
  for ref in $(ctr --namespace k8s.io images list --quiet); do
    ctr --namespace k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
  done
  systemctl enable kubelet
  rm -rf "$tmp"
}

# The release every API server runs, as the version record says: the
# cluster's at creation, moved by `kubeha upgrade` once every API server
# runs a new one.
recorded_version() {
  aws ssm get-parameter --name "$VERSION_PARAMETER" --query Parameter.Value --output text
}

# While the cluster upgrades, no kubelet may be newer than any API server:
# unless the record says every API server runs this node's release, the
# node runs the held release's kubelet, and keeps its own beside it
# (kubelet-follow.sh swaps them later on a control-plane node).
hold_kubelet() {
  local running
  running=$(recorded_version) || {
    log "cannot read the version record $VERSION_PARAMETER"
    return 1
  }
  if [ "$running" = "$KUBERNETES_VERSION" ]; then
    log "every API server runs $running: kubelet $KUBERNETES_VERSION"
    return 0
  fi
  fetch_asset "$KUBELET_HELD_URL" "$KUBELET_HELD_SHA256" "$1/kubelet-held"
  mv -f "$BIN_DIR/kubelet" "$BIN_DIR/kubelet-$KUBERNETES_VERSION"
  install -m 0755 "$1/kubelet-held" "$BIN_DIR/kubelet"
  log "the API servers run $running: kubelet held at $KUBELET_HELD_VERSION"
}

# kubectl, for the operator and the add-on applier, and Helm, which the
# applier installs charts with.
install_control_plane_tools() {
  local tmp
  tmp=$(mktemp -d)
  fetch_asset "$KUBECTL_URL" "$KUBECTL_SHA256" "$tmp/kubectl"
  fetch_asset "$HELM_ARCHIVE_URL" "$HELM_ARCHIVE_SHA256" "$tmp/helm.tar.gz"
  tar -xzf "$tmp/helm.tar.gz" -C "$tmp" linux-amd64/helm
  install -m 0755 "$tmp/kubectl" "$tmp/linux-amd64/helm" "$BIN_DIR/"
  rm -rf "$tmp"
}

# kubeadm writes the kubelet's configuration readable by all; it is the
# kubelet's alone (CIS 4.1.9).
restrict_kubelet_config() {
  chmod 0600 "$KUBELET_CONFIG"
}

# The AWS cloud-controller-manager finds a node's instance by its private
# DNS name, so the node is named after it.
set_node_name() {
  hostnamectl set-hostname "$(imds local-hostname)"
}
