package components

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ssm"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// RunningKubernetesVersion is the version the cluster's control plane
// records (bootstrap.RunningVersionParameter), or "" for a cluster not
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
	case from.Less(to):
		// A replaced control-plane node builds its static pods from the
		// version kubeadm-config records, beside the new release's kubelet.
		c.add("KubernetesVersion", target, running+", the release the control plane records: kubeha does not upgrade a running control plane yet (README: replace or upgrade a control-plane node)")
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
