package bootstrap

// A control-plane node: what every one shares, and how Node assembles its
// first boot from kubeadm's configuration (kubeadm.go), the components'
// configuration files (component_configs.go) and the shared Kubernetes
// node setup (kubernetes.go).

import (
	"strings"
	"time"
)

// ControlPlaneSecretFiles names the entries of a control-plane node's
// secret: PEM files under pki/ go to KubernetesPKIDir, the rest to
// NodeSecretsDir. The ControlPlane component fills exactly these.
var ControlPlaneSecretFiles = []string{
	pkiSecretPrefix + "ca.crt", pkiSecretPrefix + "ca.key",
	pkiSecretPrefix + "front-proxy-ca.crt", pkiSecretPrefix + "front-proxy-ca.key",
	pkiSecretPrefix + "sa.key", pkiSecretPrefix + "sa.pub",
	pkiSecretPrefix + "etcd/ca.crt", pkiSecretPrefix + "apiserver-etcd-client.crt", pkiSecretPrefix + "apiserver-etcd-client.key",
	secretBootstrapToken, secretEncryptionKey,
}

// APIServerPort is where every API server and the load balancer listen.
const APIServerPort = 6443

// HealthCheckPath is what the load balancer asks each API server: /readyz
// fails when the API server cannot reach etcd, while its port still
// accepts TCP.
const HealthCheckPath = "/readyz"

// LeaderElection is the Lease timing of kube-scheduler and
// kube-controller-manager.
type LeaderElection struct {
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// LeaderElectionJitter is client-go's leaderelection.JitterFactor: a
// candidate tries to acquire a Lease every RetryPeriod to RetryPeriod x
// (1 + LeaderElectionJitter), and client-go refuses to start with a
// RenewDeadline not above RetryPeriod x LeaderElectionJitter.
const LeaderElectionJitter = 1.2

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
	// IgnorePreflightErrors are kubeadm preflight checks the node may fail.
	IgnorePreflightErrors []string
}

// ControlPlaneParams are the per-node values AWS assigns at deploy time.
type ControlPlaneParams struct {
	Zone     string
	Region   string
	SecretID string // Secrets Manager secret with ControlPlaneSecretFiles
	// CACertPEM is the cluster CA; joining nodes pin its public key.
	CACertPEM string
	Assets    ResolvedAssets
}

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
		{kubeadmTemplateDir + "/" + kubeadmInitFile, "0600", c.KubeadmInit},
		{kubeadmTemplateDir + "/" + kubeadmJoinFile, "0600", func() (string, error) { return c.KubeadmJoin(hash) }},
		{kubeadmTemplateDir + "/" + encryptionFile, "0600", c.EncryptionConfig},
		{ControlPlaneConfigDir + "/" + schedulerFile, "0644", c.SchedulerConfig},
		{ControlPlaneConfigDir + "/" + authenticationFile, "0644", c.AuthenticationConfig},
		{ControlPlaneConfigDir + "/" + auditPolicyFile, "0644", c.AuditPolicy},
	} {
		content, err := r.make()
		if err != nil {
			return Node{}, err
		}
		files = append(files, File{Path: r.path, Content: content, Mode: r.mode})
	}
	sync, timer := tokenSyncUnits()
	images, err := p.Assets.imagesEnv()
	if err != nil {
		return Node{}, err
	}
	return kubernetesNode(kubernetesNodeSpec{
		Role: "control-plane", KubernetesVersion: c.KubernetesVersion, Endpoint: c.Endpoint,
		Zone: p.Zone, Region: p.Region, SecretID: p.SecretID, Assets: p.Assets,
		Env: []envVar{
			images,
			{"CLUSTER_NAME", c.ClusterName},
			{"INIT_ZONE", c.InitZone},
			{"KUBEADM_INIT_CONFIG", KubeadmInitConfigPath},
			{"ADMIN_KUBECONFIG", AdminKubeconfigPath},
			{"TOKEN_DESCRIPTION", BootstrapTokenDescription},
			{"TOKEN_SYNC_TIMER", timer.name},
		},
		Files:   append(files, sync.file(), timer.file()),
		Scripts: []string{"control-plane-bootstrap.sh", "control-plane-token-sync.sh"},
	})
}

// tokenSyncUnits run control-plane-token-sync.sh every 10 minutes.
func tokenSyncUnits() (service, timer unit) {
	service = unit{"kubeha-token-sync.service", strings.Join([]string{
		"[Unit]",
		"Description=Keep the kubeadm join token equal to the cluster secret's (kubeha)",
		"After=kubelet.service",
		"",
		"[Service]",
		"Type=oneshot",
		"EnvironmentFile=" + NodeEnvPath,
		"ExecStart=" + ScriptDir + "/control-plane-token-sync.sh",
		""}, "\n")}
	timer = unit{"kubeha-token-sync.timer", `[Unit]
Description=Join token rotation from the cluster secret (kubeha)

[Timer]
OnBootSec=2min
OnUnitActiveSec=10min
RandomizedDelaySec=60

[Install]
WantedBy=timers.target
`}
	return service, timer
}
