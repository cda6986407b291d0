#!/usr/bin/env bash
# Drains each worker whose instance waits on its group's termination hook
# (DRAIN_HOOK): a scale-in, an instance AWS retires or replaces, one
# terminated by hand. The worker is cordoned and its pods evicted through
# the eviction API, within their PodDisruptionBudgets (bare pods too: they
# go with the instance anyway), then the hook is completed and the
# instance goes. A drain not done within DRAIN_TIMEOUT_SECONDS is tried
# again on the next run; the hook's own timeout lets the instance go at
# last. Every control-plane node runs this on a timer; the first Ready one
# by name acts.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"

nodes=$(local_kubectl get nodes -o json)
[ "$(first_ready_control_plane <<<"$nodes")" = "$(hostname)" ] || exit 0

# Workers by instance ID, from their provider IDs (aws:///<zone>/<id>).
workers=$(jq -r --arg cp "$CONTROL_PLANE_LABEL" '.items[] | select(.metadata.labels | has($cp) | not)
  | select(.spec.providerID // "" | test("^aws://")) | "\(.spec.providerID | split("/") | last) \(.metadata.name)"' <<<"$nodes")
[ -n "$workers" ] || exit 0

# At most 50 instances a call, as Auto Scaling allows.
cut -d' ' -f1 <<<"$workers" | xargs -n 50 aws autoscaling describe-auto-scaling-instances --output text \
  --query "AutoScalingInstances[?LifecycleState=='Terminating:Wait'].[InstanceId,AutoScalingGroupName]" --instance-ids |
  while read -r instance group; do
    node=$(awk -v id="$instance" '$1 == id {print $2}' <<<"$workers")
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
