package bootstrap

import (
	"fmt"
	"strings"
)

// ContainerdSeries is the containerd release line nodes install from
// Docker's apt repository; Kubernetes 1.36 needs containerd 2.
const ContainerdSeries = "2.1"

// KubernetesNodeFiles are what every Kubernetes node (control plane and
// worker) shares: the pinned package versions, the kernel settings, and
// kubernetes-node.sh, which installs containerd, kubelet, kubeadm and
// kubectl.
func KubernetesNodeFiles(version string) []File {
	minor := strings.Join(strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)[:2], ".")
	env := strings.Join([]string{
		"# Kubernetes node packages, rendered by kubeha.",
		"KUBERNETES_MINOR=" + minor,
		// pkgs.k8s.io names its Debian revisions -1.1.
		fmt.Sprintf("KUBERNETES_PACKAGE_VERSION=%s-1.1", strings.TrimPrefix(version, "v")),
		"CONTAINERD_SERIES=" + ContainerdSeries,
		"",
	}, "\n")
	script, err := scripts.ReadFile("scripts/kubernetes-node.sh")
	if err != nil {
		panic(err) // embedded at build time
	}
	return []File{
		{Path: "/etc/kubeha/kubernetes.env", Content: env, Mode: "0644"},
		{Path: "/etc/modules-load.d/kubernetes.conf", Content: "overlay\nbr_netfilter\n", Mode: "0644"},
		{Path: "/etc/sysctl.d/90-kubernetes.conf", Content: "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n", Mode: "0644"},
		{Path: ScriptDir + "/kubernetes-node.sh", Content: string(script), Mode: "0644"},
	}
}
