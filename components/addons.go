package components

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sns"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/utilities"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
)

// AddonsOptions are what kubeha installs into the cluster, each through
// its pinned upstream Helm chart, and how the cluster is monitored: the
// stack's kubeha:addons keys. In a stack file an add-on is true, false,
// or an object of Addon's keys.
type AddonsOptions struct {
	// Monitoring is prometheus (kube-prometheus-stack in the cluster, scraping API servers, schedulers, controller-managers and etcd, with kubeha's alert rules) or cloudwatch (CloudWatch agent and Container Insights). CloudWatch alarms on the API load balancer, every auto-scaling group and etcd backups are made in both modes.
	Monitoring string `json:"monitoring"`
	// AlarmEmail is an optional e-mail address subscribed to the alarms' SNS topic.
	AlarmEmail string `json:"alarmEmail"`
	// CNI is Cilium (VXLAN overlay). Turn it off only to install another CNI: nodes stay NotReady without one.
	CNI Addon `json:"cni"`
	// CloudControllerManager is the AWS cloud-controller-manager of the cluster's minor: zone labels, providerID, Service load balancers. Nodes stay tainted uninitialized without it.
	CloudControllerManager Addon `json:"cloudControllerManager"`
	// Storage is the EBS CSI driver and the default StorageClass (gp3, encrypted, WaitForFirstConsumer, expandable).
	Storage Addon `json:"storage"`
	// Snapshots is the snapshot controller and its CRDs, and the VolumeSnapshotClass ebs; installed only with Storage.
	Snapshots Addon `json:"snapshots"`
	// CoreDNS is CoreDNS from its chart, one replica per zone with a PodDisruptionBudget, instead of kubeadm's.
	CoreDNS Addon `json:"coreDNS"`
	// MetricsServer is metrics-server (two replicas, on the control plane) for kubectl top and autoscaling.
	MetricsServer Addon `json:"metricsServer"`
	// ClusterAutoscaler is cluster-autoscaler, discovering the worker groups by tag and balancing each pool's zones.
	ClusterAutoscaler Addon `json:"clusterAutoscaler"`
	// MonitoringChart changes kube-prometheus-stack or the CloudWatch chart, whichever Monitoring picks.
	MonitoringChart Addon `json:"monitoringChart"`
}

// Addon switches one add-on off, or changes its chart.
type Addon struct {
	// Disabled leaves the add-on out.
	Disabled bool `json:"disabled"`
	// Version replaces the pinned chart version.
	Version string `json:"version"`
	// Values are merged over kubeha's: maps key by key, anything else replaced.
	Values map[string]any `json:"values"`
}

// Monitoring modes.
const (
	MonitoringPrometheus = "prometheus"
	MonitoringCloudWatch = "cloudwatch"
	DefaultMonitoring    = MonitoringPrometheus
)

func (o AddonsOptions) withDefaults() AddonsOptions {
	o.Monitoring = cmp.Or(o.Monitoring, DefaultMonitoring)
	return o
}

var emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

func (o AddonsOptions) check(c checker) {
	c.oneOf("Monitoring", o.Monitoring, MonitoringPrometheus, MonitoringCloudWatch)
	if o.AlarmEmail != "" && !emailPattern.MatchString(o.AlarmEmail) {
		c.add("AlarmEmail", quote(o.AlarmEmail), "an e-mail address such as ops@example.com")
	}
}

// prometheus says whether Prometheus runs in the cluster.
func (o AddonsOptions) prometheus() bool {
	return !o.MonitoringChart.Disabled && o.Monitoring == MonitoringPrometheus
}

// cloudWatchPolicies are what nodes need for the CloudWatch agent.
func (o AddonsOptions) cloudWatchPolicies() []string {
	if o.MonitoringChart.Disabled || o.Monitoring != MonitoringCloudWatch {
		return nil
	}
	return []string{CloudWatchAgentPolicy}
}

// AddonsArgs describes what runs in the cluster besides the control
// plane: the options and what the add-ons are wired to.
type AddonsArgs struct {
	AddonsOptions
	ClusterName       string
	Region            string
	KubernetesVersion string
	Zones             []string
	PodCIDR           string
	ServiceCIDR       string
	// ControlPlane gives the kubeconfig and the readiness gate; Etcd the
	// members Prometheus scrapes; LoadBalancer the alarms' target group.
	ControlPlane *ControlPlane
	Etcd         *EtcdCluster
	LoadBalancer *ApiLoadBalancer
	// Groups are the auto-scaling groups whose in-service count is alarmed,
	// by a name for the alarm.
	Groups                map[string]pulumi.StringInput
	BackupIntervalMinutes int
	Tags                  map[string]string
}

// Addons is every add-on release, the manifests kubeha applies itself,
// and the infrastructure alarms.
type Addons struct {
	pulumi.ResourceState

	Provider *kubernetes.Provider
	// Releases by chart name; a disabled add-on has none.
	Releases map[string]*HelmRelease
	// AlarmTopic receives every alarm.
	AlarmTopic *sns.Topic
}

// validated is args with defaults filled in, or every problem found.
func (args *AddonsArgs) validated() (*AddonsArgs, error) {
	a := *args
	a.AddonsOptions = a.AddonsOptions.withDefaults()
	c := newChecker("AddonsArgs.")
	a.AddonsOptions.check(c)
	c.clusterName("ClusterName", a.ClusterName)
	if a.Region == "" {
		c.add("Region", "not set", "an AWS region such as eu-west-1")
	}
	if a.ControlPlane == nil || a.Etcd == nil || a.LoadBalancer == nil {
		c.add("ControlPlane", "nil", "the cluster's ControlPlane, Etcd and LoadBalancer")
	}
	if a.BackupIntervalMinutes < 1 {
		c.add("BackupIntervalMinutes", fmt.Sprint(a.BackupIntervalMinutes), "the etcd backup interval, 1 or more")
	}
	r := a.rendering()
	for _, pinned := range []struct {
		addon  Addon
		values func(addons.Cluster) (map[string]any, error)
	}{{a.CloudControllerManager, addons.CloudControllerManagerValues}, {a.ClusterAutoscaler, addons.ClusterAutoscalerValues}} {
		if _, err := pinned.values(r); err != nil && !pinned.addon.Disabled {
			c.add("KubernetesVersion", quote(a.KubernetesVersion), "a minor kubeha pins add-on images for: "+err.Error())
			break
		}
	}
	if _, err := addons.CoreDNSValues(r); err != nil && !a.CoreDNS.Disabled {
		c.add("ServiceCIDR", quote(a.ServiceCIDR), "an IPv4 CIDR")
	}
	return &a, c.err()
}

// rendering is what internal/addons needs; outputs are filled in later.
func (args *AddonsArgs) rendering() addons.Cluster {
	return addons.Cluster{
		Name: args.ClusterName, Region: args.Region, KubernetesVersion: args.KubernetesVersion,
		PodCIDR: args.PodCIDR, ServiceCIDR: args.ServiceCIDR, EtcdMetricsPort: bootstrap.EtcdTLSMetricsPort,
		BackupIntervalMinutes: args.BackupIntervalMinutes,
	}
}

// NewAddons installs the add-ons through a Kubernetes provider made from
// the control plane's kubeconfig, once the control plane is serving.
func NewAddons(ctx *pulumi.Context, name string, args *AddonsArgs, opts ...pulumi.ResourceOption) (*Addons, error) {
	args, err := args.validated()
	if err != nil {
		return nil, err
	}
	a := &Addons{Releases: map[string]*HelmRelease{}}
	if err := ctx.RegisterComponentResource("kubeha:index:Addons", name, a, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(a)}
	if err := a.alarms(ctx, name, args, child); err != nil {
		return nil, err
	}

	provider, err := kubernetes.NewProvider(ctx, name+"-kubernetes", &kubernetes.ProviderArgs{
		Kubeconfig: args.ControlPlane.Kubeconfig,
		// Apply changes in place rather than replacing, as kubectl would.
		EnableServerSideApply: pulumi.Bool(true),
	}, child...)
	if err != nil {
		return nil, err
	}
	a.Provider = provider
	// The readiness gate: every control-plane group has a serving node.
	gate := make([]pulumi.Resource, len(args.ControlPlane.Groups))
	for i, g := range args.ControlPlane.Groups {
		gate[i] = g
	}
	inCluster := append(slices.Clone(child), pulumi.Provider(provider), pulumi.DependsOn(gate))

	c := args.rendering()
	c.EtcdMembers = etcdMemberNames(args.Etcd)
	install := func(chart addons.Chart, addon Addon, values map[string]any, after ...pulumi.Resource) (*HelmRelease, error) {
		return a.install(ctx, name, chart, addon, values, nil, append(slices.Clone(inCluster), pulumi.DependsOn(after)))
	}

	values, err := addons.CloudControllerManagerValues(c)
	if err != nil {
		return nil, err
	}
	if _, err := install(addons.CloudControllerManager, args.CloudControllerManager, values); err != nil {
		return nil, err
	}
	// Cilium reaches the API through the load balancer, whose name is an
	// output. Every other pod but host-network ones needs the CNI first.
	cni, err := a.install(ctx, name, addons.Cilium, args.CNI, addons.CiliumValues(c),
		pulumi.Map{"k8sServiceHost": args.ControlPlane.endpointHost}, inCluster)
	if err != nil {
		return nil, err
	}
	var after []pulumi.Resource
	if cni != nil {
		after = append(after, cni)
	}

	if values, err = addons.CoreDNSValues(c); err != nil {
		return nil, err
	}
	if _, err := install(addons.CoreDNS, args.CoreDNS, values, after...); err != nil {
		return nil, err
	}
	if !args.CoreDNS.Disabled {
		if _, err := applyManifest(ctx, name, addons.CoreDNSDisruptionBudget(), inCluster); err != nil {
			return nil, err
		}
	}
	if _, err := install(addons.MetricsServer, args.MetricsServer, addons.MetricsServerValues(), after...); err != nil {
		return nil, err
	}
	if values, err = addons.ClusterAutoscalerValues(c); err != nil {
		return nil, err
	}
	if _, err := install(addons.ClusterAutoscaler, args.ClusterAutoscaler, values, after...); err != nil {
		return nil, err
	}
	storage, err := a.storage(ctx, name, args, c, install, inCluster, after)
	if err != nil {
		return nil, err
	}
	// Prometheus' volumes need the EBS driver and the default class.
	if err := a.monitoring(ctx, name, args, c, install, inCluster, append(after, storage...)); err != nil {
		return nil, err
	}
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{"alarmTopicArn": a.AlarmTopic.Arn})
}

type installFunc func(chart addons.Chart, addon Addon, values map[string]any, after ...pulumi.Resource) (*HelmRelease, error)

// install releases chart with kubeha's values, addon's laid over them, and
// outputs (values known only at deploy time); nothing if addon is off.
func (a *Addons) install(ctx *pulumi.Context, name string, chart addons.Chart, addon Addon, values map[string]any,
	outputs pulumi.Map, opts []pulumi.ResourceOption) (*HelmRelease, error) {
	if addon.Disabled {
		return nil, nil
	}
	inputs := pulumi.Map{}
	for k, v := range merge(values, addon.Values) {
		inputs[k] = pulumi.Any(v)
	}
	maps.Copy(inputs, outputs)
	version := chart.Version
	if addon.Version != "" {
		version = addon.Version
	}
	release := &HelmRelease{}
	err := ctx.RegisterResource(helmReleaseType, name+"-"+chart.Name, pulumi.Map{
		"name":            pulumi.String(chart.Name),
		"chart":           pulumi.String(chart.Name),
		"version":         pulumi.String(version),
		"repositoryOpts":  pulumi.Map{"repo": pulumi.String(chart.Repo)},
		"namespace":       pulumi.String(chart.Namespace),
		"createNamespace": pulumi.Bool(true),
		"values":          inputs,
		// A failed upgrade rolls back rather than leaving a half release.
		"atomic":  pulumi.Bool(true),
		"timeout": pulumi.Int(600),
		// What pulumi-kubernetes' own Go SDK sends for a Release.
		"compat": pulumi.String("true"),
	}, release, utilities.PkgResourceDefaultOpts(opts)...)
	if err != nil {
		return nil, err
	}
	a.Releases[chart.Name] = release
	return release, nil
}

// HelmRelease is pulumi-kubernetes' Helm release (kubernetes:helm.sh/v3:Release),
// declared through the engine directly: its Go package also holds the
// YAML-based Chart, which would compile every Kubernetes API group into
// kubeha and everything that imports it.
type HelmRelease struct {
	pulumi.CustomResourceState
}

const helmReleaseType = "kubernetes:helm.sh/v3:Release"

// storage installs the EBS CSI driver and the default StorageClass, and,
// unless Snapshots is off, the snapshot controller and CRDs first and the
// VolumeSnapshotClass; it returns what later add-ons wait for. Each chart
// takes its own switch's version and values.
func (a *Addons) storage(ctx *pulumi.Context, name string, args *AddonsArgs, c addons.Cluster, install installFunc,
	inCluster []pulumi.ResourceOption, after []pulumi.Resource) ([]pulumi.Resource, error) {
	if args.Storage.Disabled {
		return nil, nil
	}
	withSnapshots := !args.Snapshots.Disabled
	driverAfter := after
	var snapshots *HelmRelease
	if withSnapshots {
		var err error
		if snapshots, err = install(addons.SnapshotController, args.Snapshots, addons.SnapshotControllerValues(), after...); err != nil {
			return nil, err
		}
		driverAfter = append(slices.Clone(after), snapshots)
	}
	driver, err := install(addons.EBSCSIDriver, args.Storage, addons.EBSCSIDriverValues(c, withSnapshots), driverAfter...)
	if err != nil {
		return nil, err
	}
	class, err := applyManifest(ctx, name, addons.StorageClass(), inCluster)
	if err != nil || !withSnapshots {
		return []pulumi.Resource{driver, class}, err
	}
	// The class's kind is a CRD the snapshot controller's chart installs.
	_, err = applyManifest(ctx, name, addons.VolumeSnapshotClass(), append(slices.Clone(inCluster), pulumi.DependsOn([]pulumi.Resource{snapshots})))
	return []pulumi.Resource{driver, class}, err
}

func (a *Addons) monitoring(ctx *pulumi.Context, name string, args *AddonsArgs, c addons.Cluster, install installFunc,
	inCluster []pulumi.ResourceOption, after []pulumi.Resource) error {
	if args.MonitoringChart.Disabled {
		return nil
	}
	if args.Monitoring == MonitoringCloudWatch {
		_, err := install(addons.CloudWatchObservability, args.MonitoringChart, addons.CloudWatchValues(c), after...)
		return err
	}
	chart := addons.KubePrometheusStack
	namespace, err := declareObject(ctx, name+"-"+chart.Namespace, "v1", "Namespace",
		pulumi.Map{"metadata": pulumi.Map{"name": pulumi.String(chart.Namespace)}}, inCluster)
	if err != nil {
		return err
	}
	// Prometheus' identity on the etcd members' TLS metrics port; its data
	// stays secret in Pulumi's state, as pulumi-kubernetes' Secret keeps it.
	etcdClient, err := declareObject(ctx, name+"-"+addons.EtcdClientSecret, "v1", "Secret", pulumi.Map{
		"metadata": pulumi.Map{"name": pulumi.String(addons.EtcdClientSecret), "namespace": pulumi.String(chart.Namespace)},
		"stringData": pulumi.ToSecret(pulumi.StringMap{
			"ca.crt": args.Etcd.CACertPEM, "client.crt": args.Etcd.MetricsClientCertPEM, "client.key": args.Etcd.MetricsClientKeyPEM,
		}),
	}, append(slices.Clone(inCluster), pulumi.DependsOn([]pulumi.Resource{namespace}), pulumi.AdditionalSecretOutputs([]string{"data", "stringData"})))
	if err != nil {
		return err
	}
	stack, err := install(chart, args.MonitoringChart, addons.KubePrometheusStackValues(c, !args.Storage.Disabled), append(after, namespace, etcdClient)...)
	if err != nil {
		return err
	}
	_, err = applyManifest(ctx, name, addons.EtcdAlertRules(c), append(slices.Clone(inCluster), pulumi.DependsOn([]pulumi.Resource{stack})))
	return err
}

// alarms: in every monitoring mode, CloudWatch watches what must hold for
// the cluster to survive a zone loss, from outside the cluster.
func (a *Addons) alarms(ctx *pulumi.Context, name string, args *AddonsArgs, opts []pulumi.ResourceOption) error {
	tags := clusterTags(args.ClusterName, name+"-alarms", args.Tags)
	// Unencrypted: CloudWatch cannot publish to a topic under a customer
	// key without a key policy naming it, and alarms carry no secrets.
	topic, err := sns.NewTopic(ctx, name+"-alarms", &sns.TopicArgs{Tags: tags}, opts...)
	if err != nil {
		return err
	}
	a.AlarmTopic = topic
	if args.AlarmEmail != "" {
		if _, err := sns.NewTopicSubscription(ctx, name+"-alarms-email", &sns.TopicSubscriptionArgs{
			Topic: topic.Arn, Protocol: pulumi.String("email"), Endpoint: pulumi.String(args.AlarmEmail),
		}, opts...); err != nil {
			return err
		}
	}
	actions := pulumi.Array{topic.Arn}
	alarm := func(alarmName, description string, a *cloudwatch.MetricAlarmArgs) error {
		a.AlarmDescription, a.AlarmActions, a.OkActions, a.Tags = pulumi.String(description), actions, actions, tags
		_, err := cloudwatch.NewMetricAlarm(ctx, alarmName, a, opts...)
		return err
	}

	lb := args.LoadBalancer
	for _, zone := range args.Zones {
		if err := alarm(name+"-api-healthy-"+zone, "No API server in "+zone+" passes the load balancer's /readyz check.", &cloudwatch.MetricAlarmArgs{
			Namespace: pulumi.String("AWS/NetworkELB"), MetricName: pulumi.String("HealthyHostCount"), Statistic: pulumi.String("Minimum"),
			Dimensions: pulumi.StringMap{"LoadBalancer": lb.ArnSuffix, "TargetGroup": lb.TargetGroupArnSuffix, "AvailabilityZone": pulumi.String(zone)},
			Period:     pulumi.Int(60), EvaluationPeriods: pulumi.Int(2), Threshold: pulumi.Float64(1),
			ComparisonOperator: pulumi.String("LessThanThreshold"), TreatMissingData: pulumi.String("breaching"),
		}); err != nil {
			return err
		}
	}
	for _, group := range slices.Sorted(maps.Keys(args.Groups)) {
		metric := func(id, metricName, stat string) cloudwatch.MetricAlarmMetricQueryArgs {
			return cloudwatch.MetricAlarmMetricQueryArgs{Id: pulumi.String(id), Metric: &cloudwatch.MetricAlarmMetricQueryMetricArgs{
				Namespace: pulumi.String("AWS/AutoScaling"), MetricName: pulumi.String(metricName), Stat: pulumi.String(stat), Period: pulumi.Int(60),
				Dimensions: pulumi.StringMap{"AutoScalingGroupName": args.Groups[group]},
			}}
		}
		// A node takes minutes to boot and join: alarm after 15.
		if err := alarm(name+"-in-service-"+group, "Auto-scaling group "+group+" has fewer instances in service than desired.", &cloudwatch.MetricAlarmArgs{
			MetricQueries: cloudwatch.MetricAlarmMetricQueryArray{
				metric("desired", "GroupDesiredCapacity", "Maximum"),
				metric("inservice", "GroupInServiceInstances", "Minimum"),
				cloudwatch.MetricAlarmMetricQueryArgs{Id: pulumi.String("missing"), Expression: pulumi.String("desired - inservice"), ReturnData: pulumi.Bool(true)},
			},
			EvaluationPeriods: pulumi.Int(15), Threshold: pulumi.Float64(0),
			ComparisonOperator: pulumi.String("GreaterThanThreshold"), TreatMissingData: pulumi.String("missing"),
		}); err != nil {
			return err
		}
	}
	// etcd-backup.sh counts each upload; two intervals without one alarm.
	return alarm(name+"-etcd-snapshot-age", fmt.Sprintf("No etcd snapshot reached S3 in %d minutes.", 2*args.BackupIntervalMinutes), &cloudwatch.MetricAlarmArgs{
		Namespace: pulumi.String(bootstrap.EtcdSnapshotMetricNamespace), MetricName: pulumi.String(bootstrap.EtcdSnapshotMetric),
		Dimensions: pulumi.StringMap{"Cluster": pulumi.String(args.ClusterName)}, Statistic: pulumi.String("Sum"),
		Period: pulumi.Int(60 * args.BackupIntervalMinutes), EvaluationPeriods: pulumi.Int(2), Threshold: pulumi.Float64(1),
		ComparisonOperator: pulumi.String("LessThanThreshold"), TreatMissingData: pulumi.String("breaching"),
	})
}

// merge returns base with over laid on it: maps merge key by key,
// anything else in over replaces.
func merge(base, over map[string]any) map[string]any {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range over {
		if sub, ok := v.(map[string]any); ok {
			if baseSub, ok := out[k].(map[string]any); ok {
				out[k] = merge(baseSub, sub)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// applyManifest applies one rendered object as it is.
func applyManifest(ctx *pulumi.Context, name string, obj map[string]any, opts []pulumi.ResourceOption) (pulumi.Resource, error) {
	inputs := pulumi.Map{}
	for k, v := range obj {
		inputs[k] = pulumi.Any(v)
	}
	meta := obj["metadata"].(map[string]any)
	return declareObject(ctx, fmt.Sprintf("%s-%s-%s", name, strings.ToLower(obj["kind"].(string)), meta["name"]),
		obj["apiVersion"].(string), obj["kind"].(string), inputs, opts)
}

// KubernetesObject is one object pulumi-kubernetes applies
// (kubernetes:<group/version>:<Kind>), declared through the engine
// directly, as HelmRelease is: the typed Go packages of core/v1, meta/v1
// and apiextensions cost about 50 s of a cold build on 2 cores.
type KubernetesObject struct {
	pulumi.CustomResourceState
}

// declareObject declares a Kubernetes object from its fields (apiVersion,
// kind and metadata among them, as inputs holds them).
func declareObject(ctx *pulumi.Context, name, apiVersion, kind string, inputs pulumi.Map, opts []pulumi.ResourceOption) (*KubernetesObject, error) {
	group := apiVersion
	if !strings.Contains(group, "/") {
		group = "core/" + group // the core group's types are kubernetes:core/v1:<Kind>
	}
	inputs["apiVersion"], inputs["kind"] = pulumi.String(apiVersion), pulumi.String(kind)
	obj := &KubernetesObject{}
	err := ctx.RegisterResource("kubernetes:"+group+":"+kind, name, inputs, obj, utilities.PkgResourceDefaultOpts(opts)...)
	return obj, err
}

// etcdMemberNames are the members' DNS names.
func etcdMemberNames(etcd *EtcdCluster) []string {
	names := make([]string, len(etcd.Members))
	for i, m := range etcd.Members {
		names[i] = m.DNSName
	}
	return names
}
