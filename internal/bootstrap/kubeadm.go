package bootstrap

// kubeadm's configuration (v1beta4): InitConfiguration and
// ClusterConfiguration for the node that creates the cluster,
// JoinConfiguration for control-plane nodes and workers that join it.

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/oidc"
)

const kubeadmAPIVersion = "kubeadm.k8s.io/v1beta4"

// The kubeadm configurations' file names: rendered with placeholders into
// kubeadmTemplateDir, filled by node-configure.sh into ControlPlaneConfigDir.
const (
	kubeadmInitFile = "kubeadm-init.yaml"
	kubeadmJoinFile = "kubeadm-join.yaml"
)

// etcdClientFiles are the API server's etcd client certificate, its key
// and etcd's CA, from the control-plane node's secret.
var etcdClientFiles = struct{ ca, cert, key string }{
	KubernetesPKIDir + "/etcd/ca.crt", KubernetesPKIDir + "/apiserver-etcd-client.crt", KubernetesPKIDir + "/apiserver-etcd-client.key",
}

// kubeadmConfigEtcdKey is where the API server stores the ConfigMap
// kube-system/kubeadm-config, which `kubeadm init` uploads: the durable
// record that the cluster was created.
const kubeadmConfigEtcdKey = "/registry/configmaps/kube-system/kubeadm-config"

// Rendered kubeadm configurations, after node-configure.sh.
const (
	KubeadmInitConfigPath = ControlPlaneConfigDir + "/" + kubeadmInitFile
	KubeadmJoinConfigPath = ControlPlaneConfigDir + "/" + kubeadmJoinFile
)

// Where kubeadm writes on a control-plane node: its defaults, named once
// for the scripts and the local tests.
const (
	AdminKubeconfigPath = "/etc/kubernetes/admin.conf"
	StaticPodDir        = "/etc/kubernetes/manifests"
)

const criSocket = "unix:///run/containerd/containerd.sock"

// BootstrapTokenPlaceholder stands for the join token in rendered
// configurations. It has a token's shape, so that `kubeadm config
// validate` checks the rest; the real token never enters user-data.
const BootstrapTokenPlaceholder = "kubeha.0000000000000000"

// BootstrapTokenDescription marks the tokens kubeha manages.
const BootstrapTokenDescription = "kubeha join token (rotated from the cluster secret)"

// CACertHash is kubeadm's discovery hash of a CA: sha256 of its public key.
func CACertHash(caPEM string) (string, error) {
	block, _ := pem.Decode([]byte(caPEM))
	if block == nil {
		return "", fmt.Errorf("bootstrap: the cluster CA is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("bootstrap: the cluster CA: %w", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

type arg struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

type hostPathMount struct {
	Name      string `yaml:"name"`
	HostPath  string `yaml:"hostPath"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
	PathType  string `yaml:"pathType"`
}

type nodeRegistration struct {
	CRISocket             string   `yaml:"criSocket"`
	KubeletExtraArgs      []arg    `yaml:"kubeletExtraArgs"`
	Taints                []Taint  `yaml:"taints,omitempty"`
	IgnorePreflightErrors []string `yaml:"ignorePreflightErrors,omitempty"`
}

// Taint is a node taint.
type Taint struct {
	Key    string `yaml:"key"`
	Value  string `yaml:"value,omitempty"`
	Effect string `yaml:"effect"` // NoSchedule, PreferNoSchedule or NoExecute
}

func (c ControlPlane) nodeRegistration() nodeRegistration {
	return nodeRegistration{CRISocket: criSocket, KubeletExtraArgs: kubeletArgs(), IgnorePreflightErrors: c.IgnorePreflightErrors}
}

// nodeIPPlaceholder stands for the instance's private IP in rendered
// configurations, filled at boot by node-configure.sh. It is an address
// (TEST-NET-1), so that `kubeadm config validate` checks the rest.
const nodeIPPlaceholder = "192.0.2.1"

// kubeletArgs are every kubelet's flags. The AWS cloud-controller-manager
// sets the node's zone, providerID and addresses. Until it does, a kubelet
// of an external cloud provider has no address, and so no serving
// certificate, unless given its IP (which the CCM then keeps).
func kubeletArgs() []arg {
	return []arg{{"cloud-provider", "external"}, {"node-ip", nodeIPPlaceholder}}
}

func seconds(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Seconds())) }

// KubeadmInit renders kubeadm's InitConfiguration and ClusterConfiguration
// (v1beta4), with BootstrapTokenPlaceholder for the join token.
func (c ControlPlane) KubeadmInit() (string, error) {
	type bootstrapToken struct {
		Token       string   `yaml:"token"`
		Description string   `yaml:"description"`
		TTL         string   `yaml:"ttl"`
		Usages      []string `yaml:"usages"`
		Groups      []string `yaml:"groups"`
	}
	initCfg := struct {
		APIVersion       string           `yaml:"apiVersion"`
		Kind             string           `yaml:"kind"`
		BootstrapTokens  []bootstrapToken `yaml:"bootstrapTokens"`
		NodeRegistration nodeRegistration `yaml:"nodeRegistration"`
		SkipPhases       []string         `yaml:"skipPhases,omitempty"`
	}{
		APIVersion: kubeadmAPIVersion, Kind: "InitConfiguration",
		// The token never expires: a node added months later must still
		// join. control-plane-token-sync.sh rotates it from the secret.
		BootstrapTokens: []bootstrapToken{{
			Token: BootstrapTokenPlaceholder, Description: BootstrapTokenDescription, TTL: "0s",
			Usages: []string{"signing", "authentication"}, Groups: []string{"system:bootstrappers:kubeadm:default-node-token"},
		}},
		NodeRegistration: c.nodeRegistration(),
	}
	if c.SkipCoreDNS {
		initCfg.SkipPhases = []string{"addon/coredns"}
	}
	le := c.LeaderElection
	readOnly := func(name, path, kind string) hostPathMount {
		return hostPathMount{Name: name, HostPath: path, MountPath: path, ReadOnly: true, PathType: kind}
	}
	kubehaConfig := readOnly("kubeha-config", ControlPlaneConfigDir, "DirectoryOrCreate")
	type component struct {
		ExtraArgs    []arg           `yaml:"extraArgs"`
		ExtraVolumes []hostPathMount `yaml:"extraVolumes,omitempty"`
	}
	type apiServer struct {
		CertSANs  []string `yaml:"certSANs"`
		component `yaml:",inline"`
	}
	cluster := struct {
		APIVersion           string `yaml:"apiVersion"`
		Kind                 string `yaml:"kind"`
		ClusterName          string `yaml:"clusterName"`
		KubernetesVersion    string `yaml:"kubernetesVersion"`
		ControlPlaneEndpoint string `yaml:"controlPlaneEndpoint"`
		// How long the certificates kubeadm makes last, said explicitly:
		// control-plane-cert-renewal.sh renews them before.
		CertificateValidityPeriod string `yaml:"certificateValidityPeriod"`
		EncryptionAlgorithm       string `yaml:"encryptionAlgorithm"`
		Networking                struct {
			PodSubnet     string `yaml:"podSubnet"`
			ServiceSubnet string `yaml:"serviceSubnet"`
		} `yaml:"networking"`
		Etcd struct {
			External struct {
				Endpoints []string `yaml:"endpoints"`
				CAFile    string   `yaml:"caFile"`
				CertFile  string   `yaml:"certFile"`
				KeyFile   string   `yaml:"keyFile"`
			} `yaml:"external"`
		} `yaml:"etcd"`
		APIServer         apiServer `yaml:"apiServer"`
		ControllerManager component `yaml:"controllerManager"`
		Scheduler         component `yaml:"scheduler"`
	}{
		APIVersion: kubeadmAPIVersion, Kind: "ClusterConfiguration",
		ClusterName: c.ClusterName, KubernetesVersion: c.KubernetesVersion,
		ControlPlaneEndpoint:      fmt.Sprintf("%s:%d", c.Endpoint, APIServerPort),
		CertificateValidityPeriod: c.certificateValidity().String(),
		// Matches the keys pulumi-tls makes for the shared CAs.
		EncryptionAlgorithm: "ECDSA-P256",
	}
	cluster.Networking.PodSubnet, cluster.Networking.ServiceSubnet = c.PodCIDR, c.ServiceCIDR
	ext := &cluster.Etcd.External
	ext.Endpoints = c.EtcdEndpoints
	ext.CAFile, ext.CertFile, ext.KeyFile = etcdClientFiles.ca, etcdClientFiles.cert, etcdClientFiles.key
	cluster.APIServer = apiServer{
		CertSANs: []string{c.Endpoint},
		component: component{
			ExtraArgs: []arg{
				{"authentication-config", ControlPlaneConfigDir + "/" + authenticationFile},
				{"encryption-provider-config", ControlPlaneConfigDir + "/" + encryptionFile},
				{"encryption-provider-config-automatic-reload", "true"},
				{"audit-policy-file", ControlPlaneConfigDir + "/" + auditPolicyFile},
				{"audit-log-path", AuditLogPath},
				{"audit-log-maxage", "30"},
				{"audit-log-maxbackup", "10"},
				{"audit-log-maxsize", "100"},
				{"profiling", "false"},
				{"kubelet-certificate-authority", KubernetesPKIDir + "/ca.crt"},
				{"tls-cipher-suites", strings.Join(TLSCipherSuites, ",")},
				{"tls-min-version", TLSMinVersion},
			},
			ExtraVolumes: []hostPathMount{kubehaConfig,
				{Name: "audit-log", HostPath: auditLogDir, MountPath: auditLogDir, PathType: "DirectoryOrCreate"}},
		},
	}
	if c.ShutdownDelay > 0 {
		cluster.APIServer.ExtraArgs = append(cluster.APIServer.ExtraArgs,
			arg{"shutdown-delay-duration", seconds(min(c.ShutdownDelay, MaxShutdownDelay))})
	}
	if c.PodEviction > 0 {
		cluster.APIServer.ExtraArgs = append(cluster.APIServer.ExtraArgs,
			arg{"default-not-ready-toleration-seconds", fmt.Sprint(int(c.PodEviction.Seconds()))},
			arg{"default-unreachable-toleration-seconds", fmt.Sprint(int(c.PodEviction.Seconds()))})
	}
	if c.ServiceAccountIssuer != "" {
		// The first issuer signs; tokens of kubeadm's own stay valid.
		cluster.APIServer.ExtraArgs = append(cluster.APIServer.ExtraArgs,
			arg{"service-account-issuer", c.ServiceAccountIssuer},
			arg{"service-account-issuer", oidc.LegacyIssuer},
			arg{"service-account-jwks-uri", oidc.KeySetURL(c.ServiceAccountIssuer)})
	}
	cluster.ControllerManager = component{ExtraArgs: []arg{
		{"cloud-provider", "external"},
		{"leader-elect", "true"},
		{"leader-elect-lease-duration", seconds(le.LeaseDuration)},
		{"leader-elect-renew-deadline", seconds(le.RenewDeadline)},
		{"leader-elect-retry-period", seconds(le.RetryPeriod)},
		{"profiling", "false"},
	}}
	if c.NodeMonitorGracePeriod > 0 {
		cluster.ControllerManager.ExtraArgs = append(cluster.ControllerManager.ExtraArgs, arg{"node-monitor-grace-period", seconds(c.NodeMonitorGracePeriod)})
	}
	cluster.Scheduler = component{
		ExtraArgs:    []arg{{"config", ControlPlaneConfigDir + "/" + schedulerFile}, {"profiling", "false"}},
		ExtraVolumes: []hostPathMount{kubehaConfig},
	}
	for _, comp := range []*component{&cluster.ControllerManager, &cluster.Scheduler} {
		comp.ExtraArgs = append(comp.ExtraArgs, arg{"tls-cipher-suites", strings.Join(TLSCipherSuites, ",")}, arg{"tls-min-version", TLSMinVersion})
	}
	if c.ServeMetrics {
		for _, comp := range []*component{&cluster.ControllerManager, &cluster.Scheduler} {
			comp.ExtraArgs = append(comp.ExtraArgs, arg{"bind-address", "0.0.0.0"})
		}
	}
	// Every kubelet's, which kubeadm stores in the cluster for joins too.
	// Kubelets serve with a certificate from the cluster CA, which
	// control-plane-csr-approver.sh approves for the node's own addresses
	// only, and which the API server checks (kubelet-certificate-authority).
	kubelet := struct {
		APIVersion         string   `yaml:"apiVersion"`
		Kind               string   `yaml:"kind"`
		TLSCipherSuites    []string `yaml:"tlsCipherSuites"`
		TLSMinVersion      string   `yaml:"tlsMinVersion"`
		ServerTLSBootstrap bool     `yaml:"serverTLSBootstrap"`
	}{"kubelet.config.k8s.io/v1beta1", "KubeletConfiguration", TLSCipherSuites, TLSMinVersion, true}
	// kube-proxy's metrics on the node's loopback only, as its default is
	// (CIS 4.3.1), said where the benchmark and a reader can see it.
	proxy := struct {
		APIVersion         string `yaml:"apiVersion"`
		Kind               string `yaml:"kind"`
		MetricsBindAddress string `yaml:"metricsBindAddress"`
	}{"kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration", "127.0.0.1:10249"}
	return yamlDocs(initCfg, cluster, kubelet, proxy)
}

// TLSCipherSuites are the only suites kubeha's servers offer (API
// servers, controller-managers, schedulers, kubelets, etcd): TLS 1.2
// with forward secrecy and AEAD, for ECDSA (kubeadm's keys) and RSA
// certificates; TLS 1.3's are always on. CIS 1.2.x and 4.2.x.
var TLSCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

// TLSMinVersion is the oldest TLS version Kubernetes' servers accept.
const TLSMinVersion = "VersionTLS12"

// KubeadmJoin renders the JoinConfiguration of a control-plane node. The
// shared CAs and keys are already on the node, so no certificate key is
// needed; discovery pins the CA's public key.
func (c ControlPlane) KubeadmJoin(caCertHash string) (string, error) {
	return kubeadmJoin(c.Endpoint, caCertHash, c.nodeRegistration(), true)
}

// kubeadmJoin renders a JoinConfiguration that discovers the cluster
// through endpoint with the bootstrap token (BootstrapTokenPlaceholder
// until boot) and the CA's public-key hash.
func kubeadmJoin(endpoint, caCertHash string, registration nodeRegistration, controlPlane bool) (string, error) {
	type bindPort struct {
		LocalAPIEndpoint struct {
			BindPort int `yaml:"bindPort"`
		} `yaml:"localAPIEndpoint"`
	}
	join := struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Discovery  struct {
			BootstrapToken struct {
				Token             string   `yaml:"token"`
				APIServerEndpoint string   `yaml:"apiServerEndpoint"`
				CACertHashes      []string `yaml:"caCertHashes"`
			} `yaml:"bootstrapToken"`
		} `yaml:"discovery"`
		NodeRegistration nodeRegistration `yaml:"nodeRegistration"`
		ControlPlane     *bindPort        `yaml:"controlPlane,omitempty"`
	}{APIVersion: kubeadmAPIVersion, Kind: "JoinConfiguration", NodeRegistration: registration}
	bt := &join.Discovery.BootstrapToken
	bt.Token, bt.APIServerEndpoint, bt.CACertHashes = BootstrapTokenPlaceholder, fmt.Sprintf("%s:%d", endpoint, APIServerPort), []string{caCertHash}
	if controlPlane {
		join.ControlPlane = &bindPort{}
		join.ControlPlane.LocalAPIEndpoint.BindPort = APIServerPort
	}
	return yamlDocs(join)
}
