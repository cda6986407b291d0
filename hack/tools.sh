#!/usr/bin/env bash
# Builds the pinned binaries kubeha's tests run, from Go modules, into
# .cache/tools/<name>-<version>/ (ignored by git), once per version, and
# links them into .cache/tools/bin. Prints that bin folder.
# Versions are pinned by the tool modules under hack/tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.cache/tools"

# build NAME VERSION TOOLMODULE PACKAGE
build() {
  local name=$1 version=$2 module=$3 package=$4
  local dir="$root/$name-$version"
  if [ ! -x "$dir/$name" ]; then
    echo "building $name $version" >&2
    mkdir -p "$dir"
    (cd "hack/tools/$module" && go build -trimpath -o "$dir/$name.tmp" "$package")
    mv "$dir/$name.tmp" "$dir/$name"
  fi
  mkdir -p "$root/bin"
  ln -sfn "$dir/$name" "$root/bin/$name"
}

ETCD_VERSION=v3.6.6
build etcd    "$ETCD_VERSION" etcd go.etcd.io/etcd/server/v3
build etcdctl "$ETCD_VERSION" etcd go.etcd.io/etcd/etcdctl/v3
build etcdutl "$ETCD_VERSION" etcd go.etcd.io/etcd/etcdutl/v3

echo "$root/bin"
