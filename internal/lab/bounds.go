package lab

import (
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// Bounds that measured times are held to. Each is the time the
// configuration it depends on allows, worked out from how the component
// uses that configuration, plus a named slack for what no configuration
// covers: starting processes and polling on a busy machine. The slacks
// are the smallest that passed every one of repeated runs on a 2-core
// machine that was compiling Go at the same time; a doubling of what is
// measured fails.

// LeaseSlack covers reading the Lease through the API (polled every
// PollInterval) and a busy candidate's late write.
const LeaseSlack = 2 * time.Second

// LeaseTakeover bounds how long after its holder dies another candidate
// holds a Lease. A candidate trusts the holder for LeaseDuration from when
// it last saw the Lease change, which is at most one of its (jittered)
// retries after the holder's last renewal, and takes the Lease at its
// first retry after that.
func LeaseTakeover(le bootstrap.LeaderElection) time.Duration {
	retry := time.Duration(float64(le.RetryPeriod) * (1 + bootstrap.LeaderElectionJitter))
	return le.LeaseDuration + 2*retry + LeaseSlack
}

// EtcdClientFailover bounds how long kube-apiserver's etcd client may keep
// sending requests to a member that vanished without closing its
// connections (its zone cut off): gRPC keepalive pings only after 30 s
// without traffic and waits 10 s for the answer (keepaliveTime and
// keepaliveTimeout in k8s.io/apiserver's storagebackend/factory/etcd3.go,
// not configurable). A killed member's connections close at once.
const EtcdClientFailover = 40 * time.Second

// EtcdctlSlack covers asking the members with etcdctl from another host
// (a process per poll, polled every PollInterval).
const EtcdctlSlack = time.Second

// EtcdStartSlack covers etcd-start.sh and etcd starting up, up to the
// member's first answer.
const EtcdStartSlack = 2 * time.Second

func electionTimeout(c bootstrap.EtcdCluster) time.Duration {
	return time.Duration(c.ElectionMs) * time.Millisecond
}

// EtcdNewLeader bounds how long the members left take to elect a leader
// after theirs dies: each waits a randomized election timeout of one to
// two ElectionMs after the last heartbeat, then a pre-vote and a vote
// round (milliseconds here); a split vote costs at most one ElectionMs
// more.
func EtcdNewLeader(c bootstrap.EtcdCluster) time.Duration {
	return 3*electionTimeout(c) + EtcdctlSlack
}

// EtcdRestart bounds how long a member restarted on its data takes to be
// healthy and caught up: starting, then hearing from the leader within an
// election timeout.
func EtcdRestart(c bootstrap.EtcdCluster) time.Duration {
	return EtcdStartSlack + electionTimeout(c) + EtcdctlSlack
}

// Within logs a measured time with its bound and fails t if it is over.
func Within(t testing.TB, what string, took, bound time.Duration) {
	t.Helper()
	t.Logf("MEASURED: %s: %s (bound %s)", what, took.Round(10*time.Millisecond), bound)
	if took > bound {
		t.Errorf("%s took %s, over its bound of %s", what, took.Round(10*time.Millisecond), bound)
	}
}
