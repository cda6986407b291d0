#!/usr/bin/env bash
# Keeps the cluster's join tokens down to the one in the cluster secret,
# which only control-plane nodes hold: creates it if missing (it never
# expires, so a node added months later still joins) and deletes every
# other token but workers' own (WORKER_BOOTSTRAP_GROUP, short-lived; see
# control-plane-csr-approver.sh). Rotation is a `pulumi up`
# that raises controlPlane.joinTokenGeneration, which replaces the
# secret's token, ID and secret both (README: rotate the join token). A
# failed run counts TOKEN_SYNC_FAILED_METRIC, which an alarm watches.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"

trap 'count_failure "$TOKEN_SYNC_FAILED_METRIC"' EXIT

export KUBECONFIG=$ADMIN_KUBECONFIG
fetch_secrets
token=$(<"$BOOTSTRAP_TOKEN_FILE")
id=${token%%.*}
listed=$(kubeadm token list -o jsonpath='{.token}{" "}{.groups}{"\n"}')
existing=$(grep -vF "\"$WORKER_BOOTSTRAP_GROUP\"" <<<"$listed" | cut -d' ' -f1 || true)
if ! grep -qxF "$token" <<<"$existing"; then
  # A token under the same ID with another secret is replaced: kubeadm
  # refuses to create one whose ID exists.
  if grep -q "^$id\." <<<"$existing"; then
    kubeadm token delete "$id" >/dev/null
  fi
  kubeadm token create "$token" --ttl 0 --description "$TOKEN_DESCRIPTION" >/dev/null
  log "join token $id created"
fi
while read -r old; do
  if [ -n "$old" ] && [ "${old%%.*}" != "$id" ]; then
    kubeadm token delete "${old%%.*}" >/dev/null
    log "join token ${old%%.*} deleted: not the cluster secret's"
  fi
done <<<"$existing"
