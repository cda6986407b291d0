package rehearsal

import (
	"time"

	"github.com/kubeha/kubeha/internal/lab"
)

// The probe's view: each request times out after probeTimeout; a drill
// has recovered once every request for servingSpan has succeeded, and its
// recovery is when the first of those started.
const (
	probeTimeout = 3 * time.Second
	// probeInterval between probe requests, each a write and a read; the
	// probe has room for every request of two timeouts' time, so a stalled
	// API never stops it sending.
	probeInterval = 100 * time.Millisecond
	probeSlots    = int(2*probeTimeout/probeInterval) + 4
	servingSpan   = 3 * time.Second
)

// Slacks for what the configuration does not cover: lbSlack for haproxy's
// own scheduling and the rehearsal polling its stats, recoverySlack for
// the probe's and the drill's polling on a busy machine. They are the
// smallest that passed repeated runs (see the README's rehearsal numbers).
const (
	lbSlack       = time.Second
	recoverySlack = 2 * time.Second
)

// bounds are what the stack's configuration allows each thing a drill
// waits for, from how the components use it (lab/bounds.go has the Lease
// and etcd ones).
type bounds struct {
	leaseTakeover time.Duration // a dead holder's Lease held by another node
	etcdLeader    time.Duration // a dead etcd leader replaced
	removal       time.Duration // a failed API server out of rotation
	admission     time.Duration // a recovered API server back in rotation
	// endpointRemoval: a silent node's pods out of every Service's
	// endpoints, as each node's kube-proxy routes them.
	endpointRemoval time.Duration
	// rescheduled: a silent node's pods running ready on other nodes.
	rescheduled time.Duration
	// controllersStart: from a controller-manager taking the Lease until
	// its node lifecycle controller starts counting a silent node's grace
	// period (its informers listed and synced first).
	controllersStart time.Duration
}

// Slacks for the node lifecycle: the node lifecycle controller looks at
// Nodes every 5 s (its --node-monitor-period), then the EndpointSlice
// controller and kube-proxy on each node follow, or the ReplicaSet
// controller, the scheduler and a kubelet starting the new pod, on a busy
// machine. A zone cut took 17 s past the grace period to end the clients'
// errors, its API still recovering from the cut etcd member.
const (
	endpointSlack   = 25 * time.Second
	rescheduleSlack = 45 * time.Second
	// Twice what two zone cuts measured on 2 CPUs: worker-a NotReady
	// 20.9 s and 21.3 s later than takeover + grace.
	controllersStartSlack = 45 * time.Second
)

func (s stack) bounds() bounds {
	h := s.healthCheck
	return bounds{
		leaseTakeover: lab.LeaseTakeover(s.leaderElection),
		etcdLeader:    lab.EtcdNewLeader(s.etcd),
		// haproxy, as the NLB, takes a server out after `unhealthy` failed
		// checks in a row. It starts each check an interval after the
		// previous one ended, and a failing check takes up to the timeout
		// (a cut node never answers; a node cut from etcd answers /readyz
		// only after its etcd checks time out), so each failed check costs
		// up to interval + timeout.
		removal: time.Duration(h.unhealthy)*(h.interval+h.timeout) + lbSlack,
		// `healthy` passed checks in a row, the first after a check that
		// may still be running into its timeout.
		admission: time.Duration(h.healthy)*h.interval + h.timeout + lbSlack,
		// A node is NotReady, and its pods no endpoints, once its kubelet
		// was silent for the grace period; its pods are evicted after the
		// toleration on top (or deleted with a Node whose instance is
		// gone, sooner).
		endpointRemoval: s.nodeGrace + endpointSlack,
		rescheduled:     s.nodeGrace + s.podEviction + rescheduleSlack,
		// A new holder's controllers start afresh.
		controllersStart: controllersStartSlack,
	}
}

// grpcReconnect bounds how long a gRPC client that could not connect for
// all of an outage (kube-apiserver's etcd client, which keeps gRPC's
// default connection backoff: 1 s, times 1.6 after each failure, ±20 %
// jitter, at most 120 s) waits for its next try once the network is back:
// the longest delay it can have reached, counting the failed tries with
// the shortest jitter, which fits the most of them into the outage.
func grpcReconnect(outage time.Duration) time.Duration {
	delay, waited := float64(time.Second), 0.0
	for waited+0.8*delay < float64(outage) && delay < float64(120*time.Second) {
		waited += 0.8 * delay
		delay *= 1.6
	}
	return min(time.Duration(1.2*delay), 144*time.Second)
}
