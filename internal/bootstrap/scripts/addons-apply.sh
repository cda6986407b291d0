#!/usr/bin/env bash
# Applies the cluster's add-on set (ADDON_SET_URL, which every `pulumi up`
# renders) in its order: each chart release with Helm from its archive in
# the asset bucket, checked against its digest, and each object with
# kubectl. Every control-plane node runs this on a timer; only the holder
# of the kube-system Lease APPLIER_NAME applies, so two never run at once,
# and it keeps the Lease between runs, so one node does the work.
# APPLIER_NAME also marks what it applies: Helm release descriptions and
# the server-side apply field manager.
# A release whose last install carries its step's revision is left alone;
# a changed or deleted one is installed again. A run that applies the whole
# set records its revision at ADDON_STATUS_URL (when it changed, or
# STATUS_REFRESH_SECONDS after the last record) and counts APPLIED_METRIC
# (at most every APPLIED_COUNT_SECONDS: each is an AWS CLI start, and the
# alarm needs one a period); a failed run counts FAILED_METRIC, and the
# next run tries again.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"
. "$(dirname "${BASH_SOURCE[0]}")/assets.sh"
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/due.sh"
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lease.sh"

export KUBECONFIG=$ADMIN_KUBECONFIG
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
name=

# apply_release STEP installs or upgrades the step's release unless its
# last install is this revision and deployed.
apply_release() {
  local name namespace revision key sha256 status
  # Runs as an if condition, where set -e does not stop at a failure: each
  # command that must succeed says so.
  name=$(jq -r .release.name <<<"$1")
  namespace=$(jq -r .release.namespace <<<"$1")
  revision=$(jq -r .revision <<<"$1")
  status=$(helm history "$name" --namespace "$namespace" --max 1 --output json 2>/dev/null |
    jq -r '.[-1] | .status + " " + .description' || true)
  if [ "$status" = "deployed $APPLIER_NAME $revision" ]; then
    return 0
  fi
  # A run stopped inside Helm (a node replaced, a lost lease) leaves the
  # release pending, which Helm refuses to change again: under the lease
  # no other Helm runs, so undo it.
  case $status in
    pending-install*)
      log "add-on set: $name was left pending-install; removing it"
      helm uninstall "$name" --namespace "$namespace" --no-hooks >/dev/null || return 1
      ;;
    pending-*)
      log "add-on set: $name was left ${status%% *}; rolling back"
      helm rollback "$name" --namespace "$namespace" --no-hooks >/dev/null || return 1
      ;;
  esac
  key=$(jq -r .release.archive.Key <<<"$1")
  sha256=$(jq -r .release.archive.SHA256 <<<"$1")
  fetch_asset "s3://$ASSET_BUCKET/$key" "$sha256" "$work/$name.tgz" || return 1
  jq .release.values <<<"$1" >"$work/$name.values.json"
  log "add-on set: applying $name $(jq -r .release.version <<<"$1")"
  # A release that does not become ready rolls back (a first install is
  # removed), and the next run tries again.
  helm upgrade --install "$name" "$work/$name.tgz" --namespace "$namespace" --create-namespace \
    --values "$work/$name.values.json" --rollback-on-failure --wait=watcher --timeout "${HELM_TIMEOUT}s" --history-max 10 \
    --description "$APPLIER_NAME $revision" >/dev/null
}

apply_object() {
  jq .object <<<"$1" | kubectl apply --server-side --force-conflicts --field-manager "$APPLIER_NAME" -f - >/dev/null
}

count() {
  aws cloudwatch put-metric-data --namespace "$METRIC_NAMESPACE" --metric-name "$1" \
    --dimensions "$METRIC_DIMENSIONS" --value 1 --unit Count || log "add-on set: could not count $1"
}

# keep_lease renews the Lease every LEASE_RENEW_SECONDS while the run
# lasts; if a renewal finds it taken (only possible once it expired), it
# stops the whole run, Helm included, rather than apply beside another.
keep_lease() {
  while sleep "$LEASE_RENEW_SECONDS"; do
    if ! renew_lease "$APPLIER_NAME" "$LEASE_SECONDS"; then
      log "add-on set: lost the lease; stopping this run"
      kill -TERM 0
    fi
  done
}

# finish runs on every exit once the lease is held. A run that did not
# apply the whole set counts a failure and gives the lease back, for any
# node to try. One that did keeps it: the other nodes' runs then stop at
# once, and this node's next run takes it as its own; lost with this node,
# it expires after LEASE_SECONDS.
finish() {
  local status=$?
  { kill "$keeper" && wait "$keeper"; } 2>/dev/null || true
  if [ "$applied_all" != yes ]; then
    log "add-on set: this run failed at ${name:-its start}; the next run tries again"
    count "$FAILED_METRIC"
    release_lease "$APPLIER_NAME" || true
  else
    renew_lease "$APPLIER_NAME" "$LEASE_SECONDS" || true
  fi
  rm -rf "$work"
  exit "$status"
}

# prune uninstalls the releases this applier installed that the set no
# longer holds (an add-on switched off). Objects it applied stay.
prune() {
  local release namespace last installed
  # Helm v4 lists releases in every status by default.
  installed=$(helm list --all-namespaces --output json | jq -r '.[] | .name + " " + .namespace')
  while read -r release namespace; do
    [ -n "$release" ] || continue
    jq -e --arg n "$release" --arg ns "$namespace" \
      'any(.steps[].release // empty; .name == $n and .namespace == $ns)' "$work/set.json" >/dev/null && continue
    last=$(helm history "$release" --namespace "$namespace" --max 1 --output json | jq -r '.[-1].description')
    if [[ $last == "$APPLIER_NAME "* ]]; then
      log "add-on set: $release is no longer in the set; uninstalling it"
      helm uninstall "$release" --namespace "$namespace" --wait --timeout "${HELM_TIMEOUT}s" >/dev/null
    fi
  done <<<"$installed"
}

take_lease "$APPLIER_NAME" "$LEASE_SECONDS" || exit 0
applied_all=no
keep_lease &
keeper=$!
trap finish EXIT
aws s3 cp --only-show-errors "$ADDON_SET_URL" "$work/set.json"
revision=$(jq -r .revision "$work/set.json")
steps=$(jq '.steps | length' "$work/set.json")
log "add-on set $revision: $steps steps, lease held"
for ((i = 0; i < steps; i++)); do
  step=$(jq -c ".steps[$i]" "$work/set.json")
  name=$(jq -r .name <<<"$step")
  if jq -e .release <<<"$step" >/dev/null; then
    apply_release "$step" || exit 1
  else
    apply_object "$step" || exit 1
  fi
done
name=prune
prune
# The revision this node last recorded, written once the record is made.
recorded=$ADDON_STATE_DIR/recorded
if [ "$(cat "$recorded" 2>/dev/null)" != "$revision" ] || due "$recorded" "$STATUS_REFRESH_SECONDS"; then
  rm -f "$recorded"
  jq -n --arg r "$revision" --arg t "$(lease_now)" --arg n "$lease_holder" '{revision: $r, appliedAt: $t, node: $n}' >"$work/status.json"
  aws s3 cp --only-show-errors --content-type application/json "$work/status.json" "$ADDON_STATUS_URL"
  mkdir -p "$ADDON_STATE_DIR"
  echo "$revision" >"$recorded"
fi
if due "$ADDON_STATE_DIR/counted" "$APPLIED_COUNT_SECONDS"; then
  count "$APPLIED_METRIC"
fi
applied_all=yes
# Logged while still holding the lease: the rehearsal checks that no two
# nodes' runs overlap from these lines.
log "add-on set $revision applied"
