#!/usr/bin/env bash
# Drains each worker whose instance waits on its group's termination hook
# (DRAIN_HOOK): a scale-in, an instance AWS retires or replaces, one
# terminated by hand. The worker is cordoned and its pods evicted through
# the eviction API, within their PodDisruptionBudgets (bare pods too: they
# go with the instance anyway), then the hook is completed and the
# instance goes. A drain not done within DRAIN_TIMEOUT_SECONDS is tried
# again on the next run; the hook's own timeout lets the instance go at
# last. The same listing notes the workers still launching in
# JOINING_WORKERS_FILE: the approver looks for their join tokens only
# while there are some (control-plane-csr-approver.sh). Every
# control-plane node runs this on a timer; the first Ready one by name
# acts, with one AWS CLI start a run.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"

nodes=$(local_kubectl get nodes -o json)
[ "$(first_ready_control_plane <<<"$nodes")" = "$(hostname)" ] || exit 0

# Every instance of the cluster's worker groups: ID, lifecycle state, group.
instances=$(aws autoscaling describe-auto-scaling-groups --output json \
  --filters "Name=tag:kubernetes.io/cluster/$CLUSTER_NAME,Values=owned" "Name=tag-key,Values=$POOL_TAG" |
  jq -r '.AutoScalingGroups[] | .AutoScalingGroupName as $group | .Instances[] | "\(.InstanceId) \(.LifecycleState) \($group)"')

mkdir -p "$(dirname "$JOINING_WORKERS_FILE")"
awk '$2 ~ /^Pending/ {print $1}' <<<"$instances" >"$JOINING_WORKERS_FILE.new"
mv "$JOINING_WORKERS_FILE.new" "$JOINING_WORKERS_FILE"

# Workers' Nodes by instance ID, from their provider IDs (aws:///<zone>/<id>).
workers=$(jq -r --arg cp "$CONTROL_PLANE_LABEL" '.items[] | select(.metadata.labels | has($cp) | not)
  | select(.spec.providerID // "" | test("^aws://")) | "\(.spec.providerID | split("/") | last) \(.metadata.name)"' <<<"$nodes")

awk '$2 == "Terminating:Wait" {print $1, $3}' <<<"$instances" |
  while read -r instance group; do
    node=$(awk -v id="$instance" '$1 == id {print $2}' <<<"$workers")
    [ -n "$node" ] || continue
    log "$node ($instance) is leaving $group: draining it"
    if ! local_kubectl drain "$node" --ignore-daemonsets --delete-emptydir-data --force \
      --timeout="${DRAIN_TIMEOUT_SECONDS}s" >&2; then
      log "$node is not drained yet; the next run tries again"
      continue
    fi
    aws autoscaling complete-lifecycle-action --lifecycle-hook-name "$DRAIN_HOOK" \
      --auto-scaling-group-name "$group" --instance-id "$instance" --lifecycle-action-result CONTINUE
    log "$node drained: $instance may go"
  done
