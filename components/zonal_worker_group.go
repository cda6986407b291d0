package components

import (
	"fmt"
	"maps"
	"slices"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/autoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/vpc"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
)

// Taint is a node taint set when the worker registers.
type Taint = bootstrap.Taint

// ZonalWorkerGroupArgs describes one pool's workers in one zone.
type ZonalWorkerGroupArgs struct {
	ClusterName       string
	Region            string
	KubernetesVersion string
	Pool              string
	Zone              string
	// SubnetID is the zone's private subnet.
	SubnetID pulumi.StringInput
	// ControlPlane gives the endpoint, the CA and the join secret.
	ControlPlane *ControlPlane
	// SecurityGroupIDs are the workers' groups.
	SecurityGroupIDs []pulumi.StringInput
	KMSKeyArn        pulumi.StringInput
	// InstanceTypes: one type, or several for a mixed-instances policy.
	InstanceTypes []string
	// OnDemandBase workers are on-demand; above it, SpotPercent of the
	// rest are spot. SpotPercent 0 means all on-demand.
	OnDemandBase                     int
	SpotPercent                      int
	Min, Desired, Max                int
	Labels                           map[string]string
	Taints                           []Taint
	ImageID                          string
	RootVolumeGiB                    int
	Tags                             map[string]string
	InstanceRefreshMinHealthyPercent int
	// ManagedPolicyArns are AWS-managed policies added to the workers' role,
	// such as CloudWatchAgentPolicy.
	ManagedPolicyArns []string
}

// ZonalWorkerGroup is one auto-scaling group of workers in one zone.
type ZonalWorkerGroup struct {
	pulumi.ResourceState

	Group *autoscaling.Group
	// GroupName is the ASG's name, which cluster-autoscaler discovers by tag.
	GroupName pulumi.StringOutput
}

func (args *ZonalWorkerGroupArgs) validate() error {
	bad := func(field, value, allowed string) error {
		return &config.FieldError{Key: "ZonalWorkerGroupArgs." + field, Value: value, Allowed: allowed}
	}
	if args.ImageID == "" {
		args.ImageID = DefaultImage
	}
	if args.RootVolumeGiB == 0 {
		args.RootVolumeGiB = 50
	}
	if args.InstanceRefreshMinHealthyPercent == 0 {
		args.InstanceRefreshMinHealthyPercent = 90
	}
	switch {
	case args.ClusterName == "" || args.Pool == "" || args.Zone == "":
		return bad("ClusterName/Pool/Zone", fmt.Sprintf("%q/%q/%q", args.ClusterName, args.Pool, args.Zone), "all three set")
	case args.SubnetID == nil || args.ControlPlane == nil || len(args.SecurityGroupIDs) == 0 || args.KMSKeyArn == nil:
		return bad("SubnetID/ControlPlane/SecurityGroupIDs/KMSKeyArn", "nil", "the zone's subnet, the control plane, the workers' security groups and the cluster key")
	case len(args.InstanceTypes) == 0:
		return bad("InstanceTypes", "empty", "one or more EC2 instance types")
	case args.Min < 0 || args.Min > args.Desired || args.Desired > args.Max || args.Max > 100:
		return bad("Min/Desired/Max", fmt.Sprintf("%d/%d/%d", args.Min, args.Desired, args.Max), "0 <= min <= desired <= max <= 100")
	case args.SpotPercent < 0 || args.SpotPercent > 100 || args.OnDemandBase < 0:
		return bad("SpotPercent/OnDemandBase", fmt.Sprintf("%d/%d", args.SpotPercent, args.OnDemandBase), "spot 0 to 100, base 0 or more")
	}
	for _, taint := range args.Taints {
		if !slices.Contains([]string{"NoSchedule", "PreferNoSchedule", "NoExecute"}, taint.Effect) {
			return bad("Taints", taint.Key+":"+taint.Effect, "effects NoSchedule, PreferNoSchedule or NoExecute")
		}
	}
	return nil
}

// NewZonalWorkerGroup declares the group, its launch template and IAM.
func NewZonalWorkerGroup(ctx *pulumi.Context, name string, args *ZonalWorkerGroupArgs, opts ...pulumi.ResourceOption) (*ZonalWorkerGroup, error) {
	if err := args.validate(); err != nil {
		return nil, err
	}
	w := &ZonalWorkerGroup{}
	if err := ctx.RegisterComponentResource("kubeha:index:ZonalWorkerGroup", name, w, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(w)}
	tags := clusterTags(args.ClusterName, name, args.Tags, "kubeha.io/pool", args.Pool)

	// A worker reads the join secret and nothing else; images come from
	// ECR read-only.
	policy := pulumi.All(args.ControlPlane.JoinSecretArn, args.KMSKeyArn).ApplyT(func(v []any) string {
		return policyJSON(
			policyStatement{Sid: "ReadJoinSecret", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"}, Resource: v[0].(string)},
			policyStatement{Sid: "UseClusterKey", Effect: "Allow", Action: []string{"kms:Decrypt"}, Resource: v[1].(string),
				Condition: map[string]map[string]any{"StringEquals": {"kms:ViaService": "secretsmanager." + args.Region + ".amazonaws.com"}}},
		)
	}).(pulumi.StringOutput)
	profile, err := nodeIdentity(ctx, name, policy, tags, append([]string{ecrPolicy}, args.ManagedPolicyArns...), child)
	if err != nil {
		return nil, err
	}
	worker := bootstrap.Worker{KubernetesVersion: args.KubernetesVersion, Labels: args.Labels, Taints: args.Taints}
	data := pulumi.All(args.ControlPlane.endpointHost, args.ControlPlane.JoinSecretArn, args.ControlPlane.CACertPEM).ApplyT(func(v []any) (string, error) {
		worker.Endpoint = v[0].(string)
		node, err := worker.Node(bootstrap.WorkerParams{Zone: args.Zone, Region: args.Region, SecretID: v[1].(string), CACertPEM: v[2].(string)})
		if err != nil {
			return "", err
		}
		return userData(node)
	}).(pulumi.StringOutput)
	template, err := launchTemplate(ctx, name, nodeTemplate{
		ImageID: args.ImageID, InstanceType: args.InstanceTypes[0], RootVolumeGiB: args.RootVolumeGiB, Profile: profile,
		SecurityGroups: pulumi.StringArray(args.SecurityGroupIDs), UserData: data, Tags: tags,
	}, child)
	if err != nil {
		return nil, err
	}

	group := &autoscaling.GroupArgs{
		MinSize:            pulumi.Int(args.Min),
		MaxSize:            pulumi.Int(args.Max),
		DesiredCapacity:    pulumi.Int(args.Desired),
		VpcZoneIdentifiers: pulumi.StringArray{args.SubnetID},
		HealthCheckType:    pulumi.String("EC2"),
		EnabledMetrics:     groupMetrics,
		Tags:               autoscalerTags(args, name),
		// A new launch template version rolls the workers, a few at a time.
		InstanceRefresh: &autoscaling.GroupInstanceRefreshArgs{
			Strategy: pulumi.String("Rolling"),
			Preferences: &autoscaling.GroupInstanceRefreshPreferencesArgs{
				MinHealthyPercentage: pulumi.Int(args.InstanceRefreshMinHealthyPercent),
				InstanceWarmup:       pulumi.String("300"),
			},
		},
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
	return w, ctx.RegisterResourceOutputs(w, pulumi.Map{"groupName": w.GroupName})
}

// autoscalerTags: the cluster tag, cluster-autoscaler's auto-discovery
// tags, and its node-template tags, which let it scale a group up from
// zero knowing the labels and taints its nodes will have.
func autoscalerTags(args *ZonalWorkerGroupArgs, name string) autoscaling.GroupTagArray {
	const template = "k8s.io/cluster-autoscaler/node-template/"
	tags := map[string]string{
		"Name":                                    name,
		clusterTagKey(args.ClusterName):           "owned",
		"kubeha.io/pool":                          args.Pool,
		AutoscalerEnabledTag:                      "true",
		AutoscalerClusterTag(args.ClusterName):    "owned",
		template + "label/" + bootstrap.ZoneLabel: args.Zone,
	}
	for k, v := range args.Labels {
		tags[template+"label/"+k] = v
	}
	for _, t := range args.Taints {
		tags[template+"taint/"+t.Key] = t.Value + ":" + t.Effect
	}
	var out autoscaling.GroupTagArray
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		// Only Name and the cluster tag belong on the instances.
		propagate := k == "Name" || k == clusterTagKey(args.ClusterName) || k == "kubeha.io/pool"
		out = append(out, autoscaling.GroupTagArgs{Key: pulumi.String(k), Value: pulumi.String(tags[k]), PropagateAtLaunch: pulumi.Bool(propagate)})
	}
	return out
}

// AutoscalerEnabledTag and AutoscalerClusterTag are the tags
// cluster-autoscaler's --node-group-auto-discovery looks for.
const AutoscalerEnabledTag = addons.AutoscalerEnabledTag

func AutoscalerClusterTag(cluster string) string { return addons.AutoscalerClusterTag(cluster) }

// WorkerSecurityGroupArgs describes the security group all workers share.
type WorkerSecurityGroupArgs struct {
	ClusterName string
	VpcID       pulumi.StringInput
	VpcCidr     pulumi.StringInput
	// ControlPlaneSecurityGroupID is ControlPlane.SecurityGroupID; rules
	// are added to it too, for traffic from workers.
	ControlPlaneSecurityGroupID pulumi.StringInput
	// NodePortCidrs may reach NodePorts besides the VPC.
	NodePortCidrs []string
	Tags          map[string]string
}

// Ports the default CNI (Cilium) uses between nodes: VXLAN and health.
const (
	cniOverlayPort = 8472 // UDP
	cniHealthPort  = 4240
)

// NewWorkerSecurityGroup makes the workers' group: kubelet only from the
// control plane, the CNI's ports between all nodes, NodePorts from the VPC
// (and NodePortCidrs). It also opens the control plane to workers: the API
// (pods reach it by the kubernetes Service, not the load balancer) and
// the CNI's ports.
func NewWorkerSecurityGroup(ctx *pulumi.Context, name string, args *WorkerSecurityGroupArgs, opts ...pulumi.ResourceOption) (*ec2.SecurityGroup, error) {
	sg, err := ec2.NewSecurityGroup(ctx, name, &ec2.SecurityGroupArgs{
		VpcId: args.VpcID, Description: pulumi.String("Kubernetes workers of " + args.ClusterName),
		Tags: clusterTags(args.ClusterName, name, args.Tags),
	}, opts...)
	if err != nil {
		return nil, err
	}
	cp := args.ControlPlaneSecurityGroupID
	if err := allowFromGroups(ctx, name, sg.ID(), []groupRule{
		{Name: "kubelet-from-control-plane", Port: kubeletPort, From: cp},
		{Name: "cni-overlay-from-workers", Port: cniOverlayPort, From: sg.ID(), Protocol: "udp"},
		{Name: "cni-overlay-from-control-plane", Port: cniOverlayPort, From: cp, Protocol: "udp"},
		{Name: "cni-health-from-workers", Port: cniHealthPort, From: sg.ID()},
		{Name: "cni-health-from-control-plane", Port: cniHealthPort, From: cp},
	}, opts); err != nil {
		return nil, err
	}
	if err := allowFromGroups(ctx, name+"-to-control-plane", cp, []groupRule{
		{Name: "api-from-workers", Port: bootstrap.APIServerPort, From: sg.ID()},
		{Name: "cni-overlay-from-workers", Port: cniOverlayPort, From: sg.ID(), Protocol: "udp"},
		{Name: "cni-health-from-workers", Port: cniHealthPort, From: sg.ID()},
	}, opts); err != nil {
		return nil, err
	}
	sources := append([]pulumi.StringInput{args.VpcCidr}, pulumi.ToStringArray(args.NodePortCidrs)...)
	for i, source := range sources {
		if _, err := vpc.NewSecurityGroupIngressRule(ctx, fmt.Sprintf("%s-nodeports-%d", name, i), &vpc.SecurityGroupIngressRuleArgs{
			SecurityGroupId: sg.ID(), CidrIpv4: source, IpProtocol: pulumi.String("tcp"),
			FromPort: pulumi.Int(30000), ToPort: pulumi.Int(32767), Description: pulumi.String("NodePorts"),
		}, opts...); err != nil {
			return nil, err
		}
	}
	_, err = vpc.NewSecurityGroupEgressRule(ctx, name+"-egress", &vpc.SecurityGroupEgressRuleArgs{
		SecurityGroupId: sg.ID(), IpProtocol: pulumi.String("-1"), CidrIpv4: pulumi.String("0.0.0.0/0"),
	}, opts...)
	return sg, err
}
