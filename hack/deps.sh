#!/usr/bin/env bash
# Installs the Debian packages `make test` needs, when it runs as root on a
# Debian machine and one is missing: a newcomer's `make test` then runs
# every tier, as CI does. Anywhere else it only says what is missing; the
# tests that need it skip loudly, and fail in CI.
set -euo pipefail
# command:package pairs; a path instead of a command is a file the package
# installs (a library's header: runc builds against libseccomp with cgo).
needs=(make:make git:git curl:curl ip:iproute2 shellcheck:shellcheck cloud-init:cloud-init jq:jq
  openssl:openssl haproxy:haproxy nsenter:util-linux debootstrap:debootstrap systemd-nspawn:systemd-container
  update-ca-certificates:ca-certificates gcc:gcc pkg-config:pkg-config /usr/include/seccomp.h:libseccomp-dev)
missing=()
for pair in "${needs[@]}"; do
  case ${pair%%:*} in
  /*) [ -e "${pair%%:*}" ] && continue ;;
  *)
    command -v "${pair%%:*}" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 &&
      continue
    ;;
  esac
  missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "hack/deps.sh: not installing ${missing[*]} (needs root on Debian); the tests that need them will skip" >&2
  exit 0
fi
echo "hack/deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
