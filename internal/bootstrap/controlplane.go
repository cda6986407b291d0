package bootstrap

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Paths on a control-plane node. kubeha's own API server inputs live in
// one folder, mounted read-only into the static pods.
const (
	KubernetesPKIDir      = "/etc/kubernetes/pki"
	ControlPlaneConfigDir = "/etc/kubernetes/kubeha"
	// Templates hold placeholders for the secrets, filled at boot by
	// control-plane-configure.sh into ControlPlaneConfigDir.
	kubeadmTemplateDir = "/etc/kubeha/templates"
	// NodeSecretsDir holds the non-PEM secrets fetched at boot.
	NodeSecretsDir = "/etc/kubeha/secrets"
	auditLogDir    = "/var/log/kubernetes/audit"
	criSocket      = "unix:///run/containerd/containerd.sock"
)

// Rendered kubeadm configurations, after control-plane-configure.sh.
const (
	KubeadmInitConfigPath = ControlPlaneConfigDir + "/kubeadm-init.yaml"
	KubeadmJoinConfigPath = ControlPlaneConfigDir + "/kubeadm-join.yaml"
)

// BootstrapTokenPlaceholder stands for the join token in rendered
// configurations. It has a token's shape, so that `kubeadm config
// validate` checks the rest; the real token never enters user-data.
const BootstrapTokenPlaceholder = "kubeha.0000000000000000"

// encryptionKeyPlaceholder stands for the secrets-encryption key.
const encryptionKeyPlaceholder = "ENCRYPTION_KEY_FROM_SECRET"

// ControlPlaneSecretFiles names the entries of a control-plane node's
// secret: PEM files under pki/ go to KubernetesPKIDir, the rest to
// NodeSecretsDir. The ControlPlane component fills exactly these.
var ControlPlaneSecretFiles = []string{
	"pki/ca.crt", "pki/ca.key",
	"pki/front-proxy-ca.crt", "pki/front-proxy-ca.key",
	"pki/sa.key", "pki/sa.pub",
	"pki/etcd/ca.crt", "pki/apiserver-etcd-client.crt", "pki/apiserver-etcd-client.key",
	"bootstrap-token", "encryption-key",
}

// LeaderElection is the Lease timing of kube-scheduler and
// kube-controller-manager.
type LeaderElection struct {
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// LeaderElectionSeconds is a LeaderElection from whole seconds, as a
// stack's controlPlane.leaderElection gives it.
func LeaderElectionSeconds(lease, renew, retry int) LeaderElection {
	return LeaderElection{LeaseDuration: time.Duration(lease) * time.Second,
		RenewDeadline: time.Duration(renew) * time.Second, RetryPeriod: time.Duration(retry) * time.Second}
}

// ControlPlane is what every control-plane node shares. Every node gets
// the same files; the one in InitZone runs `kubeadm init` if it finds no
// cluster behind the endpoint, the others wait for one and join it.
type ControlPlane struct {
	ClusterName       string
	KubernetesVersion string // v1.36.3
	// Endpoint is the load balancer's DNS name (no scheme, no port).
	Endpoint       string
	PodCIDR        string
	ServiceCIDR    string
	EtcdEndpoints  []string
	LeaderElection LeaderElection
	InitZone       string
	// SkipCoreDNS leaves DNS to the Addons' CoreDNS chart: kubeadm skips
	// its addon/coredns phase.
	SkipCoreDNS bool
	// ServeMetrics binds the scheduler's and controller-manager's secure
	// ports (10259, 10257) to all addresses, for Prometheus; they still
	// authenticate and authorize every request.
	ServeMetrics bool
}

// ControlPlaneParams are the per-node values AWS assigns at deploy time.
type ControlPlaneParams struct {
	Zone     string
	Region   string
	SecretID string // Secrets Manager secret with ControlPlaneSecretFiles
	// CACertPEM is the cluster CA; joining nodes pin its public key.
	CACertPEM string
}

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
	CRISocket        string  `yaml:"criSocket"`
	KubeletExtraArgs []arg   `yaml:"kubeletExtraArgs"`
	Taints           []Taint `yaml:"taints,omitempty"`
}

// Taint is a node taint.
type Taint struct {
	Key    string `yaml:"key"`
	Value  string `yaml:"value,omitempty"`
	Effect string `yaml:"effect"` // NoSchedule, PreferNoSchedule or NoExecute
}

func (c ControlPlane) nodeRegistration() nodeRegistration {
	// The AWS cloud-controller-manager sets the node's zone and providerID.
	return nodeRegistration{CRISocket: criSocket, KubeletExtraArgs: []arg{{"cloud-provider", "external"}}}
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
		EncryptionAlgorithm  string `yaml:"encryptionAlgorithm"`
		Networking           struct {
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
		ControlPlaneEndpoint: fmt.Sprintf("%s:%d", c.Endpoint, APIServerPort),
		// Matches the keys pulumi-tls makes for the shared CAs.
		EncryptionAlgorithm: "ECDSA-P256",
	}
	cluster.Networking.PodSubnet, cluster.Networking.ServiceSubnet = c.PodCIDR, c.ServiceCIDR
	ext := &cluster.Etcd.External
	ext.Endpoints = c.EtcdEndpoints
	ext.CAFile, ext.CertFile, ext.KeyFile = KubernetesPKIDir+"/etcd/ca.crt", KubernetesPKIDir+"/apiserver-etcd-client.crt", KubernetesPKIDir+"/apiserver-etcd-client.key"
	cluster.APIServer = apiServer{
		CertSANs: []string{c.Endpoint},
		component: component{
			ExtraArgs: []arg{
				{"authentication-config", ControlPlaneConfigDir + "/authentication.yaml"},
				{"encryption-provider-config", ControlPlaneConfigDir + "/encryption.yaml"},
				{"encryption-provider-config-automatic-reload", "true"},
				{"audit-policy-file", ControlPlaneConfigDir + "/audit-policy.yaml"},
				{"audit-log-path", auditLogDir + "/audit.log"},
				{"audit-log-maxage", "30"},
				{"audit-log-maxbackup", "10"},
				{"audit-log-maxsize", "100"},
				{"profiling", "false"},
			},
			ExtraVolumes: []hostPathMount{kubehaConfig,
				{Name: "audit-log", HostPath: auditLogDir, MountPath: auditLogDir, PathType: "DirectoryOrCreate"}},
		},
	}
	cluster.ControllerManager = component{ExtraArgs: []arg{
		{"cloud-provider", "external"},
		{"leader-elect", "true"},
		{"leader-elect-lease-duration", seconds(le.LeaseDuration)},
		{"leader-elect-renew-deadline", seconds(le.RenewDeadline)},
		{"leader-elect-retry-period", seconds(le.RetryPeriod)},
		{"profiling", "false"},
	}}
	cluster.Scheduler = component{
		ExtraArgs:    []arg{{"config", ControlPlaneConfigDir + "/scheduler.yaml"}, {"profiling", "false"}},
		ExtraVolumes: []hostPathMount{kubehaConfig},
	}
	if c.ServeMetrics {
		for _, comp := range []*component{&cluster.ControllerManager, &cluster.Scheduler} {
			comp.ExtraArgs = append(comp.ExtraArgs, arg{"bind-address", "0.0.0.0"})
		}
	}
	return yamlDocs(initCfg, cluster)
}

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

// SchedulerConfig spreads pods over zones (and then hosts) by default, the
// modern form of SelectorSpreadPriority, and sets kubeha's Lease timing.
func (c ControlPlane) SchedulerConfig() (string, error) {
	type constraint struct {
		MaxSkew           int    `yaml:"maxSkew"`
		TopologyKey       string `yaml:"topologyKey"`
		WhenUnsatisfiable string `yaml:"whenUnsatisfiable"`
	}
	le := c.LeaderElection
	cfg := map[string]any{
		"apiVersion":       "kubescheduler.config.k8s.io/v1",
		"kind":             "KubeSchedulerConfiguration",
		"clientConnection": map[string]any{"kubeconfig": "/etc/kubernetes/scheduler.conf"},
		"leaderElection": map[string]any{
			"leaderElect": true, "resourceLock": "leases", "resourceNamespace": "kube-system", "resourceName": "kube-scheduler",
			"leaseDuration": seconds(le.LeaseDuration), "renewDeadline": seconds(le.RenewDeadline), "retryPeriod": seconds(le.RetryPeriod),
		},
		"profiles": []any{map[string]any{
			"schedulerName": "default-scheduler",
			"pluginConfig": []any{map[string]any{
				"name": "PodTopologySpread",
				"args": map[string]any{
					"defaultingType": "List",
					"defaultConstraints": []constraint{
						{1, ZoneLabel, "ScheduleAnyway"},
						{1, "kubernetes.io/hostname", "ScheduleAnyway"},
					},
				},
			}},
		}},
	}
	return yamlDocs(cfg)
}

// ZoneLabel is the well-known label the cloud-controller-manager sets.
const ZoneLabel = "topology.kubernetes.io/zone"

// AuthenticationConfig allows anonymous requests to the health endpoints
// (the load balancer's check needs /readyz) and to the cluster-info
// ConfigMap (a joining node's discovery reads it before it has
// credentials, and checks its token signature); the rest needs
// credentials.
func (c ControlPlane) AuthenticationConfig() (string, error) {
	return yamlDocs(map[string]any{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AuthenticationConfiguration",
		"anonymous": map[string]any{
			"enabled": true,
			"conditions": []map[string]string{{"path": "/livez"}, {"path": "/readyz"}, {"path": "/healthz"},
				{"path": "/api/v1/namespaces/kube-public/configmaps/cluster-info"}},
		},
	})
}

// EncryptionConfig encrypts Secrets in etcd with secretbox; the key is
// filled in at boot from the node's secret.
func (c ControlPlane) EncryptionConfig() (string, error) {
	return yamlDocs(map[string]any{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "EncryptionConfiguration",
		"resources": []any{map[string]any{
			"resources": []string{"secrets"},
			"providers": []any{
				map[string]any{"secretbox": map[string]any{"keys": []any{map[string]string{"name": "key1", "secret": encryptionKeyPlaceholder}}}},
				// Reads Secrets written before encryption was on.
				map[string]any{"identity": map[string]any{}},
			},
		}},
	})
}

// AuditPolicy logs who did what at metadata level, request bodies for
// writes, never Secret payloads, and drops the high-volume noise (health
// probes, Lease renewals, watches).
func (c ControlPlane) AuditPolicy() (string, error) {
	group := func(name string, resources ...string) map[string]any {
		return map[string]any{"group": name, "resources": resources}
	}
	return yamlDocs(map[string]any{
		"apiVersion": "audit.k8s.io/v1",
		"kind":       "Policy",
		"omitStages": []string{"RequestReceived"},
		"rules": []any{
			map[string]any{"level": "None", "nonResourceURLs": []string{"/healthz*", "/livez*", "/readyz*", "/version", "/metrics"}},
			map[string]any{"level": "None", "verbs": []string{"get", "update"}, "resources": []any{group("coordination.k8s.io", "leases")}},
			map[string]any{"level": "None", "verbs": []string{"watch"}},
			map[string]any{"level": "Metadata", "resources": []any{
				group("", "secrets", "configmaps", "serviceaccounts/token"), group("authentication.k8s.io", "tokenreviews")}},
			map[string]any{"level": "Request", "verbs": []string{"create", "update", "patch", "delete", "deletecollection"}},
			map[string]any{"level": "Metadata"},
		},
	})
}

// BootstrapTokenDescription marks the tokens kubeha manages.
const BootstrapTokenDescription = "kubeha join token (rotated from the cluster secret)"

// APIServerPort is where every API server and the load balancer listen.
const APIServerPort = 6443

// HealthCheckPath is what the load balancer asks each API server: /readyz
// fails when the API server cannot reach etcd, while its port still
// accepts TCP.
const HealthCheckPath = "/readyz"

const kubeadmAPIVersion = "kubeadm.k8s.io/v1beta4"

// Node renders one control-plane node's first boot.
func (c ControlPlane) Node(p ControlPlaneParams) (Node, error) {
	hash, err := CACertHash(p.CACertPEM)
	if err != nil {
		return Node{}, err
	}
	type rendered struct {
		path string
		mode string
		make func() (string, error)
	}
	var files []File
	for _, r := range []rendered{
		{kubeadmTemplateDir + "/kubeadm-init.yaml", "0600", c.KubeadmInit},
		{kubeadmTemplateDir + "/kubeadm-join.yaml", "0600", func() (string, error) { return c.KubeadmJoin(hash) }},
		{kubeadmTemplateDir + "/encryption.yaml", "0600", c.EncryptionConfig},
		{ControlPlaneConfigDir + "/scheduler.yaml", "0644", c.SchedulerConfig},
		{ControlPlaneConfigDir + "/authentication.yaml", "0644", c.AuthenticationConfig},
		{ControlPlaneConfigDir + "/audit-policy.yaml", "0644", c.AuditPolicy},
	} {
		content, err := r.make()
		if err != nil {
			return Node{}, err
		}
		files = append(files, File{Path: r.path, Content: content, Mode: r.mode})
	}
	files = append(files,
		File{Path: "/etc/systemd/system/kubeha-token-sync.service", Content: tokenSyncService, Mode: "0644"},
		File{Path: "/etc/systemd/system/kubeha-token-sync.timer", Content: tokenSyncTimer, Mode: "0644"},
	)
	return kubernetesNode(kubernetesNodeSpec{
		Role: "control-plane", KubernetesVersion: c.KubernetesVersion, Endpoint: c.Endpoint,
		Zone: p.Zone, Region: p.Region, SecretID: p.SecretID,
		Env:     []string{"CLUSTER_NAME=" + c.ClusterName, "INIT_ZONE=" + c.InitZone, "TOKEN_DESCRIPTION='" + BootstrapTokenDescription + "'"},
		Files:   files,
		Scripts: []string{"control-plane-bootstrap.sh", "control-plane-token-sync.sh"},
	})
}

const tokenSyncService = `[Unit]
Description=Keep the kubeadm join token equal to the cluster secret's (kubeha)
After=kubelet.service

[Service]
Type=oneshot
EnvironmentFile=/etc/kubeha/node.env
ExecStart=/usr/local/lib/kubeha/control-plane-token-sync.sh
`

const tokenSyncTimer = `[Unit]
Description=Join token rotation from the cluster secret (kubeha)

[Timer]
OnBootSec=2min
OnUnitActiveSec=10min
RandomizedDelaySec=60

[Install]
WantedBy=timers.target
`

// yamlDocs renders documents as one multi-document YAML stream.
func yamlDocs(docs ...any) (string, error) {
	var parts []string
	for _, d := range docs {
		var buf strings.Builder
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(d); err != nil {
			return "", err
		}
		if err := enc.Close(); err != nil {
			return "", err
		}
		parts = append(parts, buf.String())
	}
	return strings.Join(parts, "---\n"), nil
}

// AdminKubeconfig is a kubeconfig for server (https://host:port) that
// authenticates with a client certificate.
func AdminKubeconfig(cluster, server, caPEM, certPEM, keyPEM string) (string, error) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	user := cluster + "-admin"
	return yamlDocs(map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"clusters":        []any{map[string]any{"name": cluster, "cluster": map[string]string{"server": server, "certificate-authority-data": b64(caPEM)}}},
		"users":           []any{map[string]any{"name": user, "user": map[string]string{"client-certificate-data": b64(certPEM), "client-key-data": b64(keyPEM)}}},
		"contexts":        []any{map[string]any{"name": user + "@" + cluster, "context": map[string]string{"cluster": cluster, "user": user}}},
		"current-context": user + "@" + cluster,
	})
}
