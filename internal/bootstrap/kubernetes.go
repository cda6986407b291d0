package bootstrap

import (
	"fmt"
	"strings"
	"time"
)

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

// The node secret's entries: those under PKISecretPrefix are PEM files
// for KubernetesPKIDir, the others go to NodeSecretsDir by name.
const (
	PKISecretPrefix      = "pki/"
	secretBootstrapToken = "bootstrap-token"
	secretEncryptionKey  = "encryption-key"
)

// kubeletCertDir holds the kubelet's client and serving certificates.
const kubeletCertDir = "/var/lib/kubelet/pki"

// containerd's configuration: the CRI plugin with systemd managing
// cgroups, as kubelet does (kubeadm's default driver), the sandbox image
// kubeadm expects, and drop-ins read last, for an image's own settings.
const containerdConfigPath = "/etc/containerd/config.toml"

func containerdConfig(sandboxImage string) string {
	return `# containerd for kubelet, rendered by kubeha.
version = 3
imports = ["/etc/containerd/conf.d/*.toml"]

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "` + sandboxImage + `"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = true
  BinaryName = "` + runcPath + `"
`
}

// runcPath is where nodes install runc.
const runcPath = "/usr/local/sbin/runc"

// CNIBinDir is where containerd looks for CNI plugins (its default), and
// nodes unpack the reference plugins.
const CNIBinDir = "/opt/cni/bin"

// The units a package would install: containerd's own, and kubelet's with
// kubeadm's drop-in, as the Kubernetes release ships them.
var (
	containerdUnit = unit{"containerd.service", `[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target local-fs.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=` + BinDir + `/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`}
	kubeletUnit = unit{"kubelet.service", `[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target containerd.service

[Service]
ExecStart=` + BinDir + `/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
`}
	kubeletKubeadmDropIn = unit{"kubelet.service.d/10-kubeadm.conf", `# kubeadm's kubelet settings, as the Kubernetes release ships them.
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=` + kubeletConfigPath + `"
# kubeadm init and join write this at runtime.
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# The image's own kubelet settings, as the last arguments.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=` + BinDir + `/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`}
)

// kubeletConfigPath is where kubeadm writes the kubelet's configuration,
// which kubernetes-node.sh then makes owner-only (CIS 4.1.9).
const kubeletConfigPath = "/var/lib/kubelet/config.yaml"

// kernelModules are what containerd and kube-proxy need loaded.
var kernelModules = []string{"overlay", "br_netfilter"}

// kubernetesNodeSpec is what differs between control-plane and worker
// nodes' first boot.
type kubernetesNodeSpec struct {
	Role              string // control-plane or worker; <role>-bootstrap.sh runs first
	ClusterName       string
	BootstrapDeadline time.Duration
	KubernetesVersion string
	Endpoint          string
	Zone              string
	Region            string
	SecretID          string
	Assets            ResolvedAssets
	Env               []envVar // besides the shared ones
	Files             []File
	Scripts           []string // besides the shared ones
}

// kubernetesNode renders a node: its settings, its files, the shared
// scripts and its own, and the packages they use. Every Kubernetes node
// installs containerd, runc, kubelet and kubeadm from the cluster's asset
// bucket (kubernetes-node.sh), with the kernel settings they need.
func kubernetesNode(s kubernetesNodeSpec) (Node, error) {
	if s.Assets.KubernetesVersion != s.KubernetesVersion {
		return Node{}, fmt.Errorf("bootstrap: the assets are for Kubernetes %s, the node runs %s", s.Assets.KubernetesVersion, s.KubernetesVersion)
	}
	if s.Assets.Holding() {
		own, _ := ParseVersion(s.KubernetesVersion)
		held, ok := ParseVersion(s.Assets.Held.KubernetesVersion)
		if !ok || !held.Less(own) || own.MinorsAbove(held) > 1 {
			return Node{}, fmt.Errorf("bootstrap: a node of Kubernetes %s holds its kubelet at a release at most one minor older, not %s", s.KubernetesVersion, s.Assets.Held.KubernetesVersion)
		}
	}
	// The sandbox image is the one the node's kubeadm checks for.
	release, err := ReleaseOf(s.KubernetesVersion)
	if err != nil {
		return Node{}, fmt.Errorf("bootstrap: %w", err)
	}
	env := []envVar{
		{"ROLE", s.Role},
		{"ZONE", s.Zone},
		{"API_ENDPOINT", s.Endpoint},
		{"API_PORT", fmt.Sprint(APIServerPort)},
		{"API_READY_URL", fmt.Sprintf("https://%s:%d%s", s.Endpoint, APIServerPort, HealthCheckPath)},
		{"AWS_DEFAULT_REGION", s.Region},
		{"SECRET_ID", s.SecretID},
		{"PKI_SECRET_PREFIX", PKISecretPrefix},
		{"KUBERNETES_PKI_DIR", KubernetesPKIDir},
		{"SECRETS_DIR", NodeSecretsDir},
		{"BOOTSTRAP_TOKEN_FILE", NodeSecretsDir + "/" + secretBootstrapToken},
		{"ENCRYPTION_KEY_FILE", NodeSecretsDir + "/" + secretEncryptionKey},
		{"TOKEN_PLACEHOLDER", BootstrapTokenPlaceholder},
		{"NODE_IP_PLACEHOLDER", nodeIPPlaceholder},
		{"ENCRYPTION_KEY_PLACEHOLDER", encryptionKeyPlaceholder},
		{"TEMPLATE_DIR", kubeadmTemplateDir},
		{"CONFIG_DIR", ControlPlaneConfigDir},
		{"KUBEADM_JOIN_CONFIG", KubeadmJoinConfigPath},
		{"KERNEL_MODULES_FILE", kernelModulesFile},
		{"BIN_DIR", BinDir},
		{"RUNC_PATH", runcPath},
		{"CNI_BIN_DIR", CNIBinDir},
		{"KUBELET_CONFIG", kubeletConfigPath},
		{"PATH", nodePath},
		{"KUBERNETES_VERSION", s.KubernetesVersion},
		{"VERSION_PARAMETER", RunningVersionParameter(s.ClusterName)},
	}
	held, err := s.Assets.heldEnv()
	if err != nil {
		return Node{}, err
	}
	env = append(env, held...)
	for _, a := range []struct {
		name  string
		asset Asset
	}{{"KUBEADM", s.Assets.Kubeadm}, {"KUBELET", s.Assets.Kubelet}, {"CONTAINERD_ARCHIVE", s.Assets.Containerd}, {"RUNC", s.Assets.Runc},
		{"CNI_PLUGINS_ARCHIVE", s.Assets.CNIPlugins}} {
		vars, err := s.Assets.env(a.name, a.asset)
		if err != nil {
			return Node{}, err
		}
		env = append(env, vars...)
	}
	env = append(env, s.Env...)
	node := Node{
		Packages: []string{"awscli", "jq", "curl", "openssl", "conntrack", "socat", "ethtool"},
		Files: append(s.Files,
			File{Path: kernelModulesFile, Content: strings.Join(kernelModules, "\n") + "\n", Mode: "0644"},
			File{Path: "/etc/sysctl.d/90-kubernetes.conf", Content: "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n", Mode: "0644"},
			File{Path: containerdConfigPath, Content: containerdConfig(release.PauseImage), Mode: "0644"},
			// Owner-only, as CIS 4.1.1 asks of the kubelet's unit.
			containerdUnit.file(), kubeletUnit.privateFile(), kubeletKubeadmDropIn.privateFile(),
		),
	}
	if err := node.withEnv(NodeEnvPath, s.Role+" node settings", s.ClusterName, s.BootstrapDeadline, env, s.Role+"-bootstrap.sh"); err != nil {
		return Node{}, err
	}
	if err := node.addScripts(append([]string{"node-common.sh", "credentials.sh", "kubernetes-node.sh", "imds.sh", "assets.sh", "node-configure.sh"}, s.Scripts...)...); err != nil {
		return Node{}, err
	}
	return node, nil
}
