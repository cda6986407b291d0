package bootstrap

import (
	"fmt"
	"strings"
)

// ContainerdSeries is the containerd release line nodes install from
// Docker's apt repository; Kubernetes 1.36 needs containerd 2.
const ContainerdSeries = "2.1"

// kubernetesNodeFiles are what every Kubernetes node (control plane and
// worker) shares: the pinned package versions, the kernel settings, and
// kubernetes-node.sh, which installs containerd, kubelet, kubeadm and
// kubectl.
func kubernetesNodeFiles(version string) []File {
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

// NodeEnvPath holds a Kubernetes node's settings, read by its scripts.
const NodeEnvPath = "/etc/kubeha/node.env"

// kubernetesNodeSpec is what differs between control-plane and worker
// nodes' first boot.
type kubernetesNodeSpec struct {
	Role              string // control-plane or worker; <role>-bootstrap.sh runs first
	KubernetesVersion string
	Endpoint          string
	Zone              string
	Region            string
	SecretID          string
	Env               []string // extra KEY=value lines
	Files             []File
	Scripts           []string // besides the shared ones
}

// kubernetesNode renders a node: its settings, its files, the shared
// scripts and its own, and the packages they use.
func kubernetesNode(s kubernetesNodeSpec) (Node, error) {
	env := append([]string{
		"# " + s.Role + " node settings, rendered by kubeha.",
		"ROLE=" + s.Role,
		"API_ENDPOINT=" + s.Endpoint,
		"ZONE=" + s.Zone,
		"AWS_DEFAULT_REGION=" + s.Region,
		"SECRET_ID=" + s.SecretID,
		"TOKEN_PLACEHOLDER=" + BootstrapTokenPlaceholder,
		"ENCRYPTION_KEY_PLACEHOLDER=" + encryptionKeyPlaceholder,
		"TEMPLATE_DIR=" + kubeadmTemplateDir,
		"CONFIG_DIR=" + ControlPlaneConfigDir,
		"SECRETS_DIR=" + NodeSecretsDir,
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
	}, s.Env...)
	node := Node{
		Packages: []string{"awscli", "jq", "curl", "gpg", "apt-transport-https"},
		Files:    append(s.Files, File{Path: NodeEnvPath, Content: strings.Join(env, "\n") + "\n", Mode: "0644"}),
		Commands: [][]string{{ScriptDir + "/" + s.Role + "-bootstrap.sh"}},
	}
	node.Files = append(node.Files, kubernetesNodeFiles(s.KubernetesVersion)...)
	for _, name := range append([]string{"node-common.sh", "node-configure.sh"}, s.Scripts...) {
		script, err := scripts.ReadFile("scripts/" + name)
		if err != nil {
			return Node{}, err
		}
		node.Files = append(node.Files, File{Path: ScriptDir + "/" + name, Content: string(script), Mode: "0755"})
	}
	return node, nil
}
