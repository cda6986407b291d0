#!/usr/bin/env bash
# Keeps the cluster's kubeha join token equal to the one in the cluster
# secret: creates it if missing (it never expires, so a node added months
# later still joins) and deletes any older kubeha token. Rotation is a
# `pulumi up` that replaces the secret's token (README: join token).
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"

export KUBECONFIG=$ADMIN_KUBECONFIG
fetch_secrets
token=$(<"$BOOTSTRAP_TOKEN_FILE")
existing=$(kubeadm token list -o jsonpath='{.token}{"|"}{.description}{"\n"}')
if ! grep -q "^$token|" <<<"$existing"; then
  kubeadm token create "$token" --ttl 0 --description "$TOKEN_DESCRIPTION" >/dev/null
  log "join token ${token%%.*} created"
fi
while IFS='|' read -r old description; do
  if [ "$description" = "$TOKEN_DESCRIPTION" ] && [ "$old" != "$token" ]; then
    kubeadm token delete "${old%%.*}" >/dev/null
    log "old join token ${old%%.*} deleted"
  fi
done <<<"$existing"
