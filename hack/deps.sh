#!/usr/bin/env bash
# Installs the Debian packages `make test` needs, when it runs as root on a
# Debian machine and one is missing: a newcomer's `make test` then runs
# every tier, as CI does. Anywhere else it only says what is missing; the
# tests that need it skip loudly, and fail in CI.
set -euo pipefail
# command:package pairs.
needs=(make:make git:git curl:curl ip:iproute2 shellcheck:shellcheck cloud-init:cloud-init jq:jq
  openssl:openssl haproxy:haproxy nsenter:util-linux debootstrap:debootstrap systemd-nspawn:systemd-container
  update-ca-certificates:ca-certificates)
missing=()
for pair in "${needs[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 ||
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
