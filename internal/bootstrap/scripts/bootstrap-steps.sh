# Sourced by every first-boot script, which kubeha-bootstrap.service runs
# and reruns until it succeeds:
#  - step retries each step with backoff and remembers it done, so a rerun
#    redoes only what had not finished;
#  - ready_for_service ends the instance's Auto Scaling launch hook once
#    the node is healthy for its role: only then is it InService;
#  - bootstrap_done marks the first boot done;
#  - past the deadline, a failure counts a metric and gives the instance
#    back (the hook abandoned, or marked Unhealthy), so that its group
#    replaces it.
# Each script defines log first.
# shellcheck shell=bash

install -d -m 0700 "$BOOTSTRAP_STATE_DIR"
[ -e "$BOOTSTRAP_STATE_DIR/started" ] || date +%s >"$BOOTSTRAP_STATE_DIR/started"

seconds_left() {
  echo $(($(cat "$BOOTSTRAP_STATE_DIR/started") + BOOTSTRAP_DEADLINE_SECONDS - $(date +%s)))
}

past_deadline() {
  [ "$(seconds_left)" -le 0 ]
}

# step NAME COMMAND...: runs COMMAND, with errexit, in a subshell, until it
# succeeds, waiting twice as long each time up to BOOTSTRAP_BACKOFF_SECONDS,
# until the bootstrap deadline, never sleeping past it: a node that cannot
# boot gives itself up at its deadline, not a backoff later. It logs how
# long the step took, so that a slow boot says where its time went.
step() {
  local name=$1 delay=$((BOOTSTRAP_BACKOFF_SECONDS < 5 ? BOOTSTRAP_BACKOFF_SECONDS : 5)) rc began pause
  shift
  [ ! -e "$BOOTSTRAP_STATE_DIR/$name.done" ] || return 0
  began=$(date +%s)
  while true; do
    set +e
    (set -e && "$@")
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
      touch "$BOOTSTRAP_STATE_DIR/$name.done"
      log "step $name done in $(($(date +%s) - began))s"
      return 0
    fi
    if past_deadline; then
      log "step $name failed (exit $rc) and the bootstrap deadline has passed"
      return 1
    fi
    pause=$(seconds_left)
    pause=$((delay < pause ? delay : pause))
    log "step $name failed (exit $rc); retrying in ${pause}s"
    sleep "$pause"
    delay=$((delay * 2 < BOOTSTRAP_BACKOFF_SECONDS ? delay * 2 : BOOTSTRAP_BACKOFF_SECONDS))
  done
}

# launch_hook RESULT completes this instance's launch hook with RESULT
# (CONTINUE or ABANDON) if it waits on one; an instance outside any group,
# or already in service, has none.
launch_hook() {
  local instance where group
  instance=$(imds instance-id)
  where=$(aws autoscaling describe-auto-scaling-instances --instance-ids "$instance" \
    --query 'AutoScalingInstances[0].[AutoScalingGroupName,LifecycleState]' --output text)
  read -r group _ <<<"$where"
  case $where in
    None | *InService)
      log "no launch hook waits on $instance ($where)"
      return 0
      ;;
    *Pending:Wait) ;;
    *)
      log "$instance is not waiting on its launch hook yet ($where)"
      return 1
      ;;
  esac
  aws autoscaling complete-lifecycle-action --lifecycle-hook-name "$LAUNCH_HOOK" \
    --auto-scaling-group-name "$group" --instance-id "$instance" --lifecycle-action-result "$1"
  log "launch hook of $instance in $group: $1"
}

# ready_for_service waits until CHECK... succeeds, then lets the group put
# this instance in service.
ready_for_service() {
  step healthy "$@"
  step in-service launch_hook CONTINUE
}

# bootstrap_done ends the first boot: the unit does not run again.
bootstrap_done() {
  touch "$BOOTSTRAP_STATE_DIR/done"
  log "bootstrap done in $(($(date +%s) - $(cat "$BOOTSTRAP_STATE_DIR/started")))s"
}

# On a failed run: systemd reruns the unit until the deadline; after it,
# the node counts itself failed and asks to be replaced (the hook
# abandoned if it still waits, otherwise marked Unhealthy).
bootstrap_exit() {
  local rc=$? instance
  [ "$rc" -ne 0 ] || return 0
  if ! past_deadline; then
    log "bootstrap failed (exit $rc); systemd runs it again"
    return 0
  fi
  if [ -e "$BOOTSTRAP_STATE_DIR/gave-up" ]; then
    log "bootstrap failed past its deadline; given up already, waiting to be replaced"
    return 0
  fi
  log "bootstrap failed past its deadline of ${BOOTSTRAP_DEADLINE_SECONDS}s: asking to be replaced"
  aws cloudwatch put-metric-data --namespace "$BOOTSTRAP_METRIC_NAMESPACE" --metric-name "$BOOTSTRAP_FAILED_METRIC" \
    --dimensions "$BOOTSTRAP_METRIC_DIMENSIONS" --value 1 --unit Count || true
  instance=$(imds instance-id) || return 0
  launch_hook ABANDON || true
  aws autoscaling set-instance-health --instance-id "$instance" --health-status Unhealthy || true
  touch "$BOOTSTRAP_STATE_DIR/gave-up"
}
trap bootstrap_exit EXIT
