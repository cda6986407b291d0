package components

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ssm"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// RunningKubernetesVersion is the release every API server of the cluster
// runs, as it records it (bootstrap.RunningVersionParameter), or "" for a cluster not
// created yet: what ClusterArgs.RunningKubernetesVersion wants. It is
// read during preview too, so a refused skew stops `pulumi up` before
// anything changes.
func RunningKubernetesVersion(ctx *pulumi.Context, cluster string) (string, error) {
	// By path, which answers "none" rather than an error for a new cluster.
	found, err := ssm.GetParametersByPath(ctx, &ssm.GetParametersByPathArgs{Path: bootstrap.RunningVersionPath(cluster)})
	if err != nil {
		return "", fmt.Errorf("reading the running control plane's version (SSM %s): %w", bootstrap.RunningVersionParameter(cluster), err)
	}
	for i, name := range found.Names {
		if name == bootstrap.RunningVersionParameter(cluster) && i < len(found.Values) {
			return found.Values[i], nil
		}
	}
	return "", nil
}

// upgradeFrom checks the cluster's version against the one its control
// plane records (ClusterArgs.RunningKubernetesVersion), as kubeadm
// upgrade's policy does: no downgrade and at most one minor up, so that
// every API server, controller and kubelet stays within the
// version-skew policy while nodes roll.
func (c checker) upgradeFrom(running, target string) {
	from, okFrom := bootstrap.ParseVersion(running)
	to, okTo := bootstrap.ParseVersion(target)
	switch {
	case running == "" || !okTo:
		return
	case !okFrom:
		c.add("RunningKubernetesVersion", quote(running), "the vMAJOR.MINOR.PATCH the running control plane records")
	case to.Less(from):
		c.add("KubernetesVersion", target, fmt.Sprintf("%s or newer: the control plane runs %s, and kubeadm upgrades, never downgrades (restore an etcd snapshot taken before the upgrade instead)", running, running))
	case to.MinorsAbove(from) > 1:
		c.add("KubernetesVersion", target, fmt.Sprintf("a release of %d.%d at most: the control plane runs %s, and Kubernetes upgrades one minor at a time", from.Major, from.Minor+1, running))
	}
}

// poolVersion checks a worker pool pinned to its own Kubernetes version:
// a pinned release, and never newer than the control plane's, since a
// kubelet must not be newer than any API server it talks to.
func (c checker) poolVersion(field, pool, controlPlane string) {
	if pool == "" || len(c.errsOn(field)) > 0 {
		return
	}
	p, ok1 := bootstrap.ParseVersion(pool)
	cp, ok2 := bootstrap.ParseVersion(controlPlane)
	if ok1 && ok2 && cp.Less(p) {
		c.add(field, pool, fmt.Sprintf("%s or older: the control plane's kubernetesVersion; a kubelet must not be newer than the API servers", controlPlane))
	}
}

// pinnedRelease checks that version is the patch release kubeha pins for
// its minor, whose node binaries and images the cluster installs.
func (c checker) pinnedRelease(field, version string) {
	if len(c.errsOn(field)) > 0 {
		return
	}
	if r, err := bootstrap.ReleaseOf(version); err == nil && r.Version != version {
		var pinned []string
		for _, r := range bootstrap.KubernetesReleases {
			pinned = append(pinned, r.Version)
		}
		c.add(field, version, strings.Join(pinned, " or ")+": a release whose node binaries and images kubeha pins (ClusterArgs.Assets brings another's)")
	}
}

// UpgradeSteps says what upgrading the cluster from RunningKubernetesVersion
// to KubernetesVersion will do, for `pulumi up` and `kubeha plan` to show
// before anything changes; none when no upgrade is in flight. args are
// validated.
func (args *ClusterArgs) UpgradeSteps() []string {
	from, ok1 := bootstrap.ParseVersion(args.RunningKubernetesVersion)
	to, ok2 := bootstrap.ParseVersion(args.KubernetesVersion)
	if !ok1 || !ok2 || !from.Less(to) {
		return nil
	}
	running, target := args.RunningKubernetesVersion, args.KubernetesVersion
	var pools []string
	for _, p := range args.Workers {
		if p.KubernetesVersion == "" || p.KubernetesVersion == target {
			pools = append(pools, p.Name)
		}
	}
	zones := strings.Join(args.Zones, ", ")
	return []string{
		fmt.Sprintf("%s runs Kubernetes %s; the stack names %s: an upgrade, one minor up", args.ClusterName, running, target),
		fmt.Sprintf("pulumi up: every control-plane and worker launch template installs %s, its kubelet held at %s until the cluster's version record moves; running nodes and etcd are left alone", target, running),
		"then kubeha upgrade (run it again to resume after a stop):",
		fmt.Sprintf("  0. each etcd member whose instance runs an older version of its launch template (etcd %s here) is replaced, one at a time, each instance held until the other members are healthy voters", args.Etcd.Version),
		fmt.Sprintf("  1. kubeadm-config's kubernetesVersion moves to %s", target),
		fmt.Sprintf("  2. the control-plane node of each zone in turn (%s) is replaced, the next only once the new one's API server serves %s and is ready, and its instance is a healthy target of the load balancer", zones, target),
		fmt.Sprintf("  3. the version record moves to %s: control-plane kubelets follow in place one at a time, and step 4 waits for them; new nodes boot kubelet %s", target, target),
		fmt.Sprintf("  4. workers of pools %s, zone by zone (%s), are cordoned, drained within their pods' disruption budgets and replaced, each only once the one before is Ready", strings.Join(pools, ", "), zones),
		fmt.Sprintf("  5. once every kubelet runs %s, kube-proxy moves to it", target),
	}
}
