#!/usr/bin/env bash
# Builds the pinned binaries kubeha's tests run, from Go modules, into
# $KUBEHA_CACHE/tools/<name>-<version>/ (default ~/.cache/kubeha, outside
# the clone, so a fresh clone on the same machine reuses them), once per
# version, and links them into $KUBEHA_CACHE/tools/bin. Prints that folder.
# Versions are pinned by the tool modules under hack/tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${KUBEHA_CACHE:-$HOME/.cache/kubeha}/tools"

# build NAME VERSION TOOLMODULE PACKAGE [GO BUILD FLAG...]
build() {
  local name=$1 version=$2 module=$3 package=$4; shift 4
  local dir="$root/$name-$version"
  if [ ! -x "$dir/$name" ]; then
    echo "building $name $version" >&2
    mkdir -p "$dir"
    (cd "hack/tools/$module" && go build -trimpath "$@" -o "$dir/$name.tmp" "$package")
    mv "$dir/$name.tmp" "$dir/$name"
  fi
  mkdir -p "$root/bin"
  ln -sfn "$dir/$name" "$root/bin/$name"
}

ETCD_VERSION=v3.6.6
build etcd    "$ETCD_VERSION" etcd go.etcd.io/etcd/server/v3
build etcdctl "$ETCD_VERSION" etcd go.etcd.io/etcd/etcdctl/v3
build etcdutl "$ETCD_VERSION" etcd go.etcd.io/etcd/etcdutl/v3

# Kubernetes learns its own version from -X flags, as its release builds set
# them (kubeadm picks its defaults by it); a module build would say v0.0.0.
KUBERNETES_VERSION=v1.36.3
minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
kube_ldflags=
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
done
for name in kubeadm kube-apiserver kube-controller-manager kube-scheduler; do
  build "$name" "$KUBERNETES_VERSION" kubernetes "k8s.io/kubernetes/cmd/$name" -ldflags="$kube_ldflags"
done

# CRDs of the custom resources kubeha applies itself, for the schema check
# against the real kube-apiserver: copied from the upstream Go modules.
# crd MODULE VERSION FILE...
crd() {
  local module=$1 version=$2; shift 2
  local dir
  mkdir -p "$root/crds"
  for file in "$@"; do
    [ -s "$root/crds/$(basename "$file")" ] && continue
    dir=${dir:-$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')}
    cp "$dir/$file" "$root/crds/"
    chmod 0644 "$root/crds/$(basename "$file")"
  done
}
crd github.com/kubernetes-csi/external-snapshotter/client/v8 v8.6.0 \
  config/crd/snapshot.storage.k8s.io_volumesnapshotclasses.yaml
crd github.com/prometheus-operator/prometheus-operator v0.85.0 \
  example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml

echo "$root/bin"
