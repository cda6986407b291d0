package bootstrap

import (
	"fmt"
	"strings"
)

// ContainerdSeries is the containerd release line nodes install from
// Docker's apt repository; Kubernetes 1.36 needs containerd 2.
const ContainerdSeries = "2.1"

// NodeEnvPath holds a Kubernetes node's settings, read by its scripts.
const NodeEnvPath = "/etc/kubeha/node.env"

// Paths on every Kubernetes node (control plane and worker).
const (
	KubernetesPKIDir = "/etc/kubernetes/pki"
	// ControlPlaneConfigDir holds kubeha's own inputs to kubeadm and the
	// control-plane components, mounted read-only into the static pods.
	ControlPlaneConfigDir = "/etc/kubernetes/kubeha"
	// Templates hold placeholders for the secrets, filled at boot by
	// node-configure.sh into ControlPlaneConfigDir.
	kubeadmTemplateDir = "/etc/kubeha/templates"
	// NodeSecretsDir holds the non-PEM secrets fetched at boot.
	NodeSecretsDir    = "/etc/kubeha/secrets"
	kernelModulesFile = "/etc/modules-load.d/kubernetes.conf"
)

// The node secret's entries: those under pkiSecretPrefix are PEM files
// for KubernetesPKIDir, the others go to NodeSecretsDir by name.
const (
	pkiSecretPrefix      = "pki/"
	secretBootstrapToken = "bootstrap-token"
	secretEncryptionKey  = "encryption-key"
)

// kernelModules are what containerd and kube-proxy need loaded.
var kernelModules = []string{"overlay", "br_netfilter"}

// kubernetesNodeSpec is what differs between control-plane and worker
// nodes' first boot.
type kubernetesNodeSpec struct {
	Role              string // control-plane or worker; <role>-bootstrap.sh runs first
	KubernetesVersion string
	Endpoint          string
	Zone              string
	Region            string
	SecretID          string
	Env               []envVar // besides the shared ones
	Files             []File
	Scripts           []string // besides the shared ones
}

// kubernetesNode renders a node: its settings, its files, the shared
// scripts and its own, and the packages they use. Every Kubernetes node
// installs containerd, kubelet, kubeadm and kubectl at the pinned versions
// (kubernetes-node.sh) with the kernel settings they need.
func kubernetesNode(s kubernetesNodeSpec) (Node, error) {
	version := strings.TrimPrefix(s.KubernetesVersion, "v")
	minor := strings.Join(strings.SplitN(version, ".", 3)[:2], ".")
	env := append([]envVar{
		{"ROLE", s.Role},
		{"ZONE", s.Zone},
		{"API_ENDPOINT", s.Endpoint},
		{"API_READY_URL", fmt.Sprintf("https://%s:%d%s", s.Endpoint, APIServerPort, HealthCheckPath)},
		{"AWS_DEFAULT_REGION", s.Region},
		{"SECRET_ID", s.SecretID},
		{"PKI_SECRET_PREFIX", pkiSecretPrefix},
		{"KUBERNETES_PKI_DIR", KubernetesPKIDir},
		{"SECRETS_DIR", NodeSecretsDir},
		{"BOOTSTRAP_TOKEN_FILE", NodeSecretsDir + "/" + secretBootstrapToken},
		{"ENCRYPTION_KEY_FILE", NodeSecretsDir + "/" + secretEncryptionKey},
		{"TOKEN_PLACEHOLDER", BootstrapTokenPlaceholder},
		{"ENCRYPTION_KEY_PLACEHOLDER", encryptionKeyPlaceholder},
		{"TEMPLATE_DIR", kubeadmTemplateDir},
		{"CONFIG_DIR", ControlPlaneConfigDir},
		{"KUBEADM_JOIN_CONFIG", KubeadmJoinConfigPath},
		{"KUBERNETES_MINOR", minor},
		// pkgs.k8s.io names its Debian revisions -1.1.
		{"KUBERNETES_PACKAGE_VERSION", version + "-1.1"},
		{"CONTAINERD_SERIES", ContainerdSeries},
		{"KERNEL_MODULES_FILE", kernelModulesFile},
		{"PATH", nodePath},
	}, s.Env...)
	node := Node{
		Packages: []string{"awscli", "jq", "curl", "gpg", "apt-transport-https"},
		Files: append(s.Files,
			File{Path: kernelModulesFile, Content: strings.Join(kernelModules, "\n") + "\n", Mode: "0644"},
			File{Path: "/etc/sysctl.d/90-kubernetes.conf", Content: "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n", Mode: "0644"},
		),
	}
	if err := node.withEnv(NodeEnvPath, s.Role+" node settings", env, s.Role+"-bootstrap.sh"); err != nil {
		return Node{}, err
	}
	if err := node.addScripts(append([]string{"node-common.sh", "kubernetes-node.sh", "imds.sh", "node-configure.sh"}, s.Scripts...)...); err != nil {
		return Node{}, err
	}
	return node, nil
}
