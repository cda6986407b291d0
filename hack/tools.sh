#!/usr/bin/env bash
# Builds the pinned binaries kubeha's tests and rehearsal nodes run (etcd,
# Kubernetes, containerd, runc, pause), from Go modules, into
# $KUBEHA_CACHE/tools/<name>-<version>/ (default ~/.cache/kubeha, outside
# the clone, so a fresh clone on the same machine reuses them), once per
# version, and links them into $KUBEHA_CACHE/tools/bin. Prints that folder.
# Versions are pinned by the tool modules under hack/tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${KUBEHA_CACHE:-$HOME/.cache/kubeha}/tools"

# [VAR=VALUE...] build NAME VERSION TOOLMODULE PACKAGE [GO BUILD FLAG...]
# VERSION keys the build folder: it carries a suffix where the build's flags
# differ from an earlier build of that version (-static: no cgo), so that
# changed flags rebuild. Assignments before it (CGO_ENABLED=0) reach go build.
# The tool is linked into bin/ as NAME, or as LINK when that is set.
build() {
  local name=$1 version=$2 module=$3 package=$4 link=${LINK:-$1}; shift 4
  local dir="$root/$name-$version" start=$SECONDS
  if [ ! -x "$dir/$name" ]; then
    echo "building $name $version" >&2
    mkdir -p "$dir"
    (cd "hack/tools/$module" && go build -trimpath "$@" -o "$dir/$name.tmp" "$package")
    mv "$dir/$name.tmp" "$dir/$name"
    echo "built $name $version in $((SECONDS - start))s" >&2
  fi
  mkdir -p "$root/bin"
  ln -sfn "$dir/$name" "$root/bin/$link"
}

ETCD_VERSION=v3.6.14
build etcd    "$ETCD_VERSION" etcd go.etcd.io/etcd/server/v3
build etcdctl "$ETCD_VERSION" etcd go.etcd.io/etcd/etcdctl/v3
build etcdutl "$ETCD_VERSION" etcd go.etcd.io/etcd/etcdutl/v3
# The previous pinned release, each linked as <name>-<version>: the
# rehearsal creates its cluster at it and rolls the members to the new one.
ETCD_PREVIOUS_VERSION=v3.6.6
for name in etcd etcdctl etcdutl; do
  module=server; [ "$name" = etcd ] || module=$name
  LINK="$name-$ETCD_PREVIOUS_VERSION" build "$name" "$ETCD_PREVIOUS_VERSION" etcd-previous "go.etcd.io/etcd/$module/v3"
done

# Kubernetes learns its own version from -X flags, as its release builds set
# them (kubeadm picks its defaults, and its skew checks, by it); a module
# build would say v0.0.0.
kube_ldflags() {
  local minor=${1#v1.} pkg flags=
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$1 -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  echo "-s -w$flags"
}
# Static (no cgo), stripped and with grpcnotrace, as Kubernetes' release
# builds are: the control plane runs in kubeha's node images, which have no
# libc (internal/lab/images.go). The kubelet is built the same way, so that
# all five share one build cache.
KUBERNETES_VERSION=v1.36.3
for name in kubeadm kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl; do
  CGO_ENABLED=0 build "$name" "$KUBERNETES_VERSION-static" kubernetes "k8s.io/kubernetes/cmd/$name" \
    -tags grpcnotrace -ldflags="$(kube_ldflags "$KUBERNETES_VERSION")"
done
# The older supported release, each linked as <name>-<version>: its kubeadm
# validates the configs 1.35 stacks render, and the rehearsal boots a 1.35
# cluster from all of them.
KUBERNETES_PREVIOUS_VERSION=v1.35.8
for name in kubeadm kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl; do
  CGO_ENABLED=0 LINK="$name-$KUBERNETES_PREVIOUS_VERSION" build "$name" "$KUBERNETES_PREVIOUS_VERSION-static" kubernetes-1.35 \
    "k8s.io/kubernetes/cmd/$name" -tags grpcnotrace -ldflags="$(kube_ldflags "$KUBERNETES_PREVIOUS_VERSION")"
done

# What a node runs under the kubelet: containerd, its runc shim and ctr
# (which imports the node's images), static, without the snapshotters a node
# does not use; runc with cgo, for seccomp (libseccomp, which Debian has).
CONTAINERD_VERSION=v2.3.4
for name in containerd containerd-shim-runc-v2 ctr; do
  CGO_ENABLED=0 build "$name" "$CONTAINERD_VERSION" containerd "github.com/containerd/containerd/v2/cmd/$name" \
    -tags "no_btrfs no_devmapper no_zfs no_aufs urfave_cli_no_docs" \
    -ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
done
RUNC_VERSION=v1.4.3
if [ -x "$root/runc-$RUNC_VERSION/runc" ] || pkg-config --exists libseccomp 2>/dev/null; then
  CGO_ENABLED=1 build runc "$RUNC_VERSION" runc github.com/opencontainers/runc \
    -tags "seccomp urfave_cli_no_docs" -ldflags="-s -w"
else
  echo "hack/tools.sh: not building runc: it needs libseccomp-dev and pkg-config (hack/deps.sh installs them)" >&2
fi

# Helm, which the add-on applier on control-plane nodes runs; it reads its
# version from -X, as Helm's release builds set it.
# The CNI reference plugins nodes install into /opt/cni/bin, as their
# release archive holds them (static), and flannel's CNI plugin, which the
# flannel chart's init container copies beside them.
CNI_PLUGINS_VERSION=v1.9.1
for name in bridge host-local loopback portmap; do
  dir=main; [ "$name" = host-local ] && dir=ipam; [ "$name" = portmap ] && dir=meta
  CGO_ENABLED=0 build "$name" "$CNI_PLUGINS_VERSION" cni-plugins "github.com/containernetworking/plugins/plugins/$dir/$name" \
    -ldflags="-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION"
done
FLANNEL_CNI_VERSION=v0.9.1
CGO_ENABLED=0 build flannel "$FLANNEL_CNI_VERSION" flannel-cni github.com/containernetworking/plugins/plugins/meta/flannel -ldflags="-s -w"

HELM_VERSION=v4.2.0
CGO_ENABLED=0 build helm "$HELM_VERSION" helm helm.sh/helm/v4/cmd/helm \
  -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"

# kube-bench, which the rehearsal runs on a control-plane and an etcd node,
# with the benchmark definitions (cfg/) of the same module.
KUBE_BENCH_VERSION=v0.12.0
CGO_ENABLED=0 build kube-bench "$KUBE_BENCH_VERSION" kube-bench github.com/aquasecurity/kube-bench \
  -ldflags="-s -w -X github.com/aquasecurity/kube-bench/cmd.KubeBenchVersion=$KUBE_BENCH_VERSION"
if [ ! -d "$root/kube-bench-$KUBE_BENCH_VERSION/cfg" ]; then
  bench_dir=$(cd hack/tools/kube-bench && go mod download -json "github.com/aquasecurity/kube-bench@$KUBE_BENCH_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  cp -r "$bench_dir/cfg" "$root/kube-bench-$KUBE_BENCH_VERSION/cfg.tmp"
  chmod -R u+w "$root/kube-bench-$KUBE_BENCH_VERSION/cfg.tmp"
  mv "$root/kube-bench-$KUBE_BENCH_VERSION/cfg.tmp" "$root/kube-bench-$KUBE_BENCH_VERSION/cfg"
fi
ln -sfn "$root/kube-bench-$KUBE_BENCH_VERSION/cfg" "$root/bin/kube-bench-cfg"

# kubeha's own pause (hack/tools/pause), keyed by its source.
pause_key=$(sha256sum hack/tools/pause/main.go | cut -c1-12)
CGO_ENABLED=0 build pause "$pause_key" pause . -ldflags="-s -w"

# What the rehearsal's pods run, for its registry (internal/lab/images.go):
# flanneld and install-conf at the flannel chart's version (flanneld needs
# cgo, for its UDP backend, linked static as the images have no libc), the
# flannel chart from the same module, CoreDNS at the coredns chart's
# appVersion with the Corefile's plugins (hack/tools/coredns), and
# kubeha's probe workload (hack/tools/probe, internal/workload), keyed by its source.
FLANNEL_VERSION=v0.28.9
CGO_ENABLED=1 build flanneld "$FLANNEL_VERSION-static" flannel github.com/flannel-io/flannel -tags "netgo osusergo" \
  -ldflags="-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION -extldflags -static"
CGO_ENABLED=0 build install-conf "$FLANNEL_VERSION" flannel github.com/flannel-io/flannel/cmd/install_conf -ldflags="-s -w"
if [ ! -d "$root/flannel-chart-$FLANNEL_VERSION" ]; then
  flannel_dir=$(cd hack/tools/flannel && go mod download -json "github.com/flannel-io/flannel@$FLANNEL_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  cp -r "$flannel_dir/chart/kube-flannel" "$root/flannel-chart-$FLANNEL_VERSION.tmp"
  chmod -R u+w "$root/flannel-chart-$FLANNEL_VERSION.tmp"
  mv "$root/flannel-chart-$FLANNEL_VERSION.tmp" "$root/flannel-chart-$FLANNEL_VERSION"
fi
ln -sfn "$root/flannel-chart-$FLANNEL_VERSION" "$root/bin/flannel-chart"
COREDNS_VERSION=v1.13.1
coredns_key=$(sha256sum hack/tools/coredns/main.go | cut -c1-12)
CGO_ENABLED=0 build coredns "$COREDNS_VERSION-$coredns_key" coredns . -ldflags="-s -w"
probe_key=$(cat hack/tools/probe/main.go internal/workload/workload.go | sha256sum | cut -c1-12)
CGO_ENABLED=0 build probe "$probe_key" probe . -ldflags="-s -w"

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
