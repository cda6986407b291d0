# Sourced by control-plane timer scripts: a kube-system Lease as a lock
# that one control-plane node holds at a time, named by its hostname.
# kubectl reaches the API as KUBECONFIG says.
# shellcheck shell=bash
lease_holder=$(hostname)

lease_now() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }

# take_lease NAME SECONDS creates the Lease NAME for SECONDS, or takes it
# when it is free, expired or already ours. Of two nodes that find it
# missing only one create succeeds; kubectl replace sends the
# resourceVersion it read, so of two that read it only one write does.
take_lease() {
  local lease current renewed duration
  if ! lease=$(kubectl -n kube-system get lease "$1" --ignore-not-found -o json); then
    log "cannot read the lease $1"
    return 1
  fi
  if [ -z "$lease" ]; then
    kubectl -n kube-system create -f - >/dev/null <<EOF
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: $1, namespace: kube-system}
spec: {holderIdentity: $lease_holder, leaseDurationSeconds: $2, acquireTime: "$(lease_now)", renewTime: "$(lease_now)"}
EOF
    return
  fi
  current=$(jq -r '.spec.holderIdentity // ""' <<<"$lease")
  renewed=$(jq -r '.spec.renewTime // ""' <<<"$lease")
  duration=$(jq -r '.spec.leaseDurationSeconds // 0' <<<"$lease")
  if [ -n "$current" ] && [ "$current" != "$lease_holder" ] && [ -n "$renewed" ] &&
    (($(date -d "$renewed" +%s) + duration > $(date +%s))); then
    log "$current holds the lease $1"
    return 1
  fi
  write_lease "$lease" "$lease_holder" "$2" >/dev/null
}

# write_lease LEASE HOLDER SECONDS replaces the Lease read as LEASE (only
# if nobody changed it since) with HOLDER for SECONDS from now.
write_lease() {
  local acquired
  acquired=$(jq -r --arg h "$2" 'if .spec.holderIdentity == $h then .spec.acquireTime else "" end' <<<"$1")
  jq --arg h "$2" --arg t "$(lease_now)" --arg a "${acquired:-$(lease_now)}" --argjson d "$3" \
    '.spec.holderIdentity = $h | .spec.renewTime = $t | .spec.acquireTime = $a | .spec.leaseDurationSeconds = $d' <<<"$1" |
    kubectl replace -f -
}

# renew_lease NAME SECONDS keeps the Lease ours, and fails if another
# node took it.
renew_lease() {
  local lease
  lease=$(kubectl -n kube-system get lease "$1" -o json)
  [ "$(jq -r '.spec.holderIdentity' <<<"$lease")" = "$lease_holder" ] && write_lease "$lease" "$lease_holder" "$2" >/dev/null
}

# release_lease NAME frees the Lease if it is ours.
release_lease() {
  local lease
  lease=$(kubectl -n kube-system get lease "$1" -o json) &&
    [ "$(jq -r '.spec.holderIdentity' <<<"$lease")" = "$lease_holder" ] &&
    write_lease "$lease" "" "$(jq -r '.spec.leaseDurationSeconds' <<<"$lease")" >/dev/null
}
