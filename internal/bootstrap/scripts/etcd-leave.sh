#!/usr/bin/env bash
# Run by a timer on every member. A member whose instance leaves its group
# (`kubeha upgrade`, a replacement, one terminated by hand) waits on the
# group's termination hook (LEAVE_HOOK):
#  - the member itself lets its instance go once every other member is a
#    healthy voter (a linearizable read through each: caught up), after
#    handing leadership to another and stopping etcd, so the cluster keeps
#    its quorum and needs no election timeout;
#  - a member that no longer answers (its instance lost) is let go by any
#    other at once: holding it keeps nothing safe.
# Otherwise it waits; AWS lets it go after the hook's timeout at last.
# shellcheck source-path=SCRIPTDIR
here=$(dirname "${BASH_SOURCE[0]}")
. "$here/etcd-common.sh"
. "$here/imds.sh"
. "$here/due.sh"

# let_go GROUP INSTANCE completes the hook; another member may have done so.
let_go() {
  aws autoscaling complete-lifecycle-action --lifecycle-hook-name "$LEAVE_HOOK" \
    --auto-scaling-group-name "$1" --instance-id "$2" --lifecycle-action-result CONTINUE ||
    log "could not let $2 go (another member may have): the next run looks again"
}

leave() {
  local others learners role next instance group
  others=$(other_endpoints)
  # With this member gone, the others are the quorum.
  if ! etcdctl --endpoints "$others" endpoint health >/dev/null; then
    log "leaving, but not every other member is healthy: staying for now"
    return
  fi
  learners=$(etcdctl --endpoints "$others" member list | awk -F', ' '$6 == "true" {print $3}')
  if [ -n "$learners" ]; then
    log "leaving, but ${learners//$'\n'/ } is a learner still: staying for now"
    return
  fi
  if systemctl is-active --quiet "$MEMBER_SERVICE"; then
    # It leads if its ID is its leader's, as etcd's fields print them.
    role=$(etcdctl --endpoints "$LOCAL_CLIENT_URL" endpoint status -w fields | awk -F' : ' '
      $1 == "\"MemberID\"" {id = $2} $1 == "\"Leader\"" {leader = $2} END {if (id != "" && id == leader) print "leader"}')
    if [ "$role" = leader ]; then
      next=$(etcdctl --endpoints "$LOCAL_CLIENT_URL" member list | awk -F', ' -v me="$MEMBER_NAME" '$3 != me {print $1; exit}')
      if etcdctl --endpoints "$LOCAL_CLIENT_URL" move-leader "$next" >&2; then
        log "handed leadership to $next"
      else
        log "could not hand leadership to $next; stopping anyway"
      fi
    fi
    systemctl stop "$MEMBER_SERVICE"
    log "etcd stopped: the other members are healthy voters"
  fi
  instance=$(imds instance-id)
  group=$(aws autoscaling describe-auto-scaling-instances --instance-ids "$instance" \
    --query 'AutoScalingInstances[0].AutoScalingGroupName' --output text)
  let_go "$group" "$instance"
  log "$instance may leave $group"
}

# Members that do not answer, by name, each with the instance of theirs
# that waits on the hook, if any; these go at once. In steady state this is
# one etcdctl call every run.
let_silent_go() {
  local members='' health url name group instance
  health=$(etcdctl --endpoints "$(other_endpoints)" endpoint health -w json 2>/dev/null || true)
  for url in $(jq -r '.[] | select(.health | not) | .endpoint' <<<"${health:-[]}"); do
    members=${members:-$(etcdctl --endpoints "$CLIENT_ENDPOINTS" member list)}
    name=$(awk -F', ' -v url="$url" '$5 == url {print $3}' <<<"$members")
    [ -n "$name" ] || continue
    # A member stays silent for minutes while its successor boots, and
    # each ask starts the AWS CLI: ask about it every SILENT_ASK_SECONDS.
    due "$LEAVE_STATE_DIR/asked-$name" "$SILENT_ASK_SECONDS" || continue
    read -r group instance < <(aws autoscaling describe-auto-scaling-groups --output text \
      --filters "Name=tag:$CLUSTER_TAG,Values=owned" "Name=tag:$MEMBER_TAG,Values=$name" \
      --query "AutoScalingGroups[0].[AutoScalingGroupName, Instances[?LifecycleState=='Terminating:Wait'].InstanceId | [0]]")
    if [ -n "$instance" ] && [ "$instance" != None ]; then
      log "$name does not answer and its instance $instance is leaving $group: letting it go"
      let_go "$group" "$instance"
    fi
  done
}

# Where the group is taking this instance; not served outside a group.
target=$(imds autoscaling/target-lifecycle-state) || target=
if [ "$target" = Terminated ]; then
  leave
else
  let_silent_go
fi
