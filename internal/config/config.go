// Package config is kubeha's typed stack configuration: the struct tree the
// stack files decode into, its defaults, and its validation. It holds no
// Pulumi types, so the stack program, the offline plan and the tests all read
// a stack file the same way.
package config

// Namespace is the Pulumi config namespace of every kubeha key.
const Namespace = "kubeha"

// RegionKey is the AWS provider's region key, which kubeha reads too.
const RegionKey = "aws:region"

// Environments kubeha knows. prod gets the strictest validation.
var Environments = []string{"dev", "staging", "prod"}

// SupportedKubernetesMinors are the minors whose node packages and kubeadm
// rendering kubeha tests.
var SupportedKubernetesMinors = []string{"1.36"}

// Stack is one stack's configuration. Field tags: json is the config key,
// doc its one-line description for the README reference, required marks a
// key with no default.
type Stack struct {
	Region             string       `json:"-"`
	Environment        string       `json:"environment" required:"true" doc:"Environment kind: dev, staging or prod. prod enforces per-zone NAT, deletion protection and no 0.0.0.0/0 API allowlist."`
	ClusterName        string       `json:"clusterName" required:"true" doc:"Cluster name: lowercase letters, digits and '-', 3 to 28 characters. Prefixes every resource and forms the kubernetes.io/cluster/<name> tag."`
	Zones              []string     `json:"zones" required:"true" doc:"Availability zones of aws:region, 3 to 6, each holding one etcd member, one control-plane node and one ASG per worker pool."`
	KubernetesVersion  string       `json:"kubernetesVersion" doc:"Kubernetes version as vMAJOR.MINOR.PATCH, on a supported minor."`
	DeletionProtection bool         `json:"deletionProtection" doc:"Protect stateful and foundational resources (VPC) from 'pulumi destroy'. Required in prod."`
	Network            Network      `json:"network"`
	API                API          `json:"api"`
	Etcd               Etcd         `json:"etcd"`
	ControlPlane       ControlPlane `json:"controlPlane"`
	Workers            []WorkerPool `json:"workers" doc:"Worker pools. Each pool becomes one auto-scaling group per zone."`
	Addons             Addons       `json:"addons"`
}

// Network is the VPC layout, or an existing VPC to use instead.
type Network struct {
	VpcCidr                  string   `json:"vpcCidr" doc:"VPC CIDR, RFC 1918, prefix /16 to /22. Carved into one private and one public subnet per zone."`
	PodCidr                  string   `json:"podCidr" doc:"Pod network CIDR (private or 100.64.0.0/10); must not overlap the VPC or service CIDR."`
	ServiceCidr              string   `json:"serviceCidr" doc:"Service network CIDR (private or 100.64.0.0/10); must not overlap the VPC or pod CIDR."`
	SharedNatGateway         bool     `json:"sharedNatGateway" doc:"Use one NAT gateway for all zones (cheaper, NOT HA: its zone is a single point of egress failure). Rejected in prod."`
	NodePortCidrs            []string `json:"nodePortCidrs" doc:"CIDRs besides the VPC that may reach the workers' NodePorts (30000-32767). Empty by default; 0.0.0.0/0 is rejected in prod."`
	ExistingVpcID            string   `json:"existingVpcId" doc:"Bring your own VPC: its ID. Needs existingPrivateSubnetIds (and existingPublicSubnetIds for a public API), one per zone in zone order."`
	ExistingPrivateSubnetIDs []string `json:"existingPrivateSubnetIds" doc:"Bring your own VPC: private subnet IDs, one per zone, in the order of zones."`
	ExistingPublicSubnetIDs  []string `json:"existingPublicSubnetIds" doc:"Bring your own VPC: public subnet IDs, one per zone, in the order of zones."`
}

// API is how the Kubernetes API endpoint is exposed.
type API struct {
	Public                     bool        `json:"public" doc:"Internet-facing load balancer, reachable only from allowedCidrs. false means an internal load balancer."`
	AllowedCidrs               []string    `json:"allowedCidrs" doc:"CIDRs allowed to reach the API on 6443, besides the VPC (and its NAT addresses when public). Required when public; 0.0.0.0/0 is rejected in prod."`
	HealthCheck                HealthCheck `json:"healthCheck"`
	DeregistrationDelaySeconds int         `json:"deregistrationDelaySeconds" doc:"Seconds a removed API server keeps its open connections, 0 to 3600."`
	DNSName                    string      `json:"dnsName" doc:"Optional DNS name for the API (an alias record to the load balancer); needs hostedZoneId."`
	HostedZoneID               string      `json:"hostedZoneId" doc:"Route53 hosted zone ID that holds dnsName."`
}

// HealthCheck is how the load balancer decides an API server may serve:
// HTTPS GET /readyz, which fails when the API server loses etcd.
type HealthCheck struct {
	IntervalSeconds    int `json:"intervalSeconds" doc:"Seconds between /readyz checks of each API server, 5 to 300."`
	TimeoutSeconds     int `json:"timeoutSeconds" doc:"Seconds a check may take, 2 to 120 and less than the interval."`
	HealthyThreshold   int `json:"healthyThreshold" doc:"Passed checks before an API server is put in rotation, 2 to 10."`
	UnhealthyThreshold int `json:"unhealthyThreshold" doc:"Failed checks before an API server is taken out of rotation, 2 to 10. Interval x this is the detection time."`
}

// Etcd is the external etcd cluster.
type Etcd struct {
	Members               int    `json:"members" doc:"etcd members, 3 or 5, spread round-robin over the zones."`
	InstanceType          string `json:"instanceType" doc:"EC2 instance type of an etcd member."`
	VolumeSizeGiB         int    `json:"volumeSizeGiB" doc:"Size of each member's gp3 data volume, 8 to 1024 GiB."`
	BackupIntervalMinutes int    `json:"backupIntervalMinutes" doc:"Minutes between snapshots to S3, 5 to 1440."`
	BackupRetentionDays   int    `json:"backupRetentionDays" doc:"Days a snapshot is kept in S3, 1 to 3650."`
}

// ControlPlane is the API server, scheduler and controller-manager nodes.
type ControlPlane struct {
	InstanceType   string         `json:"instanceType" doc:"EC2 instance type of a control-plane node."`
	LeaderElection LeaderElection `json:"leaderElection"`
}

// LeaderElection is the Lease timing of kube-scheduler and
// kube-controller-manager: one replica of each acts, another takes over
// within about leaseDurationSeconds when it dies.
type LeaderElection struct {
	LeaseDurationSeconds int `json:"leaseDurationSeconds" doc:"Seconds a Lease holder is trusted without renewing; takeover time after a node dies. More than renewDeadlineSeconds."`
	RenewDeadlineSeconds int `json:"renewDeadlineSeconds" doc:"Seconds the holder keeps retrying to renew before it steps down. More than retryPeriodSeconds."`
	RetryPeriodSeconds   int `json:"retryPeriodSeconds" doc:"Seconds between Lease acquire and renew attempts, 1 or more."`
}

// Addons are what kubeha installs into the cluster, each through its
// pinned upstream Helm chart, and how the cluster is monitored.
type Addons struct {
	Monitoring             string `json:"monitoring" doc:"prometheus (kube-prometheus-stack in the cluster, scraping API servers, schedulers, controller-managers and etcd, with kubeha's alert rules) or cloudwatch (CloudWatch agent and Container Insights). CloudWatch alarms on the API load balancer, every auto-scaling group and etcd backups are made in both modes."`
	AlarmEmail             string `json:"alarmEmail" doc:"Optional e-mail address subscribed to the alarms' SNS topic."`
	CNI                    bool   `json:"cni" doc:"Install Cilium (VXLAN overlay). Turn off only to install another CNI: nodes stay NotReady without one."`
	CloudControllerManager bool   `json:"cloudControllerManager" doc:"Install the AWS cloud-controller-manager of the cluster's minor: zone labels, providerID, Service load balancers. Nodes stay tainted uninitialized without it."`
	Storage                bool   `json:"storage" doc:"Install the EBS CSI driver, the snapshot controller and CRDs, the default StorageClass (gp3, encrypted, WaitForFirstConsumer, expandable) and a VolumeSnapshotClass."`
	CoreDNS                bool   `json:"coreDNS" doc:"Install CoreDNS from its chart, one replica per zone with a PodDisruptionBudget, instead of kubeadm's."`
	MetricsServer          bool   `json:"metricsServer" doc:"Install metrics-server (two replicas, on the control plane) for kubectl top and autoscaling."`
	ClusterAutoscaler      bool   `json:"clusterAutoscaler" doc:"Install cluster-autoscaler, discovering the worker groups by tag and balancing each pool's zones."`
}

// WorkerPool is a set of identical workers, one auto-scaling group per zone.
type WorkerPool struct {
	Name           string   `json:"name" doc:"Pool name: lowercase letters, digits and '-', unique in the stack."`
	InstanceTypes  []string `json:"instanceTypes" doc:"EC2 instance types of the pool's workers, 1 to 10. The first is the launch template's; more than one, or spotPercent above 0, makes a mixed-instances group."`
	OnDemandBase   int      `json:"onDemandBase" doc:"Workers in each zone's group that are always on-demand, before spotPercent applies."`
	SpotPercent    int      `json:"spotPercent" doc:"Percent of the workers above onDemandBase that are spot, 0 to 100. 0 means all on-demand."`
	MinPerZone     int      `json:"minPerZone" doc:"Minimum workers in each zone's group."`
	DesiredPerZone int      `json:"desiredPerZone" doc:"Workers each zone's group starts with, between min and max."`
	MaxPerZone     int      `json:"maxPerZone" doc:"Maximum workers in each zone's group, at most 100."`
	Labels         []string `json:"labels" doc:"Node labels as key=value, set when a worker registers. The kubernetes.io and k8s.io namespaces are refused, except node.kubernetes.io and kubelet.kubernetes.io."`
	Taints         []string `json:"taints" doc:"Node taints as key=value:Effect or key:Effect, Effect being NoSchedule, PreferNoSchedule or NoExecute."`
}

// Default is the configuration a stack starts from before its file is
// applied. Every default is the HA and secure choice.
func Default() Stack {
	return Stack{
		KubernetesVersion:  "v1.36.3",
		DeletionProtection: true,
		Network: Network{
			VpcCidr:     "10.0.0.0/16",
			PodCidr:     "10.244.0.0/16",
			ServiceCidr: "10.96.0.0/12",
		},
		Etcd: Etcd{
			Members:               3,
			InstanceType:          "m6i.large",
			VolumeSizeGiB:         20,
			BackupIntervalMinutes: 15,
			BackupRetentionDays:   30,
		},
		API: API{
			HealthCheck:                HealthCheck{IntervalSeconds: 5, TimeoutSeconds: 3, HealthyThreshold: 2, UnhealthyThreshold: 2},
			DeregistrationDelaySeconds: 15,
		},
		ControlPlane: ControlPlane{
			InstanceType: "m6i.large",
			// Kubernetes' own defaults: a dead holder is replaced within ~15 s.
			LeaderElection: LeaderElection{LeaseDurationSeconds: 15, RenewDeadlineSeconds: 10, RetryPeriodSeconds: 2},
		},
		Workers: []WorkerPool{DefaultWorkerPool()},
		Addons: Addons{Monitoring: "prometheus", CNI: true, CloudControllerManager: true, Storage: true,
			CoreDNS: true, MetricsServer: true, ClusterAutoscaler: true},
	}
}

// DefaultWorkerPool is what every pool in the workers list starts from.
func DefaultWorkerPool() WorkerPool {
	return WorkerPool{
		Name:           "general",
		InstanceTypes:  []string{"m6i.large"},
		MinPerZone:     1,
		DesiredPerZone: 1,
		MaxPerZone:     5,
	}
}
