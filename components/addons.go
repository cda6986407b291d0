package components

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sns"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/utilities"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/pki"
)

// AddonsOptions are what kubeha installs into the cluster, each through
// its pinned upstream Helm chart, and how the cluster is monitored: the
// stack's kubeha:addons keys. In a stack file an add-on is true, false,
// or an object of Addon's keys.
type AddonsOptions struct {
	// Applier is cluster (the control-plane nodes apply the add-on set from the cluster's asset bucket with Helm, one node at a time under a Lease, so `pulumi up` never reaches the API) or pulumi (Pulumi's Kubernetes provider applies each release through the API, showing every object in previews; the machine running `pulumi up` must reach the API).
	Applier string `json:"applier"`
	// Monitoring is prometheus (kube-prometheus-stack in the cluster, scraping API servers, schedulers, controller-managers and etcd, with kubeha's alert rules) or cloudwatch (CloudWatch agent and Container Insights). CloudWatch alarms on the API load balancer, every auto-scaling group and etcd backups are made in both modes.
	Monitoring string `json:"monitoring"`
	// AlarmEmail is an optional e-mail address subscribed to the alarms' SNS topic.
	AlarmEmail string `json:"alarmEmail"`
	// CNIPlugin is cilium (VXLAN overlay, its own IPAM from the pod CIDR) or flannel (VXLAN overlay, each node's pods in the /24 the controller-manager gives it, through the CNI reference plugins every node installs). Both use UDP 8472 between nodes. Changing it on a running cluster is not supported.
	CNIPlugin string `json:"cniPlugin"`
	// CNI changes the chart CNIPlugin picks. Turn it off only to install another CNI: nodes stay NotReady without one.
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
	// PodIdentityWebhook is the Amazon EKS pod identity webhook, installed with cloudwatch monitoring (two replicas, on the control plane): it gives the CloudWatch agent and Fluent Bit their own IAM role, as no node role has CloudWatch rights. It cannot be off while the CloudWatch chart is on.
	PodIdentityWebhook Addon `json:"podIdentityWebhook"`
}

// Addon switches one add-on off, or changes its chart.
type Addon struct {
	// Disabled leaves the add-on out.
	Disabled bool `json:"disabled"`
	// Version replaces the pinned chart version; a version kubeha does not pin needs Chart.
	Version string `json:"version"`
	// Values are merged over kubeha's: maps key by key, anything else replaced.
	Values map[string]any `json:"values"`
	// Chart is the chart archive's URL (or a local file) the deploy copies into the asset bucket: the one the chart repository's index.yaml lists for Version, or a mirror's copy.
	Chart string `json:"chart"`
	// Digest is the archive's SHA-256 as the index lists it; nodes refuse an archive that differs. Empty, the digest S3 records at copy.
	Digest string `json:"digest"`
}

// Add-on appliers and monitoring modes.
const (
	ApplierCluster       = "cluster"
	ApplierPulumi        = "pulumi"
	DefaultApplier       = ApplierCluster
	MonitoringPrometheus = addons.MonitoringPrometheus
	MonitoringCloudWatch = addons.MonitoringCloudWatch
	DefaultMonitoring    = MonitoringPrometheus
	CNICilium            = addons.CNICilium
	CNIFlannel           = addons.CNIFlannel
	DefaultCNIPlugin     = CNICilium
)

func (o AddonsOptions) withDefaults() AddonsOptions {
	o.Applier = cmp.Or(o.Applier, DefaultApplier)
	o.Monitoring = cmp.Or(o.Monitoring, DefaultMonitoring)
	o.CNIPlugin = cmp.Or(o.CNIPlugin, DefaultCNIPlugin)
	return o
}

var (
	emailPattern  = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func (o AddonsOptions) check(c checker) {
	c.oneOf("Applier", o.Applier, ApplierCluster, ApplierPulumi)
	c.oneOf("Monitoring", o.Monitoring, MonitoringPrometheus, MonitoringCloudWatch)
	c.oneOf("CNIPlugin", o.CNIPlugin, CNICilium, CNIFlannel)
	if o.AlarmEmail != "" && !emailPattern.MatchString(o.AlarmEmail) {
		c.add("AlarmEmail", quote(o.AlarmEmail), "an e-mail address such as ops@example.com")
	}
	if o.cloudWatch() && o.PodIdentityWebhook.Disabled {
		c.add("PodIdentityWebhook", "disabled", "on (true) while monitoring is cloudwatch: the CloudWatch agent and Fluent Bit get their IAM role through it, as no node role may send to CloudWatch")
	}
	for _, a := range o.Charts() {
		if a.Addon.Version != "" && a.Addon.Version != a.Chart.Version && a.Addon.Chart == "" {
			c.add(a.Field+".Version", quote(a.Addon.Version), fmt.Sprintf("%s (kubeha's pin), or this version with its archive's URL in the chart key and its SHA-256 in digest, as %s/index.yaml lists them", a.Chart.Version, a.Chart.Repo))
		}
		if a.Addon.Digest != "" && !sha256Pattern.MatchString(a.Addon.Digest) {
			c.add(a.Field+".Digest", quote(a.Addon.Digest), "the archive's SHA-256, 64 lowercase hex digits, as the chart repository's index lists it")
		}
	}
}

// AddonChart is one add-on's option, its name in ClusterArgs and the
// chart kubeha pins for it.
type AddonChart struct {
	Field string
	Addon *Addon
	Chart addons.Chart
}

// Charts are the add-ons with their option's name and pinned chart, the
// CNI and monitoring charts as the options choose them.
func (o *AddonsOptions) Charts() []AddonChart {
	monitoring := addons.KubePrometheusStack
	if o.Monitoring == MonitoringCloudWatch {
		monitoring = addons.CloudWatchObservability
	}
	cni := addons.Cilium
	if o.CNIPlugin == CNIFlannel {
		cni = addons.Flannel
	}
	return []AddonChart{{"CNI", &o.CNI, cni}, {"CloudControllerManager", &o.CloudControllerManager, addons.CloudControllerManager},
		{"Storage", &o.Storage, addons.EBSCSIDriver}, {"Snapshots", &o.Snapshots, addons.SnapshotController}, {"CoreDNS", &o.CoreDNS, addons.CoreDNS},
		{"MetricsServer", &o.MetricsServer, addons.MetricsServer}, {"ClusterAutoscaler", &o.ClusterAutoscaler, addons.ClusterAutoscaler},
		{"MonitoringChart", &o.MonitoringChart, monitoring}, {"PodIdentityWebhook", &o.PodIdentityWebhook, addons.PodIdentityWebhook}}
}

// choices are the options as internal/addons renders them.
func (o AddonsOptions) choices() addons.Choices {
	choice := func(a Addon) addons.Choice { return addons.Choice(a) }
	return addons.Choices{Monitoring: o.Monitoring, CNIPlugin: o.CNIPlugin, CNI: choice(o.CNI), CloudControllerManager: choice(o.CloudControllerManager),
		Storage: choice(o.Storage), Snapshots: choice(o.Snapshots), CoreDNS: choice(o.CoreDNS), MetricsServer: choice(o.MetricsServer),
		ClusterAutoscaler: choice(o.ClusterAutoscaler), MonitoringChart: choice(o.MonitoringChart), PodIdentityWebhook: choice(o.PodIdentityWebhook)}
}

// inCluster says whether the control plane applies the add-ons.
func (o AddonsOptions) inCluster() bool { return o.Applier == ApplierCluster }

// prometheus says whether Prometheus runs in the cluster.
func (o AddonsOptions) prometheus() bool {
	return !o.MonitoringChart.Disabled && o.Monitoring == MonitoringPrometheus
}

// cloudWatch says whether the CloudWatch agent runs in the cluster.
func (o AddonsOptions) cloudWatch() bool {
	return !o.MonitoringChart.Disabled && o.Monitoring == MonitoringCloudWatch
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
	// members Prometheus scrapes; LoadBalancer the alarms' target group;
	// Assets the bucket the chart archives and the add-on set go to.
	ControlPlane *ControlPlane
	Etcd         *EtcdCluster
	LoadBalancer *ApiLoadBalancer
	Assets       *NodeAssets
	// Groups are the auto-scaling groups whose in-service count is alarmed,
	// by a name for the alarm.
	Groups                map[string]pulumi.StringInput
	BackupIntervalMinutes int
	Tags                  map[string]string
}

// Addons is the add-on set, applied by the control plane (the default)
// or through Pulumi's Kubernetes provider, and the infrastructure alarms.
type Addons struct {
	pulumi.ResourceState

	// SetRevision is the revision of the add-on set this deploy rendered;
	// the applier reports it in the asset bucket's addons/applied.json
	// once the cluster runs it.
	SetRevision pulumi.StringOutput
	// Provider and Releases (by chart name) are the provider path's;
	// nil and empty with the in-cluster applier.
	Provider *kubernetes.Provider
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
	if a.ControlPlane == nil || a.Etcd == nil || a.LoadBalancer == nil || a.Assets == nil {
		c.add("ControlPlane", "nil", "the cluster's ControlPlane, Etcd, LoadBalancer and Assets")
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
	c := addons.Cluster{
		Name: args.ClusterName, Region: args.Region, KubernetesVersion: args.KubernetesVersion,
		PodCIDR: args.PodCIDR, ServiceCIDR: args.ServiceCIDR, EtcdMetricsPort: bootstrap.EtcdTLSMetricsPort,
		BackupIntervalMinutes: args.BackupIntervalMinutes,
	}
	if args.Etcd != nil {
		c.EtcdMembers = etcdMemberNames(args.Etcd)
	}
	return c
}

// NewAddons renders the add-on set and has it applied: by the control
// plane from the asset bucket (ApplierCluster), or through a Kubernetes
// provider made from the control plane's kubeconfig once the control
// plane is serving (ApplierPulumi).
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
	roles, err := workloadRoles(ctx, name, args, child)
	if err != nil {
		return nil, err
	}
	// Role ARNs and the webhook's certificate are known at deploy; until
	// then each value is a placeholder the applier's path replaces.
	r := args.rendering()
	r.Roles = map[string]string{}
	deployed := map[string]pulumi.StringOutput{}
	for chart, arn := range roles {
		r.Roles[chart] = rolePlaceholder(chart)
		deployed[r.Roles[chart]] = arn
	}
	if args.cloudWatch() && !args.PodIdentityWebhook.Disabled {
		w := addons.PodIdentityWebhook
		ca, err := issueCA(ctx, name+"-webhook-ca", pki.WebhookCA(args.ClusterName, w.Name), child)
		if err != nil {
			return nil, err
		}
		serving, err := issueCert(ctx, name+"-webhook", pki.WebhookServing(w.Name, w.Namespace), ca, child)
		if err != nil {
			return nil, err
		}
		r.WebhookCACert, r.WebhookCert, r.WebhookKey = webhookCAPlaceholder, webhookCertPlaceholder, webhookKeyPlaceholder
		deployed[webhookCAPlaceholder], deployed[webhookCertPlaceholder], deployed[webhookKeyPlaceholder] = ca.CertPEM, serving.CertPEM, serving.KeyPEM
	}
	steps, err := addons.Steps(r, args.choices())
	if err != nil {
		return nil, err
	}
	if args.inCluster() {
		err = a.publish(ctx, name, args, steps, deployed, child)
	} else {
		err = a.applyThroughAPI(ctx, name, args, steps, deployed, child)
	}
	if err != nil {
		return nil, err
	}
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{"alarmTopicArn": a.AlarmTopic.Arn, "setRevision": a.SetRevision})
}

// publish copies every chart archive into the asset bucket and writes the
// add-on set beside them, for the control plane's applier. The set holds
// Prometheus' etcd client key, so it stays secret in Pulumi's state.
func (a *Addons) publish(ctx *pulumi.Context, name string, args *AddonsArgs, steps []addons.Step, deployed map[string]pulumi.StringOutput, opts []pulumi.ResourceOption) error {
	wired := pulumi.StringMap{
		"endpoint": args.ControlPlane.endpointHost, "etcd-ca": args.Etcd.CACertPEM,
		"etcd-client-cert": args.Etcd.MetricsClientCertPEM, "etcd-client-key": args.Etcd.MetricsClientKeyPEM,
	}
	for key, value := range deployed {
		wired[key] = value
	}
	// The set goes up after its archives: an applier never reads a set
	// whose charts are not there yet.
	var archives []pulumi.Resource
	for _, step := range steps {
		if step.Release == nil {
			continue
		}
		recorded, obj, err := args.Assets.put(ctx, name, step.Release.Archive, args.ClusterName, args.Tags, opts)
		if err != nil {
			return err
		}
		archives = append(archives, obj)
		if recorded != nil {
			wired["sha256:"+step.Name] = recorded
		}
	}
	set := resolve(wired, func(v map[string]string) (string, error) {
		c := args.rendering()
		c.APIHost, c.EtcdCACert, c.EtcdClientCert, c.EtcdClientKey = v["endpoint"], v["etcd-ca"], v["etcd-client-cert"], v["etcd-client-key"]
		c.Roles = map[string]string{}
		for key := range deployed {
			if chart, ok := strings.CutPrefix(key, rolePlaceholder("")); ok {
				c.Roles[chart] = v[key]
			}
		}
		c.WebhookCACert, c.WebhookCert, c.WebhookKey = v[webhookCAPlaceholder], v[webhookCertPlaceholder], v[webhookKeyPlaceholder]
		steps, err := addons.Steps(c, args.choices())
		if err != nil {
			return "", err
		}
		for _, step := range steps {
			if sum, ok := v["sha256:"+step.Name]; ok {
				step.Release.Archive.SHA256 = sum
			}
		}
		data, err := json.MarshalIndent(addons.NewSet(steps), "", "  ")
		return string(data), err
	})
	// A digest, not secret, though the set it is of is.
	a.SetRevision = pulumi.Unsecret(set.ApplyT(func(data string) (string, error) {
		var s addons.Set
		err := json.Unmarshal([]byte(data), &s)
		return s.Revision, err
	})).(pulumi.StringOutput)
	_, err := s3.NewBucketObjectv2(ctx, name+"-set", &s3.BucketObjectv2Args{
		Bucket: args.Assets.bucketID, Key: pulumi.String(bootstrap.AddonSetKey), Content: pulumi.ToSecret(set).(pulumi.StringOutput),
		ContentType: pulumi.String("application/json"), Tags: clusterTags(args.ClusterName, name+"-set", args.Tags),
	}, append(slices.Clone(opts), pulumi.DependsOn(archives))...)
	return err
}

// applyThroughAPI declares every step as a resource of Pulumi's Kubernetes
// provider, each after the steps it needs and after every control-plane
// node serves.
func (a *Addons) applyThroughAPI(ctx *pulumi.Context, name string, args *AddonsArgs, steps []addons.Step, deployed map[string]pulumi.StringOutput, opts []pulumi.ResourceOption) error {
	provider, err := kubernetes.NewProvider(ctx, name+"-kubernetes", &kubernetes.ProviderArgs{
		Kubeconfig: args.ControlPlane.Kubeconfig,
		// Apply changes in place rather than replacing, as kubectl would.
		EnableServerSideApply: pulumi.Bool(true),
	}, opts...)
	if err != nil {
		return err
	}
	a.Provider = provider
	gate := make([]pulumi.Resource, len(args.ControlPlane.Groups))
	for i, g := range args.ControlPlane.Groups {
		gate[i] = g
	}
	// Values known only at deploy time, by step.
	outputs := map[string]pulumi.Map{
		addons.Cilium.Name: {"k8sServiceHost": args.ControlPlane.endpointHost},
		"secret-" + addons.EtcdClientSecret: {"stringData": pulumi.ToSecret(pulumi.StringMap{
			"ca.crt": args.Etcd.CACertPEM, "client.crt": args.Etcd.MetricsClientCertPEM, "client.key": args.Etcd.MetricsClientKeyPEM,
		})},
	}
	declared := map[string]pulumi.Resource{}
	for _, step := range steps {
		after := slices.Clone(gate)
		for _, need := range step.Needs {
			after = append(after, declared[need])
		}
		stepOpts := append(slices.Clone(opts), pulumi.Provider(provider), pulumi.DependsOn(after))
		if step.Release != nil {
			release, err := declareRelease(ctx, name, *step.Release, outputs[step.Name], deployed, stepOpts)
			if err != nil {
				return err
			}
			a.Releases[step.Release.Name], declared[step.Name] = release, release
			continue
		}
		inputs := pulumi.Map{}
		for k, v := range step.Object {
			inputs[k] = pulumi.Any(v)
		}
		maps.Copy(inputs, outputs[step.Name])
		if step.Object["kind"] == "Secret" {
			// Its data stays secret in Pulumi's state.
			stepOpts = append(stepOpts, pulumi.AdditionalSecretOutputs([]string{"data", "stringData"}))
		}
		if old, ok := formerObjectNames[step.Name]; ok {
			// Renaming would delete and recreate it (the namespace with
			// everything in it).
			stepOpts = append(stepOpts, pulumi.Aliases([]pulumi.Alias{{Name: pulumi.String(name + "-" + old)}}))
		}
		obj, err := declareObject(ctx, name+"-"+step.Name, step.Object["apiVersion"].(string), step.Object["kind"].(string), inputs, stepOpts)
		if err != nil {
			return err
		}
		declared[step.Name] = obj
	}
	a.SetRevision = pulumi.String(addons.NewSet(steps).Revision).ToStringOutput()
	return nil
}

// withOutputs is v as a Pulumi input, each string that is a key of
// outputs replaced by its output.
func withOutputs(v any, outputs map[string]pulumi.StringOutput) pulumi.Input {
	switch v := v.(type) {
	case map[string]any:
		m := pulumi.Map{}
		for k, e := range v {
			m[k] = withOutputs(e, outputs)
		}
		return m
	case []any:
		a := pulumi.Array{}
		for _, e := range v {
			a = append(a, withOutputs(e, outputs))
		}
		return a
	case string:
		if o, ok := outputs[v]; ok {
			return o
		}
	}
	return pulumi.Any(v)
}

// rolePlaceholder stands for the ARN of chart's role in values rendered
// before it is known; the others for the pod identity webhook's
// certificate.
func rolePlaceholder(chart string) string { return "role:" + chart }

const (
	webhookCAPlaceholder   = "tls:webhook-ca"
	webhookCertPlaceholder = "tls:webhook-cert"
	webhookKeyPlaceholder  = "tls:webhook-key"
)

// workloadRoles are the IAM roles of the add-ons that act on AWS, by
// chart name: each assumable only with its own service account's token
// (addons.ServiceAccounts), through the cluster's OIDC provider.
func workloadRoles(ctx *pulumi.Context, name string, args *AddonsArgs, opts []pulumi.ResourceOption) (map[string]pulumi.StringOutput, error) {
	cp := args.ControlPlane
	roles := map[string]pulumi.StringOutput{}
	for _, w := range []struct {
		enabled bool
		chart   addons.Chart
		policy  string
		// managed is an AWS-managed policy the role gets besides.
		managed string
	}{
		{!args.CloudControllerManager.Disabled, addons.CloudControllerManager, cloudControllerManagerPolicy(args.ClusterName), ""},
		{!args.Storage.Disabled, addons.EBSCSIDriver, ebsCSIDriverPolicy(args.ClusterName), ""},
		{!args.ClusterAutoscaler.Disabled, addons.ClusterAutoscaler, clusterAutoscalerPolicy(args.ClusterName), ""},
		{args.cloudWatch(), addons.CloudWatchObservability, policyJSON(protectEtcdVolumes), CloudWatchAgentPolicy},
	} {
		if !w.enabled {
			continue
		}
		roleName := name + "-" + w.chart.Name
		account := addons.ServiceAccounts[w.chart.Name]
		trust := pulumi.All(cp.OIDCProviderArn, cp.ServiceAccountIssuer).ApplyT(func(v []any) string {
			return webIdentityTrust(v[0].(string), v[1].(string), account)
		}).(pulumi.StringOutput)
		role, err := iam.NewRole(ctx, roleName, &iam.RoleArgs{AssumeRolePolicy: trust, Tags: clusterTags(args.ClusterName, roleName, args.Tags)}, opts...)
		if err != nil {
			return nil, err
		}
		if _, err := iam.NewRolePolicy(ctx, roleName, &iam.RolePolicyArgs{Role: role.Name, Policy: pulumi.String(w.policy)}, opts...); err != nil {
			return nil, err
		}
		if w.managed != "" {
			if err := attachManaged(ctx, roleName, role, []string{w.managed}, opts); err != nil {
				return nil, err
			}
		}
		roles[w.chart.Name] = role.Arn
	}
	return roles, nil
}

// formerObjectNames are the resource names (after the component's) that
// objects had before the add-on set named every step alike.
var formerObjectNames = map[string]string{
	"namespace-" + addons.KubePrometheusStack.Namespace: addons.KubePrometheusStack.Namespace,
	"secret-" + addons.EtcdClientSecret:                 addons.EtcdClientSecret,
}

// declareRelease declares a Helm release of the chart's repository (or of
// the archive the stack names), with its values and outputs (values known
// only at deploy time) laid over them. Helm checks no digest here.
func declareRelease(ctx *pulumi.Context, name string, r addons.Release, outputs pulumi.Map, deployed map[string]pulumi.StringOutput, opts []pulumi.ResourceOption) (*HelmRelease, error) {
	values := pulumi.Map{}
	for k, v := range r.Values {
		values[k] = withOutputs(v, deployed)
	}
	maps.Copy(values, outputs)
	chart := pulumi.Map{"chart": pulumi.String(r.Name), "repositoryOpts": pulumi.Map{"repo": pulumi.String(r.Repo)}}
	if pinned := slices.IndexFunc(addons.Charts, func(c addons.Chart) bool { return c.URL == r.Archive.Source }); pinned < 0 {
		chart = pulumi.Map{"chart": pulumi.String(r.Archive.Source)}
	}
	release := &HelmRelease{}
	inputs := pulumi.Map{
		"name":            pulumi.String(r.Name),
		"version":         pulumi.String(r.Version),
		"namespace":       pulumi.String(r.Namespace),
		"createNamespace": pulumi.Bool(true),
		"values":          values,
		// A failed upgrade rolls back rather than leaving a half release.
		"atomic":  pulumi.Bool(true),
		"timeout": pulumi.Int(600),
		// What pulumi-kubernetes' own Go SDK sends for a Release.
		"compat": pulumi.String("true"),
	}
	maps.Copy(inputs, chart)
	err := ctx.RegisterResource(helmReleaseType, name+"-"+r.Name, inputs, release, utilities.PkgResourceDefaultOpts(opts)...)
	return release, err
}

// HelmRelease is pulumi-kubernetes' Helm release (kubernetes:helm.sh/v3:Release),
// declared through the engine directly: its Go package also holds the
// YAML-based Chart, which would compile every Kubernetes API group into
// kubeha and everything that imports it.
type HelmRelease struct {
	pulumi.CustomResourceState
}

const helmReleaseType = "kubernetes:helm.sh/v3:Release"

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
	// metricAlarm watches a metric kubeha's nodes send (in the kubeha
	// namespace, per cluster): its statistic over each period, against
	// threshold; below alarms under it, and when nothing is sent.
	metricAlarm := func(alarmName, description, metric, statistic string, threshold float64, periodSeconds, periods int, below bool) error {
		op, missing := "GreaterThanOrEqualToThreshold", "notBreaching"
		if below {
			op, missing = "LessThanThreshold", "breaching"
		}
		return alarm(alarmName, description, &cloudwatch.MetricAlarmArgs{
			Namespace: pulumi.String(bootstrap.EtcdSnapshotMetricNamespace), MetricName: pulumi.String(metric),
			Dimensions: pulumi.StringMap{"Cluster": pulumi.String(args.ClusterName)}, Statistic: pulumi.String(statistic),
			Period: pulumi.Int(periodSeconds), EvaluationPeriods: pulumi.Int(periods), Threshold: pulumi.Float64(threshold),
			ComparisonOperator: pulumi.String(op), TreatMissingData: pulumi.String(missing),
		})
	}
	// countAlarm watches a count: summed over each period, compared with 1.
	countAlarm := func(alarmName, description, metric string, periodSeconds, periods int, below bool) error {
		return metricAlarm(alarmName, description, metric, "Sum", 1, periodSeconds, periods, below)
	}
	if args.inCluster() {
		// Some node's applier runs every minute and counts each run that
		// applies the whole set, changed or not: none for 30 minutes is a
		// set that does not apply (a release that never becomes ready, a
		// missing archive, no node running the applier).
		if err := countAlarm(name+"-addon-set-not-applied", "No control-plane node has applied the whole add-on set for 30 minutes (journalctl -u kubeha-addons on a control-plane node).",
			bootstrap.AddonsAppliedMetric, 300, 6, true); err != nil {
			return err
		}
	}
	// A node that could not bootstrap by its deadline counts itself and
	// gives itself up; its group replaces it, and someone should know why.
	if err := countAlarm(name+"-node-bootstrap-failed", "A node gave up its first boot (journalctl -u kubeha-bootstrap on it, or its console output if it was replaced).",
		bootstrap.BootstrapFailedMetric, 300, 1, false); err != nil {
		return err
	}
	// A failed sync leaves a rotated token unknown to the API: every new
	// node would then fail to join.
	if err := countAlarm(name+"-join-token-sync-failed", "A control-plane node could not make the cluster's join tokens the cluster secret's (journalctl -u kubeha-token-sync on it).",
		bootstrap.TokenSyncFailedMetric, 900, 1, false); err != nil {
		return err
	}
	// Approvals failing for 10 minutes leave new kubelets serving nothing
	// the API server trusts (no logs, exec or metrics from them), and
	// kubelets whose certificates expire the same.
	if err := countAlarm(name+"-csr-approver-failed", "A control-plane node could not decide kubelets' serving certificate requests for 10 minutes (journalctl -u kubeha-csr-approver on it).",
		bootstrap.CSRApproverFailedMetric, 300, 2, false); err != nil {
		return err
	}
	// Each control-plane and etcd node sends the days left on its
	// shortest-lived certificate every check (at most 12 hours apart);
	// kubeadm's renew, and `pulumi up` re-issues etcd's, well before 30
	// days. Under 30, or no report for a day, is an alarm.
	if err := metricAlarm(name+"-certificate-expiry", "A control-plane or etcd node has a certificate with under 30 days left, or none reported for a day (journalctl -u kubeha-cert-renewal or -u kubeha-etcd-cert-refresh on it; README: certificate renewal).",
		bootstrap.CertDaysLeftMetric, "Minimum", 30, 86400, 1, true); err != nil {
		return err
	}
	if err := countAlarm(name+"-certificate-renewal-failed", "A control-plane node's certificate renewal check, or an etcd node's certificate refresh, failed (journalctl -u kubeha-cert-renewal or -u kubeha-etcd-cert-refresh on it).",
		bootstrap.CertRenewalFailedMetric, 3600, 1, false); err != nil {
		return err
	}
	// etcd-backup.sh counts each upload; two intervals without one alarm.
	return countAlarm(name+"-etcd-snapshot-age", fmt.Sprintf("No etcd snapshot reached S3 in %d minutes.", 2*args.BackupIntervalMinutes),
		bootstrap.EtcdSnapshotMetric, 60*args.BackupIntervalMinutes, 2, true)
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
