package bootstrap

// A control-plane node: what every one shares, and how Node assembles its
// first boot from kubeadm's configuration (kubeadm.go), the components'
// configuration files (component_configs.go) and the shared Kubernetes
// node setup (kubernetes.go).

import (
	"fmt"
	"strings"
	"time"
)

// ControlPlaneSecretFiles names the entries of a control-plane node's
// secret: PEM files under pki/ go to KubernetesPKIDir, the rest to
// NodeSecretsDir. The ControlPlane component fills exactly these.
var ControlPlaneSecretFiles = []string{
	PKISecretPrefix + "ca.crt", PKISecretPrefix + "ca.key",
	PKISecretPrefix + "front-proxy-ca.crt", PKISecretPrefix + "front-proxy-ca.key",
	PKISecretPrefix + "sa.key", PKISecretPrefix + "sa.pub",
	PKISecretPrefix + "etcd/ca.crt", PKISecretPrefix + "apiserver-etcd-client.crt", PKISecretPrefix + "apiserver-etcd-client.key",
	secretBootstrapToken, secretEncryptionKey,
}

// APIServerPort is where every API server and the load balancer listen.
const APIServerPort = 6443

// KubeletPort is the kubelet's API, which the API server calls for logs,
// exec and metrics.
const KubeletPort = 10250

// The controller-manager's and scheduler's secure ports: metrics and
// health.
const (
	ControllerManagerPort = 10257
	SchedulerPort         = 10259
)

// MaxShutdownDelay keeps the API server's shutdown delay inside the 30 s a
// kubeadm static pod has to stop before it is killed.
const MaxShutdownDelay = 20 * time.Second

// ControlPlaneLabel marks a control-plane Node (kubeadm sets it).
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

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
	ClusterName string
	// BootstrapDeadline: see EtcdCluster.BootstrapDeadline.
	BootstrapDeadline time.Duration
	KubernetesVersion string // v1.36.3
	// Endpoint is the load balancer's DNS name (no scheme, no port).
	Endpoint       string
	PodCIDR        string
	ServiceCIDR    string
	EtcdEndpoints  []string
	LeaderElection LeaderElection
	InitZone       string
	// NodeMonitorGracePeriod is how long a node may go without renewing
	// its Lease before it is NotReady (kube-controller-manager), 0 for
	// Kubernetes' default; PodEviction is the default not-ready and
	// unreachable toleration the API server gives pods, 0 for its own.
	NodeMonitorGracePeriod, PodEviction time.Duration
	// SkipCoreDNS leaves DNS to the Addons' CoreDNS chart: kubeadm skips
	// its addon/coredns phase.
	SkipCoreDNS bool
	// ServeMetrics binds the scheduler's and controller-manager's secure
	// ports (10259, 10257) to all addresses, for Prometheus; they still
	// authenticate and authorize every request.
	ServeMetrics bool
	// ShutdownDelay is how long a stopping API server keeps serving with
	// /readyz failing, so that the load balancer takes it out of rotation
	// before it stops listening (a replaced node, a kubelet upgraded in
	// place restarting its static pods): the load balancer's detection
	// time, at most MaxShutdownDelay; 0 for none.
	ShutdownDelay time.Duration
	// CertificateValidity is how long kubeadm's certificates last (the
	// API server's, the components' kubeconfigs); 0 is kubeadm's year.
	// Each node renews its own with a third to half of it left.
	CertificateValidity time.Duration
	// IgnorePreflightErrors are kubeadm preflight checks the node may fail.
	IgnorePreflightErrors []string
	// APITunnel forwards APITunnelPort to the local API server, in place of
	// SSH: the one port through which an EC2 Instance Connect Endpoint
	// reaches a private API (its tunnels reach ports 22 and 3389 only).
	APITunnel bool
	// ApplyAddons runs the add-on applier (addons-apply.sh) on a timer:
	// the add-on set at AddonSetKey in the asset bucket, applied by one
	// node at a time.
	ApplyAddons bool
	// ServiceAccountIssuer is the URL whose documents (oidc.Documents)
	// AWS STS reads to trust service-account tokens; "" keeps kubeadm's
	// in-cluster issuer.
	ServiceAccountIssuer string
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
		{WorkerRBACPath, "0644", func() (string, error) { return WorkerJoinRBAC(), nil }},
	} {
		content, err := r.make()
		if err != nil {
			return Node{}, err
		}
		files = append(files, File{Path: r.path, Content: content, Mode: r.mode})
	}
	sync, timer := tokenSyncUnits()
	approver, approverTimer := csrApproverUnits()
	renewal, renewalTimer := c.certRenewalUnits()
	drain, drainTimer := workerDrainUnits()
	images, err := p.Assets.imagesEnv(p.Assets.withHeld(Assets.Images))
	if err != nil {
		return Node{}, err
	}
	env := []envVar{
		images,
		{"CLUSTER_NAME", c.ClusterName},
		{"INIT_ZONE", c.InitZone},
		{"KUBEADM_INIT_CONFIG", KubeadmInitConfigPath},
		{"ADMIN_KUBECONFIG", AdminKubeconfigPath},
		{"TOKEN_DESCRIPTION", BootstrapTokenDescription},
		{"TOKEN_SYNC_FAILED_METRIC", TokenSyncFailedMetric},
		{"CSR_APPROVER_FAILED_METRIC", CSRApproverFailedMetric},
		{"CERT_RENEWAL_FAILED_METRIC", CertRenewalFailedMetric},
		{"CERT_DAYS_LEFT_METRIC", CertDaysLeftMetric},
		{"RENEW_BEFORE_SECONDS", fmt.Sprint(int(c.certificateValidity().Seconds() / 3))},
		{"RENEW_SPREAD_SECONDS", fmt.Sprint(int(c.certificateValidity().Seconds() / 6))},
		{"RESTART_LEASE", APIServerRestartLease},
		{"RESTART_LEASE_SECONDS", fmt.Sprint(apiServerRestartLeaseSeconds)},
		{"RESTART_LEASE_WAIT_SECONDS", fmt.Sprint(apiServerRestartWaitSeconds)},
		{"STATIC_POD_DIR", StaticPodDir},
		{"KUBELET_CERT_DIR", kubeletCertDir},
		{"SCHEDULER_HEALTH_URL", fmt.Sprintf("https://127.0.0.1:%d/healthz", SchedulerPort)},
		{"CONTROLLER_MANAGER_HEALTH_URL", fmt.Sprintf("https://127.0.0.1:%d/healthz", ControllerManagerPort)},
		{"LOCAL_READY_URL", fmt.Sprintf("https://127.0.0.1:%d%s", APIServerPort, HealthCheckPath)},
		{"LOCAL_API_URL", fmt.Sprintf("https://127.0.0.1:%d", APIServerPort)},
		// Workers' own join tokens (WorkerJoinRBAC).
		{"NODE_TOKEN_URL", "s3://" + p.Assets.Bucket + "/" + NodeTokenPrefix},
		{"WORKER_BOOTSTRAP_GROUP", WorkerBootstrapGroup},
		{"INSTANCE_LABEL", InstanceLabel},
		{"WORKER_TOKEN_TTL_SECONDS", fmt.Sprint(workerTokenTTL.Seconds())},
		{"TOKEN_LIST_SECONDS", fmt.Sprint(tokenListSeconds)},
		{"APPROVER_STATE_DIR", approverStateDir},
		{"JOINING_WORKERS_FILE", approverStateDir + "/joining-workers"},
		{"JOINING_WORKERS_MINUTES", fmt.Sprint(joiningWorkersMinutes)},
		{"WORKER_RBAC", WorkerRBACPath},
		// Points the endpoint at this node while it runs kubeadm init.
		{"INIT_HOSTS_ENTRY", "127.0.0.1 " + c.Endpoint + " #kubeha-kubeadm-init"},
		// Whether the cluster exists is read from etcd, with the API
		// server's client certificate.
		{"ETCD_ENDPOINTS", strings.Join(c.EtcdEndpoints, ",")},
		{"ETCD_CA_FILE", etcdClientFiles.ca},
		{"ETCD_CERT_FILE", etcdClientFiles.cert},
		{"ETCD_KEY_FILE", etcdClientFiles.key},
		{"KUBEADM_CONFIG_ETCD_KEY", kubeadmConfigEtcdKey},
		{"CONTROL_PLANE_LABEL", ControlPlaneLabel},
		{"DRAIN_HOOK", DrainHook},
		{"POOL_TAG", PoolTag},
		{"DRAIN_TIMEOUT_SECONDS", fmt.Sprint(int(workerDrainTimeout.Seconds()))},
	}
	for _, a := range []struct {
		name  string
		asset Asset
	}{{"KUBECTL", p.Assets.Kubectl}, {"HELM_ARCHIVE", p.Assets.Helm}} {
		vars, err := p.Assets.env(a.name, a.asset)
		if err != nil {
			return Node{}, err
		}
		env = append(env, vars...)
	}
	files = append(files, sync.file(), timer.file(), approver.file(), approverTimer.file(), renewal.file(), renewalTimer.file(), drain.file(), drainTimer.file())
	// The timers' scripts (controlPlaneChores) come from the asset bucket.
	chores, err := ControlPlaneChores()
	if err != nil {
		return Node{}, err
	}
	env = append(env, envVar{"CHORES_URL", "s3://" + p.Assets.Bucket + "/" + chores.Key}, envVar{"CHORES_SHA256", chores.SHA256})
	scripts := []string{"control-plane-bootstrap.sh"}
	// The timers the first boot starts once the node serves.
	timers := strings.Join([]string{timer.name, approverTimer.name, renewalTimer.name, drainTimer.name}, ",")
	if c.ApplyAddons {
		apply, applyTimer := addonsUnits()
		timers += "," + applyTimer.name
		env = append(env,
			envVar{"ASSET_BUCKET", p.Assets.Bucket},
			envVar{"ADDON_SET_URL", "s3://" + p.Assets.Bucket + "/" + AddonSetKey},
			envVar{"ADDON_STATUS_URL", "s3://" + p.Assets.Bucket + "/" + AddonStatusKey},
			envVar{"APPLIER_NAME", AddonsApplierName},
			envVar{"LEASE_SECONDS", fmt.Sprint(addonsLeaseSeconds)},
			envVar{"LEASE_RENEW_SECONDS", fmt.Sprint(addonsLeaseRenewSeconds)},
			envVar{"HELM_TIMEOUT", fmt.Sprint(addonsHelmTimeoutSeconds)},
			envVar{"METRIC_NAMESPACE", EtcdSnapshotMetricNamespace},
			envVar{"METRIC_DIMENSIONS", EtcdSnapshotMetricDimension + "=" + c.ClusterName},
			envVar{"APPLIED_METRIC", AddonsAppliedMetric},
			envVar{"FAILED_METRIC", AddonsFailedMetric},
			envVar{"ADDON_STATE_DIR", "/run/kubeha-addons"},
			envVar{"STATUS_REFRESH_SECONDS", fmt.Sprint(addonsStatusRefreshSeconds)},
			envVar{"APPLIED_COUNT_SECONDS", fmt.Sprint(addonsAppliedCountSeconds)},
		)
		files = append(files, apply.file(), applyTimer.file())
	}
	if p.Assets.Holding() {
		follow, followTimer := kubeletFollowUnits()
		timers += "," + followTimer.name
		files = append(files, follow.file(), followTimer.file())
	}
	if c.APITunnel {
		socket, proxy := apiTunnelUnits()
		files = append(files, socket.file(), proxy.file())
		env = append(env, envVar{"API_TUNNEL_SOCKET", socket.name})
	}
	env = append(env, envVar{"TIMERS", timers})
	return kubernetesNode(kubernetesNodeSpec{
		Role: "control-plane", ClusterName: c.ClusterName, BootstrapDeadline: c.BootstrapDeadline, KubernetesVersion: c.KubernetesVersion, Endpoint: c.Endpoint,
		Zone: p.Zone, Region: p.Region, SecretID: p.SecretID, Assets: p.Assets,
		Env: env, Files: files, Scripts: scripts,
	})
}

// APITunnelPort is where a control-plane node forwards to its API server,
// for EC2 Instance Connect Endpoint tunnels; SSH does not run there.
const APITunnelPort = 22

// apiTunnelUnits listen on APITunnelPort and pass each connection to the
// local API server as it is: TLS stays end to end, and the API server
// authenticates the client as through the load balancer.
func apiTunnelUnits() (socket, proxy unit) {
	socket = unit{"kubeha-api-tunnel.socket", fmt.Sprintf(`[Unit]
Description=The API server on port %d, for EC2 Instance Connect Endpoint tunnels (kubeha)

[Socket]
ListenStream=%d

[Install]
WantedBy=sockets.target
`, APITunnelPort, APITunnelPort)}
	proxy = unit{"kubeha-api-tunnel.service", fmt.Sprintf(`[Unit]
Description=Forward EC2 Instance Connect Endpoint tunnels to the API server (kubeha)
Requires=kubeha-api-tunnel.socket
After=kubeha-api-tunnel.socket

[Service]
ExecStart=/usr/lib/systemd/systemd-socket-proxyd 127.0.0.1:%d
DynamicUser=yes
PrivateTmp=yes
`, APIServerPort)}
	return socket, proxy
}

// The add-on applier's inputs and reports: the set's key in the asset
// bucket (the program writes it), the status key (the applier writes it),
// the Lease it holds while it applies, and its CloudWatch metrics in
// EtcdSnapshotMetricNamespace with a Cluster dimension.
const (
	AddonSetKey         = "addons/set.json"
	AddonStatusKey      = "addons/applied.json"
	AddonsApplierName   = "kubeha-addons"
	AddonsAppliedMetric = "AddonSetApplied"
	AddonsFailedMetric  = "AddonSetFailed"
	// A run renews the Lease every addonsLeaseRenewSeconds while it lasts,
	// however long Helm takes (each of its waits up to
	// addonsHelmTimeoutSeconds); a node lost mid-run holds it for at most
	// addonsLeaseSeconds.
	addonsLeaseSeconds       = 240
	addonsLeaseRenewSeconds  = 40
	addonsHelmTimeoutSeconds = 600
	// AddonsIntervalSeconds is how often each node's timer runs the
	// applier: a changed set reaches the cluster within about this.
	AddonsIntervalSeconds = 60
	// A run that applied the set records an unchanged revision again
	// after addonsStatusRefreshSeconds, and counts AddonsAppliedMetric at
	// most every addonsAppliedCountSeconds: under the alarm's 5-minute
	// period, so each period still gets one.
	addonsStatusRefreshSeconds = 600
	addonsAppliedCountSeconds  = 240
)

// addonsUnits run addons-apply.sh every AddonsIntervalSeconds.
func addonsUnits() (service, timer unit) {
	return timedScript{name: "kubeha-addons", does: "Apply the cluster's add-on set", script: "addons-apply.sh",
		envFile: NodeEnvPath, after: "kubelet.service",
		// Helm keeps its cache and config under HOME.
		environment: []string{"HOME=/var/lib/kubeha"},
		schedule:    []string{"OnActiveSec=5", fmt.Sprintf("OnUnitInactiveSec=%ds", AddonsIntervalSeconds), "RandomizedDelaySec=5"}}.units()
}

// KubeletFollowUnit runs kubelet-follow.sh on a control-plane node that
// holds its kubelet at an older release, every kubeletFollowSeconds: its
// kubelet moves to the node's own release within about that once the
// version record says every API server runs it.
const (
	KubeletFollowUnit    = "kubeha-kubelet-follow.service"
	kubeletFollowSeconds = 15
)

func kubeletFollowUnits() (service, timer unit) {
	return everySeconds(KubeletFollowUnit, "Run this node's own kubelet release once every API server runs it",
		"kubelet-follow.sh", NodeEnvPath, "kubelet.service", kubeletFollowSeconds)
}

// WorkerDrainUnit runs control-plane-worker-drain.sh every
// workerDrainIntervalSeconds: a worker leaving its group is drained within
// about that, each run giving one drain workerDrainTimeout. Each run asks
// Auto Scaling (an AWS CLI start), and the hook holds a worker 10 minutes.
const (
	WorkerDrainUnit            = "kubeha-worker-drain.service"
	workerDrainIntervalSeconds = 30
	workerDrainTimeout         = 3 * time.Minute
)

func workerDrainUnits() (service, timer unit) {
	return everySeconds(WorkerDrainUnit, "Drain each worker leaving its group before it goes",
		"control-plane-worker-drain.sh", NodeEnvPath, "kubelet.service", workerDrainIntervalSeconds)
}

// TokenSyncUnit runs control-plane-token-sync.sh; its timer every 10
// minutes.
const TokenSyncUnit = "kubeha-token-sync.service"

// tokenSyncUnits run control-plane-token-sync.sh every 10 minutes.
func tokenSyncUnits() (service, timer unit) {
	return timedScript{name: strings.TrimSuffix(TokenSyncUnit, ".service"), does: "Keep the kubeadm join token equal to the cluster secret's",
		script: "control-plane-token-sync.sh", envFile: NodeEnvPath, after: "kubelet.service",
		schedule: []string{"OnBootSec=2min", "OnUnitActiveSec=10min", "RandomizedDelaySec=60"}}.units()
}

// CSRApproverUnit runs control-plane-csr-approver.sh; its timer every
// csrApproverIntervalSeconds, so that a kubelet serves with the cluster's
// certificate within about that of asking.
const (
	CSRApproverUnit            = "kubeha-csr-approver.service"
	csrApproverIntervalSeconds = 10
	// tokenListSeconds is how often the approver lists the join tokens
	// workers hand over while some are launching: a worker's kubeadm join
	// retries until its token is made, and each listing starts the AWS CLI.
	tokenListSeconds = 20
	// joiningWorkersMinutes: a list of launching workers the drainer has
	// not renewed for this long is not trusted to be empty.
	joiningWorkersMinutes = 5
	// approverStateDir holds the approver's state, and the drainer's list
	// of launching workers it reads.
	approverStateDir = "/run/kubeha-csr-approver"
)

func csrApproverUnits() (service, timer unit) {
	return timedScript{name: strings.TrimSuffix(CSRApproverUnit, ".service"), does: "Approve each kubelet's serving certificate if it is its own node's",
		script: "control-plane-csr-approver.sh", envFile: NodeEnvPath, after: "kubelet.service",
		schedule: []string{"OnActiveSec=5", fmt.Sprintf("OnUnitInactiveSec=%ds", csrApproverIntervalSeconds)}}.units()
}

// CertRenewalUnit runs control-plane-cert-renewal.sh: a minute after the
// node serves, then every twentieth of the certificates' validity (at
// least a minute, at most 12 hours), so a node checks many times before
// its renewal point. Nodes renew apart by their own share of
// RENEW_SPREAD_SECONDS, not by a random delay.
const CertRenewalUnit = "kubeha-cert-renewal.service"

// APIServerRestartLease is the kube-system Lease a control-plane node
// holds while it restarts its API server after a renewal, so that one
// does at a time: for apiServerRestartLeaseSeconds, more than a restart
// (a 120 s stop and a 300 s start). A node waits for it at most
// apiServerRestartWaitSeconds, by when one a lost node held has expired.
const (
	APIServerRestartLease        = "kubeha-api-server-restart"
	apiServerRestartLeaseSeconds = 600
	apiServerRestartWaitSeconds  = 900
)

// certificateValidity is CertificateValidity, or kubeadm's default.
func (c ControlPlane) certificateValidity() time.Duration {
	if c.CertificateValidity == 0 {
		return 365 * 24 * time.Hour
	}
	return c.CertificateValidity
}

func (c ControlPlane) certRenewalUnits() (service, timer unit) {
	every := min(max(c.certificateValidity()/20, time.Minute), 12*time.Hour)
	return timedScript{name: strings.TrimSuffix(CertRenewalUnit, ".service"), does: "Renew this node's kubeadm certificates before they expire",
		script: "control-plane-cert-renewal.sh", envFile: NodeEnvPath, after: "kubelet.service",
		schedule: []string{"OnActiveSec=60", "OnUnitInactiveSec=" + seconds(every)}}.units()
}
