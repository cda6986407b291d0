package components

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/autoscaling"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
)

// WorkerPool is a set of identical workers, one auto-scaling group per
// zone: an entry of the stack's kubeha:workers list.
type WorkerPool struct {
	// Name is the pool's name: 1 to 20 of a-z, 0-9 and '-', unique in the cluster.
	Name string `json:"name"`
	// InstanceTypes are the workers' EC2 instance types, 1 to 10. The first is the launch template's; more than one, or SpotPercent above 0, makes a mixed-instances group.
	InstanceTypes []string `json:"instanceTypes"`
	// OnDemandBase is the workers in each zone's group that are always on-demand, before SpotPercent applies, 0 to 100.
	OnDemandBase int `json:"onDemandBase"`
	// SpotPercent is the percent of the workers above OnDemandBase that are spot, 0 to 100; 0 means all on-demand.
	SpotPercent int `json:"spotPercent"`
	// MinPerZone is the minimum workers in each zone's group; nil means the default, 0 is allowed.
	MinPerZone *int `json:"minPerZone"`
	// DesiredPerZone is the workers each zone's group starts with, from MinPerZone to MaxPerZone; nil means MinPerZone.
	DesiredPerZone *int `json:"desiredPerZone"`
	// MaxPerZone is the maximum workers in each zone's group, 1 to 100.
	MaxPerZone int `json:"maxPerZone"`
	// Labels are node labels as key=value, set when a worker registers. The kubernetes.io and k8s.io namespaces are refused, except node.kubernetes.io and kubelet.kubernetes.io.
	Labels []string `json:"labels"`
	// Taints are node taints as key=value:Effect or key:Effect, Effect being NoSchedule, PreferNoSchedule or NoExecute.
	Taints []string `json:"taints"`
	// RootVolumeGiB is the size of each worker's encrypted gp3 root volume, 20 to 16384 GiB.
	RootVolumeGiB int `json:"rootVolumeGiB"`
	// ImageID is the workers' image: an AMI ID or a resolve:ssm: parameter.
	ImageID string `json:"imageId"`
	// KubernetesVersion holds the pool's kubelets at a release kubeha pins that is older than the control plane's, e.g. while a pool's workloads are checked against the new one; empty means the cluster's kubernetesVersion. A version newer than the control plane's is refused.
	KubernetesVersion string `json:"kubernetesVersion"`
}

// Defaults of WorkerPool.
const (
	DefaultPoolName           = "general"
	DefaultWorkerInstanceType = "m6i.large"
	DefaultMinPerZone         = 1
	DefaultMaxPerZone         = 5
	DefaultRootVolumeGiB      = 50
)

func (p WorkerPool) withDefaults() WorkerPool {
	p.Name = cmp.Or(p.Name, DefaultPoolName)
	if len(p.InstanceTypes) == 0 {
		p.InstanceTypes = []string{DefaultWorkerInstanceType}
	}
	if p.MinPerZone == nil {
		p.MinPerZone = pulumi.IntRef(DefaultMinPerZone)
	}
	if p.DesiredPerZone == nil {
		p.DesiredPerZone = pulumi.IntRef(*p.MinPerZone)
	}
	p.MaxPerZone = cmp.Or(p.MaxPerZone, max(DefaultMaxPerZone, *p.DesiredPerZone))
	p.RootVolumeGiB = cmp.Or(p.RootVolumeGiB, DefaultRootVolumeGiB)
	p.ImageID = cmp.Or(p.ImageID, DefaultImage)
	return p
}

var poolNamePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// check reports every field of a defaulted pool outside its limits.
func (p WorkerPool) check(c checker) {
	c.matches("Name", p.Name, poolNamePattern, "1 to 20 of a-z, 0-9 and '-', starting with a letter")
	if len(p.InstanceTypes) == 0 || len(p.InstanceTypes) > 10 {
		c.add("InstanceTypes", fmt.Sprintf("%d types", len(p.InstanceTypes)), "1 to 10 EC2 instance types")
	}
	for i, t := range p.InstanceTypes {
		c.instanceType(fmt.Sprintf("InstanceTypes[%d]", i), t)
	}
	c.between("SpotPercent", p.SpotPercent, 0, 100)
	c.between("OnDemandBase", p.OnDemandBase, 0, 100)
	c.between("MaxPerZone", p.MaxPerZone, 1, 100)
	switch lo, want, hi := *p.MinPerZone, *p.DesiredPerZone, p.MaxPerZone; {
	case lo < 0:
		c.add("MinPerZone", fmt.Sprint(lo), "0 or more")
	case lo > hi:
		c.add("MinPerZone", fmt.Sprint(lo), fmt.Sprintf("at most MaxPerZone (%d)", hi))
	case want < lo || want > hi:
		c.add("DesiredPerZone", fmt.Sprint(want), fmt.Sprintf("from MinPerZone (%d) to MaxPerZone (%d)", lo, hi))
	}
	for i, label := range p.Labels {
		if _, _, err := parseLabel(label); err != nil {
			c.add(fmt.Sprintf("Labels[%d]", i), quote(label), err.Error())
		}
	}
	for i, taint := range p.Taints {
		if _, err := parseTaint(taint); err != nil {
			c.add(fmt.Sprintf("Taints[%d]", i), quote(taint), err.Error())
		}
	}
	c.between("RootVolumeGiB", p.RootVolumeGiB, 20, 16384)
	c.imageID("ImageID", p.ImageID)
}

// checkVersion reports a pool's own release, at field, that is not one
// kubeha pins or is newer than the control plane's.
func (p WorkerPool) checkVersion(c checker, field, controlPlane string) {
	if p.KubernetesVersion == "" {
		return
	}
	c.kubernetesVersion(field, p.KubernetesVersion)
	c.pinnedRelease(field, p.KubernetesVersion)
	c.poolVersion(field, p.KubernetesVersion, controlPlane)
}

// ZonalWorkerGroupArgs describes one pool's workers in one zone: the
// pool's options and what the group is wired to.
type ZonalWorkerGroupArgs struct {
	WorkerPool
	ClusterName string
	Region      string
	// KubernetesVersion is the control plane's: the workers run it, or
	// the older release WorkerPool.KubernetesVersion pins.
	KubernetesVersion string
	Zone              string
	// BootstrapTimeoutMinutes: see ClusterArgs; zero means its default.
	BootstrapTimeoutMinutes int
	// SubnetID is the zone's private subnet.
	SubnetID pulumi.StringInput
	// ControlPlane gives the endpoint, the CA and the join secret.
	ControlPlane *ControlPlane
	// SecurityGroupIDs are the workers' groups.
	SecurityGroupIDs []pulumi.StringInput
	KMSKeyArn        pulumi.StringInput
	// ManagedPolicyArns are AWS-managed policies added to the workers' role.
	ManagedPolicyArns []string
	Tags              map[string]string
}

// ZonalWorkerGroup is one auto-scaling group of workers in one zone.
type ZonalWorkerGroup struct {
	pulumi.ResourceState

	Group *autoscaling.Group
	// GroupName is the ASG's name, which cluster-autoscaler discovers by tag.
	GroupName pulumi.StringOutput
}

// validated is args with defaults filled in, or every problem found.
func (args *ZonalWorkerGroupArgs) validated() (*ZonalWorkerGroupArgs, error) {
	a := *args
	a.WorkerPool = a.WorkerPool.withDefaults()
	c := newChecker("ZonalWorkerGroupArgs.")
	a.WorkerPool.check(c)
	c.clusterName("ClusterName", a.ClusterName)
	c.kubernetesVersion("KubernetesVersion", a.KubernetesVersion)
	a.WorkerPool.checkVersion(c, "WorkerPool.KubernetesVersion", a.KubernetesVersion)
	checkBootstrapTimeout(c, a.BootstrapTimeoutMinutes)
	if a.Region == "" || a.Zone == "" {
		c.add("Zone", fmt.Sprintf("%q", a.Zone), "a zone, and its Region")
	}
	if a.SubnetID == nil || a.ControlPlane == nil || len(a.SecurityGroupIDs) == 0 || a.KMSKeyArn == nil {
		c.add("SubnetID", "nil", "the zone's subnet, the ControlPlane, the workers' SecurityGroupIDs and the cluster's KMSKeyArn")
	}
	return &a, c.err()
}

// NewZonalWorkerGroup declares the group, its launch template and IAM.
func NewZonalWorkerGroup(ctx *pulumi.Context, name string, args *ZonalWorkerGroupArgs, opts ...pulumi.ResourceOption) (*ZonalWorkerGroup, error) {
	args, err := args.validated()
	if err != nil {
		return nil, err
	}
	// The pool's release, but the cluster's kube-proxy image: kubeadm's
	// DaemonSet runs that one on every node.
	assets := args.ControlPlane.assets
	kubelets := cmp.Or(args.WorkerPool.KubernetesVersion, args.KubernetesVersion)
	set, err := assets.of(kubelets)
	if err != nil {
		return nil, err
	}
	set.KubeProxyImage = assets.Assets.KubeProxyImage
	w := &ZonalWorkerGroup{}
	if err := ctx.RegisterComponentResource("kubeha:index:ZonalWorkerGroup", name, w, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(w)}
	tags := clusterTags(args.ClusterName, name, args.Tags, bootstrap.PoolTag, args.Name)

	// A worker reads the join secret and hands over its own join token,
	// under its own IAM user ID only ("<role ID>:<instance ID>"); images
	// come from ECR read-only.
	policy := resolve(pulumi.StringMap{"secret": args.ControlPlane.JoinSecretArn, "key": args.KMSKeyArn, "assets": assets.BucketArn}, func(arn map[string]string) (string, error) {
		return policyJSON(
			assets.readPolicy(arn["assets"], slices.Concat(set.NodeBinaries(), set.WorkerImages(), assets.heldInstalls(set, NodeAssetSet.WorkerImages))...),
			recordVersionStatement(args.Region, args.ClusterName),
			policyStatement{Sid: "ReadJoinSecret", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"}, Resource: arn["secret"]},
			policyStatement{Sid: "UseClusterKey", Effect: "Allow", Action: []string{"kms:Decrypt"}, Resource: arn["key"],
				Condition: map[string]map[string]any{"StringEquals": {"kms:ViaService": "secretsmanager." + args.Region + ".amazonaws.com"}}},
			policyStatement{Sid: "HandOverOwnJoinToken", Effect: "Allow", Action: []string{"s3:PutObject"},
				Resource: arn["assets"] + "/" + bootstrap.NodeTokenPrefix + "${aws:userid}"},
		), nil
	})
	profile, err := nodeIdentity(ctx, name, args.ClusterName, policy, tags, append([]string{ecrPolicy}, args.ManagedPolicyArns...), child)
	if err != nil {
		return nil, err
	}
	worker := bootstrap.Worker{ClusterName: args.ClusterName, BootstrapDeadline: bootstrapDeadline(args.BootstrapTimeoutMinutes), KubernetesVersion: kubelets, Labels: args.labels(), Taints: args.taints(),
		IgnorePreflightErrors: args.ControlPlane.ignorePreflightErrors}
	cp := args.ControlPlane
	data := resolve(assets.wire(pulumi.StringMap{"endpoint": cp.endpointHost, "secret": cp.JoinSecretArn, "ca": cp.CACertPEM}), func(v map[string]string) (string, error) {
		worker.Endpoint = v["endpoint"]
		node, err := worker.Node(bootstrap.WorkerParams{Zone: args.Zone, Region: args.Region, SecretID: v["secret"], CACertPEM: v["ca"],
			Assets: assets.resolvedOf(set, v)})
		if err != nil {
			return "", err
		}
		return userData(node)
	})
	template, err := launchTemplate(ctx, name, nodeTemplate{
		ImageID: args.ImageID, InstanceType: args.InstanceTypes[0], RootVolumeGiB: args.RootVolumeGiB, Profile: profile,
		SecurityGroups: pulumi.StringArray(args.SecurityGroupIDs), UserData: data, Tags: tags,
	}, child)
	if err != nil {
		return nil, err
	}

	hooks, wait := launchHook(worker.BootstrapDeadline)
	group := &autoscaling.GroupArgs{
		MinSize:            pulumi.Int(*args.MinPerZone),
		MaxSize:            pulumi.Int(args.MaxPerZone),
		DesiredCapacity:    pulumi.Int(*args.DesiredPerZone),
		VpcZoneIdentifiers: pulumi.StringArray{args.SubnetID},
		HealthCheckType:    pulumi.String("EC2"),
		EnabledMetrics:     groupMetrics,
		Tags:               autoscalerTags(args, name),
		// A worker is in service once its Node is Ready.
		InitialLifecycleHooks:  hooks,
		WaitForCapacityTimeout: wait,
		// No instance refresh: one would replace every zone's workers at
		// once, undrained, as soon as `pulumi up` changed the launch
		// template. `kubeha upgrade` replaces them, drained, zone by zone.
	}
	version := pulumi.Sprintf("%d", template.LatestVersion)
	if len(args.InstanceTypes) == 1 && args.SpotPercent == 0 {
		group.LaunchTemplate = &autoscaling.GroupLaunchTemplateArgs{Id: template.ID(), Version: version}
	} else {
		var overrides autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArray
		for _, t := range args.InstanceTypes {
			overrides = append(overrides, autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs{InstanceType: pulumi.String(t)})
		}
		group.MixedInstancesPolicy = &autoscaling.GroupMixedInstancesPolicyArgs{
			InstancesDistribution: &autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs{
				OnDemandBaseCapacity:                pulumi.Int(args.OnDemandBase),
				OnDemandPercentageAboveBaseCapacity: pulumi.Int(100 - args.SpotPercent),
				SpotAllocationStrategy:              pulumi.String("price-capacity-optimized"),
			},
			LaunchTemplate: &autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs{
				LaunchTemplateSpecification: &autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs{
					LaunchTemplateId: template.ID(), Version: version,
				},
				Overrides: overrides,
			},
		}
	}
	// cluster-autoscaler changes the desired count; Pulumi must not undo it.
	asg, err := autoscaling.NewGroup(ctx, name, group, append(child, pulumi.IgnoreChanges([]string{"desiredCapacity"}))...)
	if err != nil {
		return nil, err
	}
	w.Group, w.GroupName = asg, asg.Name
	// A worker leaving the group waits until a control-plane node drained
	// it.
	if err := terminationHook(ctx, name+"-drain", asg, bootstrap.DrainHook, bootstrap.DrainHookTimeout, child); err != nil {
		return nil, err
	}
	return w, ctx.RegisterResourceOutputs(w, pulumi.Map{"groupName": w.GroupName})
}

// autoscalerTags: the user's tags and the cluster tag (on the instances
// too), cluster-autoscaler's auto-discovery tags, and its node-template
// tags, which let it scale a group up from zero knowing the labels and
// taints its nodes will have.
func autoscalerTags(args *ZonalWorkerGroupArgs, name string) autoscaling.GroupTagArray {
	const template = "k8s.io/cluster-autoscaler/node-template/"
	onInstances := map[string]string{"Name": name, clusterTagKey(args.ClusterName): "owned", bootstrap.PoolTag: args.Name}
	maps.Copy(onInstances, args.Tags)
	groupOnly := map[string]string{
		AutoscalerEnabledTag:                      "true",
		AutoscalerClusterTag(args.ClusterName):    "owned",
		template + "label/" + bootstrap.ZoneLabel: args.Zone,
	}
	for k, v := range args.labels() {
		groupOnly[template+"label/"+k] = v
	}
	for _, t := range args.taints() {
		groupOnly[template+"taint/"+t.Key] = t.Value + ":" + t.Effect
	}
	var out autoscaling.GroupTagArray
	for _, set := range []struct {
		tags      map[string]string
		propagate bool
	}{{onInstances, true}, {groupOnly, false}} {
		for _, k := range slices.Sorted(maps.Keys(set.tags)) {
			out = append(out, autoscaling.GroupTagArgs{Key: pulumi.String(k), Value: pulumi.String(set.tags[k]), PropagateAtLaunch: pulumi.Bool(set.propagate)})
		}
	}
	return out
}

// labels are the pool's labels as the kubelet takes them; check has
// refused any that does not parse.
func (p WorkerPool) labels() map[string]string {
	out := map[string]string{}
	for _, label := range p.Labels {
		k, v, _ := parseLabel(label)
		out[k] = v
	}
	return out
}

func (p WorkerPool) taints() []bootstrap.Taint {
	var out []bootstrap.Taint
	for _, taint := range p.Taints {
		t, _ := parseTaint(taint)
		out = append(out, t)
	}
	return out
}

// AutoscalerEnabledTag and AutoscalerClusterTag are the tags
// cluster-autoscaler's --node-group-auto-discovery looks for.
const AutoscalerEnabledTag = addons.AutoscalerEnabledTag

func AutoscalerClusterTag(cluster string) string { return addons.AutoscalerClusterTag(cluster) }

var (
	labelNamePattern   = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$`)
	labelPrefixPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	taintEffects       = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
)

// parseLabel splits a node label "key=value" and checks it as Kubernetes
// and the kubelet do.
func parseLabel(label string) (key, value string, err error) {
	key, value, found := strings.Cut(label, "=")
	if !found {
		return "", "", fmt.Errorf("key=value")
	}
	if err := checkKeySyntax(key); err != nil {
		return "", "", err
	}
	if prefix, _, _ := strings.Cut(key, "/"); strings.Contains(key, "/") && reservedLabelPrefix(prefix) {
		return "", "", fmt.Errorf("a key outside the kubernetes.io and k8s.io namespaces (the kubelet may not set %s/ labels), or in node.kubernetes.io/", prefix)
	}
	if value != "" && !labelNamePattern.MatchString(value) {
		return "", "", fmt.Errorf("a value of at most 63 of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending alphanumeric")
	}
	return key, value, nil
}

// parseTaint splits a taint "key=value:Effect" or "key:Effect".
func parseTaint(taint string) (bootstrap.Taint, error) {
	rest, effect, found := strings.Cut(taint, ":")
	if !found || !slices.Contains(taintEffects, effect) {
		return bootstrap.Taint{}, fmt.Errorf("key=value:Effect with Effect one of %s", strings.Join(taintEffects, ", "))
	}
	key, value, _ := strings.Cut(rest, "=")
	if err := checkKeySyntax(key); err != nil {
		return bootstrap.Taint{}, err
	}
	if value != "" && !labelNamePattern.MatchString(value) {
		return bootstrap.Taint{}, fmt.Errorf("a value of at most 63 of A-Z, a-z, 0-9, '-', '_' and '.'")
	}
	return bootstrap.Taint{Key: key, Value: value, Effect: effect}, nil
}

// checkKeySyntax: [prefix/]name, as Kubernetes label and taint keys are.
func checkKeySyntax(key string) error {
	prefix, name, hasPrefix := strings.Cut(key, "/")
	if !hasPrefix {
		prefix, name = "", key
	}
	if !labelNamePattern.MatchString(name) || (hasPrefix && (len(prefix) > 253 || !labelPrefixPattern.MatchString(prefix))) {
		return fmt.Errorf("a key [prefix/]name: a DNS prefix, and a name of at most 63 of A-Z, a-z, 0-9, '-', '_' and '.'")
	}
	return nil
}

// reservedLabelPrefix: the kubelet may not label its node in the
// Kubernetes namespaces, but for node.kubernetes.io and kubelet.kubernetes.io.
func reservedLabelPrefix(prefix string) bool {
	reserved := prefix == "kubernetes.io" || prefix == "k8s.io" || strings.HasSuffix(prefix, ".kubernetes.io") || strings.HasSuffix(prefix, ".k8s.io")
	return reserved && prefix != "node.kubernetes.io" && prefix != "kubelet.kubernetes.io"
}
