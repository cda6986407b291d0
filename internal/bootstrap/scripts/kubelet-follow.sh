#!/usr/bin/env bash
# A control-plane node booted while the cluster upgraded runs the older
# release's kubelet (kubernetes-node.sh). Once the version record says
# every API server runs this node's own release, this swaps the kubelet
# binary in place and restarts it, as kubeadm's upgrade runbook does. The
# new kubelet may restart the static pods (a release hashes their
# containers anew), so control-plane nodes take turns, in name order,
# each only while every API server is ready. Run by
# kubeha-kubelet-follow.timer.
# shellcheck source-path=SCRIPTDIR
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/node-common.sh"
. "$here/kubernetes-node.sh"

own="$BIN_DIR/kubelet-$KUBERNETES_VERSION"
[ -e "$own" ] || exit 0
running=$(recorded_version)
if [ "$running" != "$KUBERNETES_VERSION" ]; then
  exit 0
fi
first=$(local_kubectl get nodes -l "$CONTROL_PLANE_LABEL" -o json |
  jq -r --arg v "$KUBERNETES_VERSION" '[.items[] | select(.status.nodeInfo.kubeletVersion != $v) | .metadata.name] | sort | .[0] // ""')
if [ "$first" != "$(hostname)" ]; then
  log "kubelet $KUBERNETES_VERSION waits for ${first:-its Node}'s turn"
  exit 0
fi
unready=$(local_kubectl -n kube-system get pods -l component=kube-apiserver -o json |
  jq -r '[.items[] | select([.status.conditions[]? | select(.type == "Ready" and .status == "True")] | length == 0) | .metadata.name] | join(" ")')
if [ -n "$unready" ]; then
  log "kubelet $KUBERNETES_VERSION waits until $unready is ready"
  exit 0
fi
mv -f "$own" "$BIN_DIR/kubelet"
systemctl restart kubelet
log "every API server runs $running: kubelet $KUBERNETES_VERSION runs in place of $KUBELET_HELD_VERSION"
