#!/usr/bin/env bash
# Run by a timer on every member: a member that rejoined as a learner
# (etcd-start.sh) becomes a voter once etcd agrees it caught up with the
# leader (etcd refuses before); the member also writes the cluster's marker
# if it is not there yet. A voter does nothing more.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/etcd-common.sh"

# The volume remembers that the marker is written, which saves a request
# to S3 every run.
if [ ! -e "$VOLUME_MOUNT/cluster-marked" ]; then
  if mark_cluster_created; then
    touch "$VOLUME_MOUNT/cluster-marked"
  else
    log "the cluster is not healthy yet: no marker"
  fi
fi
voters=$(other_endpoints)
id=$(etcdctl --endpoints "$voters" member list |
  awk -F', ' -v name="$MEMBER_NAME" '$3 == name && $6 == "true" {print $1}')
[ -n "$id" ] || exit 0
if etcdctl --endpoints "$voters" member promote "$id" >/dev/null 2>&1; then
  log "promoted from learner to voter"
else
  log "a learner, not caught up with the leader yet"
fi
