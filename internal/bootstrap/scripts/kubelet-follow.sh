#!/usr/bin/env bash
# A control-plane node booted while the cluster upgraded runs the older
# release's kubelet (kubernetes-node.sh). Once the version record says
# every API server runs this node's own release, this swaps the kubelet
# binary in place and restarts it, as kubeadm's upgrade runbook does.
# Control-plane nodes take turns, in name order, each only while every API
# server is ready. Run by kubeha-kubelet-follow.timer.
# shellcheck source-path=SCRIPTDIR
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/node-common.sh"
. "$here/kubernetes-node.sh"

own="$BIN_DIR/kubelet-$KUBERNETES_VERSION"
held="$STATIC_POD_DIR.held"
# A run stopped midway puts the API server back first.
if [ -e "$held/kube-apiserver.yaml" ]; then
  mv "$held/kube-apiserver.yaml" "$STATIC_POD_DIR/"
fi
[ -e "$own" ] || exit 0
apiservers=$(local_kubectl -n kube-system get pods -l component=kube-apiserver -o json)
# The record moves only once every API server runs this release: until
# then, reading it (an AWS CLI start) every run would tell nothing.
older=$(jq -r --arg v "$KUBERNETES_VERSION" '[.items[] | select(all(.spec.containers[]; .image | endswith(":" + $v)) | not)] | length' <<<"$apiservers")
if [ "$older" != 0 ]; then
  exit 0
fi
nodes=$(local_kubectl get nodes -l "$CONTROL_PLANE_LABEL" -o json)
first=$(jq -r --arg v "$KUBERNETES_VERSION" '[.items[] | select(.status.nodeInfo.kubeletVersion != $v) | .metadata.name] | sort | .[0] // ""' <<<"$nodes")
if [ "$first" != "$(hostname)" ]; then
  log "kubelet $KUBERNETES_VERSION waits for ${first:-its Node}'s turn"
  exit 0
fi
# Only the node whose turn it is reads the record.
recorded=$(recorded_version)
if [ "$recorded" != "$KUBERNETES_VERSION" ]; then
  exit 0
fi
# One ready API server per control-plane node: one stopped has no pod.
ready=$(jq '[.items[] | select(.status.conditions[]? | select(.type == "Ready" and .status == "True"))] | length' <<<"$apiservers")
if [ "$ready" -lt "$(jq '.items | length' <<<"$nodes")" ]; then
  log "kubelet $KUBERNETES_VERSION waits until every API server is ready ($ready are)"
  exit 0
fi
# The new kubelet takes the static pods for new ones (a release decodes,
# and so names, them anew) and stops the old API server at once, without
# its shutdown delay: the load balancer would send it requests until it
# failed two checks, and then to its successor before it could authorize
# them (HTTP 403). Stopped by the old kubelet, it fails /readyz first, so
# the load balancer takes it out, and lets it back in once ready.
mkdir -p "$held"
stop_static_pod kube-apiserver "$held"
systemctl stop kubelet
mv -f "$own" "$BIN_DIR/kubelet"
mv "$held/kube-apiserver.yaml" "$STATIC_POD_DIR/"
systemctl start kubelet
log "every API server runs $recorded: kubelet $KUBERNETES_VERSION runs in place of $KUBELET_HELD_VERSION"
