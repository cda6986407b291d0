// Package lab runs kubeha's nodes for real on one Linux machine, for the
// real-node tests and the rehearsal: each node a Debian 12 system
// container booted from its launch template's user-data (container.go),
// against the AWS double on the wire and the program's declared state
// (cloud.go, declared.go), with the pinned assets built locally
// (assets.go, images.go). It talks to the nodes as clients do, and derives
// from the configuration the bounds that measured times are held to
// (bounds.go).
package lab

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// The pinned binaries each kind of node runs, built by hack/tools.sh.
var (
	EtcdBinaries = []string{"etcd", "etcdctl", "etcdutl"}
	// ControlPlaneComponents are the static pods kubeadm renders, in the
	// order a node starts them.
	ControlPlaneComponents = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}
	// NodeBinaries are what the rehearsal's node assets are made of.
	NodeBinaries = slices.Concat(EtcdBinaries, []string{"kubeadm"}, ControlPlaneComponents, []string{"kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "pause", "kubectl", "helm"})
)

// PollInterval is how often WaitFor asks: fine enough for the seconds
// the tests measure, coarse enough to leave the nodes the CPU.
const PollInterval = 100 * time.Millisecond

// WaitFor polls ok until it returns nil and says how long that took. It
// gives up after limit, or when ctx ends, with ok's last error.
func WaitFor(ctx context.Context, what string, limit time.Duration, ok func() error) (time.Duration, error) {
	start := time.Now()
	var err error
	for time.Since(start) < limit {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err = ok(); err == nil {
			return time.Since(start), nil
		}
		time.Sleep(PollInterval)
	}
	return 0, fmt.Errorf("%s: not within %s: %v", what, limit, err)
}
