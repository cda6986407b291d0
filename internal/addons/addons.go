// Package addons renders what kubeha installs into a running cluster: the
// pinned Helm charts, their values from typed Go, and the few manifests that
// are not charts. It holds no Pulumi types, so the golden tests and the
// schema check read exactly what the Addons component installs.
package addons

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// Chart is one upstream Helm chart at a pinned version.
type Chart struct {
	Name    string
	Repo    string
	Version string
	// Namespace the release goes into.
	Namespace string
	// Digest is the chart archive's SHA-256 and URL where the archive is,
	// as the repository's index publishes them (a copy of each index is
	// in testdata/chart-index).
	Digest, URL string
}

// The pinned charts: this block is the one place their versions live.
// Each is checked against its repository's index by TestChartPinsArePublished.
var (
	Cilium = Chart{"cilium", "https://helm.cilium.io", "1.20.0", "kube-system", "c5f013912360d1a334f44ef25f36da59ba3414cdb48f466ee12d0c4fdff27883",
		"https://helm.cilium.io/cilium-1.20.0.tgz"}
	CloudControllerManager = Chart{"aws-cloud-controller-manager", "https://kubernetes.github.io/cloud-provider-aws", "0.0.10", "kube-system", "3a006837a5fb38458739b7928ea57140513150b7ce737cf4eb04bdd7961b9001",
		"https://github.com/kubernetes/cloud-provider-aws/releases/download/helm-chart-aws-cloud-controller-manager-0.0.10/aws-cloud-controller-manager-0.0.10.tgz"}
	EBSCSIDriver = Chart{"aws-ebs-csi-driver", "https://kubernetes-sigs.github.io/aws-ebs-csi-driver", "2.53.0", "kube-system", "40e897f088027a97540f3670d39fe2418f2734df400a78aa2c604209dad82ebe",
		"https://github.com/kubernetes-sigs/aws-ebs-csi-driver/releases/download/helm-chart-aws-ebs-csi-driver-2.53.0/aws-ebs-csi-driver-2.53.0.tgz"}
	SnapshotController = Chart{"snapshot-controller", "https://piraeus.io/helm-charts", "5.0.4", "kube-system", "b310dcd54691fe0bc785eecc16d510af3d5e83f310a86885372d16fad3d95101",
		"https://github.com/piraeusdatastore/helm-charts/releases/download/snapshot-controller-5.0.4/snapshot-controller-5.0.4.tgz"}
	CoreDNS = Chart{"coredns", "https://coredns.github.io/helm", "1.46.2", "kube-system", "4c12217e06b5bf8cddf6250df55852832fbd5e0e4c89520fd10a96d0c4867b2b",
		"https://github.com/coredns/helm/releases/download/coredns-1.46.2/coredns-1.46.2.tgz"}
	MetricsServer = Chart{"metrics-server", "https://kubernetes-sigs.github.io/metrics-server", "3.13.1", "kube-system", "084e6edb680cf4e2acc30bd496568c53fdf663cbacf6e17876b25785c35b7a13",
		"https://github.com/kubernetes-sigs/metrics-server/releases/download/metrics-server-helm-chart-3.13.1/metrics-server-3.13.1.tgz"}
	ClusterAutoscaler = Chart{"cluster-autoscaler", "https://kubernetes.github.io/autoscaler", "9.59.0", "kube-system", "90276dafe65cf5d4328ef8313baf6cfb9d130683e0c9f3c28a03b4d8a9ed8f6e",
		"https://github.com/kubernetes/autoscaler/releases/download/cluster-autoscaler-chart-9.59.0/cluster-autoscaler-9.59.0.tgz"}
	KubePrometheusStack = Chart{"kube-prometheus-stack", "https://prometheus-community.github.io/helm-charts", "81.4.3", "monitoring", "0543d9257d025157b2626342384d7d17bcf5fbfcd7837aec2a176944cd2d4cb4",
		"https://github.com/prometheus-community/helm-charts/releases/download/kube-prometheus-stack-81.4.3/kube-prometheus-stack-81.4.3.tgz"}
	CloudWatchObservability = Chart{"amazon-cloudwatch-observability", "https://aws-observability.github.io/helm-charts", "6.2.0", "amazon-cloudwatch", "d36ffec44804252b56503bcb458dac196f1d827506e93e238f0fdaca20377173",
		"https://github.com/aws-observability/helm-charts/releases/download/amazon-cloudwatch-observability-6.2.0/amazon-cloudwatch-observability-6.2.0.tgz"}
	// Flannel publishes its chart's index from its release job only (no
	// branch keeps it), so no digest is on record: nodes check the one S3
	// records at copy (testdata/chart-records.yaml).
	Flannel = Chart{"flannel", "https://flannel-io.github.io/flannel", "v0.28.9", "kube-flannel", "",
		"https://github.com/flannel-io/flannel/releases/download/v0.28.9/flannel.tgz"}
	PodIdentityWebhook = Chart{"amazon-eks-pod-identity-webhook", "https://jkroepke.github.io/helm-charts", "2.6.5", "kube-system", "6a9818504330ce090d56e4925e4dfec7d0214a4cb5ea96c8f07d3844e5bff904",
		"https://github.com/jkroepke/helm-charts/releases/download/amazon-eks-pod-identity-webhook-2.6.5/amazon-eks-pod-identity-webhook-2.6.5.tgz"}
)

// Charts lists every pinned chart.
var Charts = []Chart{Cilium, CloudControllerManager, EBSCSIDriver, SnapshotController, CoreDNS, MetricsServer,
	ClusterAutoscaler, KubePrometheusStack, CloudWatchObservability, PodIdentityWebhook, Flannel}

// CNI plugins a stack chooses from.
const (
	CNICilium  = "cilium"
	CNIFlannel = "flannel"
)

// Cluster is what the rendering needs to know about the cluster.
type Cluster struct {
	Name              string
	Region            string
	KubernetesVersion string // vMAJOR.MINOR.PATCH
	// APIHost is the load balancer's DNS name; APIPort its port.
	APIHost     string
	PodCIDR     string
	ServiceCIDR string
	// EtcdMembers are the members' DNS names; Prometheus scrapes them on
	// EtcdMetricsPort with the client certificate in EtcdClientSecret.
	EtcdMembers     []string
	EtcdMetricsPort int
	// BackupIntervalMinutes is how often etcd is snapshotted to S3.
	BackupIntervalMinutes int
	// Prometheus' identity on the etcd members' metrics port (PEM).
	EtcdCACert, EtcdClientCert, EtcdClientKey string
	// Roles are the IAM roles, by chart name, that the chart's AWS-facing
	// pods assume with their service account's token (ServiceAccounts).
	Roles map[string]string
	// The pod identity webhook's serving certificate and key, and the CA
	// kube-apiserver checks it with (PEM).
	WebhookCACert, WebhookCert, WebhookKey string
}

// ServiceAccounts are the service accounts (namespace:name) whose tokens
// assume the add-ons' IAM roles, by chart name: the chart's own name for
// it, or the one kubeha sets.
var ServiceAccounts = map[string]string{
	CloudControllerManager.Name: "kube-system:cloud-controller-manager",
	EBSCSIDriver.Name:           "kube-system:ebs-csi-controller-sa",
	ClusterAutoscaler.Name:      "kube-system:" + clusterAutoscalerAccount,
	// The CloudWatch agent and Fluent Bit share the chart's account,
	// named after the agent.
	CloudWatchObservability.Name: CloudWatchObservability.Namespace + ":cloudwatch-agent",
}

// clusterAutoscalerAccount is set: the chart would name it after the
// release.
const clusterAutoscalerAccount = "cluster-autoscaler"

// webIdentity is what a pod needs to assume role with its service
// account's token, as the AWS SDKs read it (the pod identity webhook's
// settings, set by each chart's values instead): the role and a token
// for STS's audience, in env and a projected volume.
type webIdentity struct {
	env     map[string]string
	volumes []any
	mounts  []any
}

const webIdentityTokenDir = "/var/run/secrets/eks.amazonaws.com/serviceaccount"

func webIdentityFor(role string) webIdentity {
	return webIdentity{
		env: map[string]string{"AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": webIdentityTokenDir + "/token"},
		volumes: []any{map[string]any{"name": "aws-iam-token", "projected": map[string]any{"sources": []any{
			map[string]any{"serviceAccountToken": map[string]any{"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}},
		}}}},
		mounts: []any{map[string]any{"name": "aws-iam-token", "mountPath": webIdentityTokenDir, "readOnly": true}},
	}
}

// envList is env as a container's list, sorted by name.
func (w webIdentity) envList() []any {
	var list []any
	for _, k := range slices.Sorted(maps.Keys(w.env)) {
		list = append(list, map[string]any{"name": k, "value": w.env[k]})
	}
	return list
}

// APIPort is the API server's port behind the load balancer.
const APIPort = 6443

// EtcdClientSecret is the Secret, in the monitoring namespace, that holds
// the etcd CA and Prometheus' client certificate.
const EtcdClientSecret = "etcd-client"

// StorageClassName is the default StorageClass.
const StorageClassName = "gp3"

// Pods of these add-ons run on the control-plane nodes, away from
// workloads: they act on AWS with roles of their own (Cluster.Roles), and
// the CCM and cluster-autoscaler on the host network.
var (
	onControlPlane          = map[string]any{"node-role.kubernetes.io/control-plane": ""}
	controlPlaneTolerations = []any{
		map[string]any{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
		// The cloud-controller-manager is what removes this taint.
		map[string]any{"key": "node.cloudprovider.kubernetes.io/uninitialized", "operator": "Exists", "effect": "NoSchedule"},
		map[string]any{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"},
	}
)

// spreadOverZones is a topology spread over zones, then nodes, for the pods
// with these labels. ScheduleAnyway, so a lost zone never leaves a replica
// pending.
// onePerZone is spreadOverZones with the zone as a rule, not a
// preference: CoreDNS installs before the workers join, one zone at a time,
// and a preference would put every replica on the first worker for good
// (nothing moves a running pod). Control-plane nodes make every zone a
// domain from the start, so each replica waits for a worker in a zone of
// its own; while a zone is lost, its replica waits for it too.
func onePerZone(labels map[string]any) []any {
	spread := spreadOverZones(labels)
	spread[0].(map[string]any)["whenUnsatisfiable"] = "DoNotSchedule"
	return spread
}

func spreadOverZones(labels map[string]any) []any {
	var out []any
	for _, key := range []string{"topology.kubernetes.io/zone", "kubernetes.io/hostname"} {
		out = append(out, map[string]any{
			"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
			"labelSelector": map[string]any{"matchLabels": labels},
		})
	}
	return out
}

// FlannelValues: VXLAN on UDP 8472, the port the security groups open
// between nodes for either CNI, each node's pods in the /24 of the pod
// CIDR that kube-controller-manager gives its Node (kubeadm's podSubnet),
// traffic leaving the pod network masqueraded (the chart's --ip-masq).
// Its DaemonSet tolerates every taint, so nodes become Ready before the
// cloud-controller-manager initializes them.
func FlannelValues(c Cluster) map[string]any {
	return map[string]any{
		"podCidr": c.PodCIDR,
		"flannel": map[string]any{"backend": "vxlan", "backendPort": CNIOverlayPort},
	}
}

// CNIOverlayPort is the UDP port of either CNI's VXLAN overlay.
const CNIOverlayPort = 8472

// CiliumValues: VXLAN overlay (UDP 8472, opened between nodes), pod
// addresses from the cluster's pod CIDR, and kube-proxy kept as kubeadm
// installs it. Cilium reaches the API through the load balancer, because
// the kubernetes Service needs a working CNI first.
func CiliumValues(c Cluster) map[string]any {
	return map[string]any{
		"k8sServiceHost":       c.APIHost,
		"k8sServicePort":       APIPort,
		"kubeProxyReplacement": "false",
		"routingMode":          "tunnel",
		"tunnelProtocol":       "vxlan",
		"ipam": map[string]any{
			"mode": "cluster-pool",
			"operator": map[string]any{
				"clusterPoolIPv4PodCIDRList": []any{c.PodCIDR},
				"clusterPoolIPv4MaskSize":    24,
			},
		},
		"operator": map[string]any{
			"replicas":                  2,
			"topologySpreadConstraints": spreadOverZones(map[string]any{"io.cilium/app": "operator"}),
		},
	}
}

// CloudControllerManagerValues: the AWS CCM release of the cluster's minor,
// on control-plane nodes, host network (it reads its instance from IMDS,
// and reaches the API before the CNI), leader-elected, acting on AWS with
// its own role. It labels nodes with their zone and sets providerID.
func CloudControllerManagerValues(c Cluster) (map[string]any, error) {
	// The charts' image tags lag behind; each minor's is pinned with its
	// release, so the tag follows the cluster's minor.
	release, err := bootstrap.ReleaseOf(c.KubernetesVersion)
	if err != nil {
		return nil, err
	}
	tag := release.CloudControllerManager
	values := map[string]any{
		"image":          map[string]any{"tag": tag},
		"hostNetworking": true,
		"nodeSelector":   onControlPlane,
		"tolerations":    controlPlaneTolerations,
		"args": []any{
			"--v=2", "--cloud-provider=aws", "--cluster-name=" + c.Name,
			// The CNI's overlay routes pods; VPC route tables stay untouched.
			"--configure-cloud-routes=false",
			"--leader-elect=true",
		},
	}
	if role := c.Roles[CloudControllerManager.Name]; role != "" {
		w := webIdentityFor(role)
		values["env"], values["extraVolumes"], values["extraVolumeMounts"] = w.envList(), w.volumes, w.mounts
	}
	return values, nil
}

// EBSCSIDriverValues: the controller on control-plane nodes, whose own role
// may create and attach volumes tagged as this cluster's; the node plugin
// on every node (it needs no AWS credentials); the snapshotter sidecar
// when snapshots are installed.
func EBSCSIDriverValues(c Cluster, snapshots bool) map[string]any {
	values := map[string]any{
		"controller": map[string]any{
			"replicaCount": 2,
			"region":       c.Region,
			"nodeSelector": onControlPlane,
			"tolerations":  controlPlaneTolerations,
			// Tags every volume kubernetes.io/cluster/<name>: owned, which
			// the node role's volume policy requires. The same key set
			// through extraVolumeTags stops the driver at start: the
			// kubernetes.io prefix is reserved there.
			"k8sTagClusterId": c.Name,
			"topologySpreadConstraints": spreadOverZones(map[string]any{
				"app": "ebs-csi-controller",
			}),
		},
		"node": map[string]any{"tolerateAllTaints": true},
	}
	if role := c.Roles[EBSCSIDriver.Name]; role != "" {
		// Only its ebs-plugin container acts on AWS; region is set, so it
		// never asks IMDS.
		w := webIdentityFor(role)
		controller := values["controller"].(map[string]any)
		controller["env"], controller["volumes"], controller["volumeMounts"] = w.envList(), w.volumes, w.mounts
	}
	if snapshots {
		// The snapshotter sidecar needs the snapshot CRDs, which the
		// snapshot controller's chart installs first.
		values["sidecars"] = map[string]any{"snapshotter": map[string]any{"forceEnable": true}}
	}
	return values
}

// SnapshotControllerValues: the VolumeSnapshot CRDs and their controller.
func SnapshotControllerValues() map[string]any {
	return map[string]any{
		"controller": map[string]any{
			"replicaCount": 2,
			"args":         map[string]any{"leaderElection": true},
		},
	}
}

// CoreDNSValues replaces kubeadm's CoreDNS (kubeadm skips its addon/coredns
// phase): same Service name and address, one replica per zone, spread.
func CoreDNSValues(c Cluster) (map[string]any, error) {
	dns, err := ClusterDNS(c.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"replicaCount":        3,
		"k8sAppLabelOverride": "kube-dns",
		"isClusterService":    true,
		"priorityClassName":   "system-cluster-critical",
		"service":             map[string]any{"name": "kube-dns", "clusterIP": dns},
		// kubeha's own PodDisruptionBudget (CoreDNSDisruptionBudget).
		"podDisruptionBudget":       map[string]any{},
		"topologySpreadConstraints": onePerZone(CoreDNSLabels),
		// The ready plugin answers only once CoreDNS serves, so the chart's
		// 30 s first delay only keeps a moved pod out of its Service and
		// its disruption budget (a drain waits on it), as kubeadm's own
		// CoreDNS does not.
		"readinessProbe": map[string]any{"initialDelaySeconds": 0},
	}, nil
}

// CoreDNSLabels select the CoreDNS pods.
var CoreDNSLabels = map[string]any{"k8s-app": "kube-dns", "app.kubernetes.io/instance": "coredns"}

// ClusterDNS is the address kubelets send DNS to, as kubeadm computes it:
// the tenth address of the service CIDR.
func ClusterDNS(serviceCIDR string) (string, error) {
	p, err := netip.ParsePrefix(serviceCIDR)
	if err != nil || !p.Addr().Is4() {
		return "", fmt.Errorf("service CIDR %q is not an IPv4 CIDR", serviceCIDR)
	}
	a := p.Masked().Addr().As4()
	a[3] += 10
	return netip.AddrFrom4(a).String(), nil
}

// MetricsServerValues: two replicas with a disruption budget, on the
// control-plane nodes, the only ones kubelets admit. Kubelets serve with
// certificates from the cluster CA, so metrics-server verifies them with
// the CA its service account holds (no --kubelet-insecure-tls).
func MetricsServerValues() map[string]any {
	return map[string]any{
		"replicas":            2,
		"podDisruptionBudget": map[string]any{"enabled": true, "minAvailable": 1},
		// Kubelets admit only the control plane (port 10250).
		"nodeSelector":              onControlPlane,
		"tolerations":               controlPlaneTolerations,
		"topologySpreadConstraints": spreadOverZones(map[string]any{"app.kubernetes.io/name": "metrics-server"}),
	}
}

// AutoscalerEnabledTag and AutoscalerClusterTag are the ASG tags
// cluster-autoscaler's auto-discovery looks for; worker groups carry both.
const AutoscalerEnabledTag = "k8s.io/cluster-autoscaler/enabled"

func AutoscalerClusterTag(cluster string) string { return "k8s.io/cluster-autoscaler/" + cluster }

// AutoscalerDiscoveryTags are both.
func AutoscalerDiscoveryTags(cluster string) []string {
	return []string{AutoscalerEnabledTag, AutoscalerClusterTag(cluster)}
}

// ClusterAutoscalerValues: auto-discovery of the worker groups by tag,
// balancing the per-zone groups of a pool, on control-plane nodes.
func ClusterAutoscalerValues(c Cluster) (map[string]any, error) {
	release, err := bootstrap.ReleaseOf(c.KubernetesVersion)
	if err != nil {
		return nil, err
	}
	tag := release.ClusterAutoscaler
	var tags []any
	for _, t := range AutoscalerDiscoveryTags(c.Name) {
		tags = append(tags, t)
	}
	values := map[string]any{
		"cloudProvider": "aws",
		"awsRegion":     c.Region,
		"image":         map[string]any{"tag": tag},
		"autoDiscovery": map[string]any{"clusterName": c.Name, "tags": tags},
		"extraArgs": map[string]any{
			"balance-similar-node-groups":   true,
			"expander":                      "least-waste",
			"skip-nodes-with-local-storage": false,
		},
		"replicaCount": 2,
		"hostNetwork":  true,
		"dnsPolicy":    "ClusterFirstWithHostNet",
		"nodeSelector": onControlPlane,
		"tolerations":  controlPlaneTolerations,
		"rbac":         map[string]any{"serviceAccount": map[string]any{"name": clusterAutoscalerAccount}},
	}
	if role := c.Roles[ClusterAutoscaler.Name]; role != "" {
		w := webIdentityFor(role)
		env := map[string]any{}
		for k, v := range w.env {
			env[k] = v
		}
		values["extraEnv"], values["extraVolumes"], values["extraVolumeMounts"] = env, w.volumes, w.mounts
	}
	return values, nil
}

// KubePrometheusStackValues: Prometheus scrapes the API servers (the
// chart's default), the schedulers and controller-managers on every
// control-plane node over HTTPS, and every etcd member's TLS metrics port
// with a client certificate. kube-proxy's metrics stay on loopback, so its
// scrape is off.
//
// With persistent, Prometheus keeps its data on a gp3 volume per replica;
// without (no EBS CSI driver), in the pod.
func KubePrometheusStackValues(c Cluster, persistent bool) map[string]any {
	secrets := "/etc/prometheus/secrets/" + EtcdClientSecret + "/"
	var targets []any
	for _, m := range c.EtcdMembers {
		targets = append(targets, fmt.Sprintf("%s:%d", m, c.EtcdMetricsPort))
	}
	component := func(port int) map[string]any {
		return map[string]any{
			"enabled":        true,
			"service":        map[string]any{"port": port, "targetPort": port},
			"serviceMonitor": map[string]any{"https": true, "insecureSkipVerify": true},
		}
	}
	spec := map[string]any{
		"replicas":                      2,
		"retention":                     "15d",
		"secrets":                       []any{EtcdClientSecret},
		"ruleSelectorNilUsesHelmValues": false,
		"serviceMonitorSelectorNilUsesHelmValues": false,
		"topologySpreadConstraints":               spreadOverZones(map[string]any{"app.kubernetes.io/name": "prometheus"}),
		"additionalScrapeConfigs": []any{map[string]any{
			"job_name":       "etcd",
			"scheme":         "https",
			"static_configs": []any{map[string]any{"targets": targets}},
			"tls_config": map[string]any{
				"ca_file": secrets + "ca.crt", "cert_file": secrets + "client.crt", "key_file": secrets + "client.key",
			},
		}},
	}
	if persistent {
		spec["storageSpec"] = map[string]any{"volumeClaimTemplate": map[string]any{"spec": map[string]any{
			"storageClassName": StorageClassName,
			"accessModes":      []any{"ReadWriteOnce"},
			"resources":        map[string]any{"requests": map[string]any{"storage": "50Gi"}},
		}}}
	}
	return map[string]any{
		"kubeEtcd":              map[string]any{"enabled": false}, // scraped by the etcd job below
		"kubeProxy":             map[string]any{"enabled": false},
		"kubeControllerManager": component(10257),
		"kubeScheduler":         component(10259),
		"prometheus":            map[string]any{"prometheusSpec": spec},
	}
}

// CloudWatchValues: the CloudWatch agent and Fluent Bit (Container
// Insights), which run on the host network and use the node's role.
func CloudWatchValues(c Cluster) map[string]any {
	return map[string]any{"clusterName": c.Name, "region": c.Region}
}

// PodIdentityWebhookValues: the webhook gives the CloudWatch agent and
// Fluent Bit their role, since the CloudWatch chart has no values for a
// token volume. It maps their service account to the role in its
// ConfigMap (no annotation on an account the chart owns) and mutates
// pods of the CloudWatch namespace only, failing closed there: a pod
// made while the webhook is down is refused and retried by its
// controller, never started without its role. Two replicas on the
// control plane, in different zones, keep it up while workers come and go.
func PodIdentityWebhookValues(c Cluster) map[string]any {
	agent := strings.Replace(ServiceAccounts[CloudWatchObservability.Name], ":", "/", 1)
	labels := map[string]any{"app.kubernetes.io/name": PodIdentityWebhook.Name}
	return map[string]any{
		"replicaCount":        2,
		"podDisruptionBudget": map[string]any{"enabled": true, "maxUnavailable": 1},
		"nodeSelector":        onControlPlane,
		"tolerations":         controlPlaneTolerations,
		"affinity": map[string]any{"podAntiAffinity": map[string]any{"preferredDuringSchedulingIgnoredDuringExecution": []any{
			map[string]any{"weight": 100, "podAffinityTerm": map[string]any{
				"topologyKey": "topology.kubernetes.io/zone", "labelSelector": map[string]any{"matchLabels": labels},
			}},
		}}},
		"config": map[string]any{
			"defaultAwsRegion": c.Region,
			"podIdentityWebhookMap": map[string]any{"enabled": true, "data": map[string]any{
				agent: map[string]any{"RoleARN": c.Roles[CloudWatchObservability.Name], "Audience": "sts.amazonaws.com"},
			}},
		},
		"mutatingWebhook": map[string]any{
			"failurePolicy": "Fail",
			"namespaceSelector": map[string]any{"matchExpressions": []any{map[string]any{
				"key": "kubernetes.io/metadata.name", "operator": "In", "values": []any{CloudWatchObservability.Namespace},
			}}},
		},
		// Issued by kubeha (pulumi-tls) rather than cert-manager, which
		// kubeha does not install.
		"pki": map[string]any{
			"certManager": map[string]any{"enabled": false},
			"caBundle":    c.WebhookCACert, "cert": c.WebhookCert, "key": c.WebhookKey,
		},
	}
}

// jobName is a label value that names a Prometheus job in alert rules.
func jobName(job string) string { return fmt.Sprintf("job=%q", job) }

// EtcdAlertRules are kubeha's PrometheusRule: etcd and API health, and
// snapshots to S3, seen as etcd's Snapshot RPC (the backup timer calls it
// on the leader every interval).
func EtcdAlertRules(c Cluster) map[string]any {
	etcd := jobName("etcd")
	backupWindow := fmt.Sprintf("%dm", 2*c.BackupIntervalMinutes+5)
	rule := func(name, expr, forDuration, severity, summary string) any {
		return map[string]any{
			"alert": name, "expr": expr, "for": forDuration,
			"labels":      map[string]any{"severity": severity},
			"annotations": map[string]any{"summary": summary},
		}
	}
	return map[string]any{
		"apiVersion": "monitoring.coreos.com/v1",
		"kind":       "PrometheusRule",
		"metadata":   map[string]any{"name": "kubeha", "namespace": KubePrometheusStack.Namespace},
		"spec": map[string]any{"groups": []any{map[string]any{
			"name": "kubeha",
			"rules": []any{
				rule("EtcdMemberDown", "up{"+etcd+"} == 0", "1m", "critical",
					"etcd member {{ $labels.instance }} is down; the cluster tolerates one member lost."),
				rule("EtcdNoLeader", "etcd_server_has_leader{"+etcd+"} == 0", "1m", "critical",
					"etcd member {{ $labels.instance }} has no leader."),
				rule("EtcdFrequentLeaderChanges", "increase(etcd_server_leader_changes_seen_total{"+etcd+"}[1h]) > 3", "5m", "warning",
					"etcd leader changed more than 3 times in an hour: check disk and network latency."),
				rule("EtcdBackupTooOld",
					`sum(increase(grpc_server_handled_total{`+etcd+`,grpc_service="etcdserverpb.Maintenance",grpc_method="Snapshot",grpc_code="OK"}[`+backupWindow+`])) < 1`,
					"5m", "critical", "No etcd snapshot was taken in "+backupWindow+"; backups to S3 have stopped."),
				rule("KubeAPIServerTargetDown", "up{"+jobName("apiserver")+"} == 0", "2m", "critical",
					"API server {{ $labels.instance }} is not answering Prometheus."),
			},
		}}},
	}
}

// AlertedEtcdMetrics are the etcd metric names EtcdAlertRules use; the
// real-etcd test checks that etcd serves each of them.
var AlertedEtcdMetrics = []string{"etcd_server_has_leader", "etcd_server_leader_changes_seen_total", "grpc_server_handled_total"}

// StorageClass is the default: encrypted gp3, created in the zone where
// its pod is scheduled, expandable.
func StorageClass() map[string]any {
	return map[string]any{
		"apiVersion": "storage.k8s.io/v1",
		"kind":       "StorageClass",
		"metadata": map[string]any{
			"name":        StorageClassName,
			"annotations": map[string]any{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		"provisioner":          "ebs.csi.aws.com",
		"parameters":           map[string]any{"type": "gp3", "encrypted": "true"},
		"volumeBindingMode":    "WaitForFirstConsumer",
		"allowVolumeExpansion": true,
		"reclaimPolicy":        "Delete",
	}
}

// VolumeSnapshotClass is the default class for EBS snapshots.
func VolumeSnapshotClass() map[string]any {
	return map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1",
		"kind":       "VolumeSnapshotClass",
		"metadata": map[string]any{
			"name":        "ebs",
			"annotations": map[string]any{"snapshot.storage.kubernetes.io/is-default-class": "true"},
		},
		"driver":         "ebs.csi.aws.com",
		"deletionPolicy": "Delete",
	}
}

// CoreDNSDisruptionBudget lets a drain take one CoreDNS replica at a time.
func CoreDNSDisruptionBudget() map[string]any {
	return map[string]any{
		"apiVersion": "policy/v1",
		"kind":       "PodDisruptionBudget",
		"metadata":   map[string]any{"name": "coredns", "namespace": CoreDNS.Namespace},
		"spec": map[string]any{
			"maxUnavailable": 1,
			"selector":       map[string]any{"matchLabels": CoreDNSLabels},
		},
	}
}

// Manifests are the objects kubeha applies itself, not through a chart.
func Manifests(c Cluster) []map[string]any {
	return []map[string]any{StorageClass(), VolumeSnapshotClass(), CoreDNSDisruptionBudget(), EtcdAlertRules(c)}
}

// ObjectName is "Kind namespace/name" for messages.
func ObjectName(obj map[string]any) string {
	meta, _ := obj["metadata"].(map[string]any)
	name := fmt.Sprint(meta["name"])
	if ns, ok := meta["namespace"].(string); ok {
		name = ns + "/" + name
	}
	return strings.TrimSpace(fmt.Sprint(obj["kind"]) + " " + name)
}
