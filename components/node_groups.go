package components

// What every node of every role shares: the image, the launch template
// baseline, groups of one node, user-data and the wiring checks.

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/autoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ssm"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// DefaultImage is the node image: the latest Debian 12, resolved when the
// program runs, so that a new image shows in `pulumi preview` as a change
// to the launch templates rather than silently at the next launch. Its
// cloud-init (22.4) is the version kubeha validates user-data with.
const DefaultImage = "resolve:ssm:/aws/service/debian/release/12/latest/amd64"

// nodeTemplate is what differs between kubeha's launch templates.
type nodeTemplate struct {
	ImageID        string
	InstanceType   string
	RootVolumeGiB  int
	Profile        *iam.InstanceProfile
	SecurityGroups pulumi.StringArray
	UserData       pulumi.StringOutput // base64
	Tags           pulumi.StringMap
}

// imageID is image, or, for a resolve:ssm: parameter, the AMI ID the
// parameter holds now.
func imageID(ctx *pulumi.Context, image string) pulumi.StringInput {
	param, ok := strings.CutPrefix(image, "resolve:ssm:")
	if !ok {
		return pulumi.String(image)
	}
	return ssm.LookupParameterOutput(ctx, ssm.LookupParameterOutputArgs{Name: pulumi.String(param)}).Value()
}

// launchTemplate applies kubeha's node baseline: IMDSv2 only with a hop
// limit of 1 (no pod reaches the node's credentials: the add-ons that act
// on AWS have roles of their own), an encrypted gp3 root volume, no SSH
// key.
func launchTemplate(ctx *pulumi.Context, name string, t nodeTemplate, opts []pulumi.ResourceOption) (*ec2.LaunchTemplate, error) {
	return ec2.NewLaunchTemplate(ctx, name, &ec2.LaunchTemplateArgs{
		ImageId:              imageID(ctx, t.ImageID),
		InstanceType:         pulumi.String(t.InstanceType),
		UserData:             t.UserData,
		VpcSecurityGroupIds:  t.SecurityGroups,
		IamInstanceProfile:   &ec2.LaunchTemplateIamInstanceProfileArgs{Arn: t.Profile.Arn},
		UpdateDefaultVersion: pulumi.Bool(true),
		MetadataOptions: &ec2.LaunchTemplateMetadataOptionsArgs{
			HttpEndpoint:            pulumi.String("enabled"),
			HttpTokens:              pulumi.String("required"),
			HttpPutResponseHopLimit: pulumi.Int(1),
		},
		BlockDeviceMappings: ec2.LaunchTemplateBlockDeviceMappingArray{ec2.LaunchTemplateBlockDeviceMappingArgs{
			DeviceName: pulumi.String("/dev/xvda"),
			Ebs: &ec2.LaunchTemplateBlockDeviceMappingEbsArgs{
				VolumeSize:          pulumi.Int(t.RootVolumeGiB),
				VolumeType:          pulumi.String("gp3"),
				Encrypted:           pulumi.String("true"),
				DeleteOnTermination: pulumi.String("true"),
			},
		}},
		TagSpecifications: ec2.LaunchTemplateTagSpecificationArray{
			ec2.LaunchTemplateTagSpecificationArgs{ResourceType: pulumi.String("instance"), Tags: t.Tags},
			ec2.LaunchTemplateTagSpecificationArgs{ResourceType: pulumi.String("volume"), Tags: t.Tags},
		},
		Tags: t.Tags,
	}, opts...)
}

// bootstrapDeadline is a node's time to become healthy for its role.
func bootstrapDeadline(minutes int) time.Duration {
	return time.Duration(cmp.Or(minutes, DefaultBootstrapTimeoutMinutes)) * time.Minute
}

// checkBootstrapTimeout allows zero (the default) or 5 to 60 minutes.
func checkBootstrapTimeout(c checker, minutes int) {
	if minutes != 0 {
		c.between("BootstrapTimeoutMinutes", minutes, 5, 60)
	}
}

// launchHook holds each new instance out of service until its first boot
// finds it healthy for its role (bootstrap-steps.sh: an etcd voter, a
// ready API server, a Ready Node); a node that never reports is abandoned
// after bootstrap.LaunchHookTimeout, and its group replaces it. `pulumi
// up` waits as long for a new group's instances: later zones wait for the
// first to create the cluster.
func launchHook(deadline time.Duration) (autoscaling.GroupInitialLifecycleHookArray, pulumi.String) {
	timeout := bootstrap.LaunchHookTimeout(deadline)
	return autoscaling.GroupInitialLifecycleHookArray{autoscaling.GroupInitialLifecycleHookArgs{
		Name:                pulumi.String(bootstrap.LaunchHook),
		LifecycleTransition: pulumi.String("autoscaling:EC2_INSTANCE_LAUNCHING"),
		HeartbeatTimeout:    pulumi.Int(int(timeout.Seconds())),
		DefaultResult:       pulumi.String("ABANDON"),
	}}, pulumi.String(fmt.Sprintf("%.0fm", timeout.Minutes()))
}

// terminationHook holds each instance leaving group until someone
// completes hook, or timeout passes. A resource of its own, unlike the
// launch hook, so that `pulumi up` adds it to a group that already
// exists, and, on destroy, removes it before the group.
func terminationHook(ctx *pulumi.Context, name string, group *autoscaling.Group, hook string, timeout time.Duration, opts []pulumi.ResourceOption) error {
	_, err := autoscaling.NewLifecycleHook(ctx, name, &autoscaling.LifecycleHookArgs{
		Name: pulumi.String(hook), AutoscalingGroupName: group.Name,
		LifecycleTransition: pulumi.String("autoscaling:EC2_INSTANCE_TERMINATING"),
		HeartbeatTimeout:    pulumi.Int(int(timeout.Seconds())),
		DefaultResult:       pulumi.String("CONTINUE"),
	}, opts...)
	return err
}

// singleNodeGroup is an auto-scaling group of exactly one instance in one
// subnet: AWS replaces the instance if it dies, in the same zone. It uses
// EC2 health checks, so an unhealthy service never recycles the node.
// With a target group, the instance is registered in it and `pulumi up`
// waits until it passes the target group's health check: the readiness
// gate for whatever depends on the group.
func singleNodeGroup(ctx *pulumi.Context, name string, subnet pulumi.StringInput, template *ec2.LaunchTemplate, tags pulumi.StringMap,
	targetGroupArn pulumi.StringInput, deadline time.Duration, opts []pulumi.ResourceOption) (*autoscaling.Group, error) {
	hooks, wait := launchHook(deadline)
	var asgTags autoscaling.GroupTagArray
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		asgTags = append(asgTags, autoscaling.GroupTagArgs{Key: pulumi.String(k), Value: tags[k], PropagateAtLaunch: pulumi.Bool(true)})
	}
	args := &autoscaling.GroupArgs{
		MinSize:                pulumi.Int(1),
		MaxSize:                pulumi.Int(1),
		DesiredCapacity:        pulumi.Int(1),
		VpcZoneIdentifiers:     pulumi.StringArray{subnet},
		HealthCheckType:        pulumi.String("EC2"),
		HealthCheckGracePeriod: pulumi.Int(300),
		LaunchTemplate:         &autoscaling.GroupLaunchTemplateArgs{Id: template.ID(), Version: pulumi.Sprintf("%d", template.LatestVersion)},
		Tags:                   asgTags,
		EnabledMetrics:         groupMetrics,
		InitialLifecycleHooks:  hooks,
		WaitForCapacityTimeout: wait,
	}
	if targetGroupArn != nil {
		args.TargetGroupArns = pulumi.StringArray{targetGroupArn}
		args.WaitForElbCapacity = pulumi.Int(1)
	}
	return autoscaling.NewGroup(ctx, name, args, opts...)
}

// groupMetrics are the group metrics the in-service alarm compares.
var groupMetrics = pulumi.StringArray{pulumi.String("GroupDesiredCapacity"), pulumi.String("GroupInServiceInstances")}

// userData renders a node to base64 user-data, as EC2 wants it.
func userData(node bootstrap.Node) (string, error) {
	data, err := node.UserData()
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(data), nil
}

// ZonalWiring is what a component of one node per zone (etcd members,
// control-plane nodes) is wired to.
type ZonalWiring struct {
	ClusterName string
	Region      string
	// Zones and SubnetIDs (private, one per zone, same order).
	Zones     []string
	SubnetIDs []pulumi.StringInput
	VpcID     pulumi.StringInput
	// KMSKeyArn encrypts the nodes' secrets (and etcd's backups).
	KMSKeyArn pulumi.StringInput
	// Assets is the bucket nodes install their binaries from.
	Assets *NodeAssets
	// BootstrapTimeoutMinutes: see ClusterArgs; zero means its default.
	BootstrapTimeoutMinutes int
}

func (w ZonalWiring) check(c checker) {
	c.clusterName("ClusterName", w.ClusterName)
	if w.Region == "" {
		c.add("Region", "not set", "an AWS region such as eu-west-1")
	}
	if len(w.Zones) < MinZones {
		c.add("Zones", fmt.Sprintf("%q", w.Zones), "at least 3 zones, so the cluster survives losing one")
	}
	if len(w.SubnetIDs) != len(w.Zones) {
		c.add("SubnetIDs", fmt.Sprintf("%d IDs", len(w.SubnetIDs)), fmt.Sprintf("one private subnet per zone: %d", len(w.Zones)))
	}
	if w.VpcID == nil {
		c.add("VpcID", "nil", "the VPC's ID")
	}
	if w.KMSKeyArn == nil {
		c.add("KMSKeyArn", "nil", "the cluster's KMS key")
	}
	checkBootstrapTimeout(c, w.BootstrapTimeoutMinutes)
	if w.Assets == nil {
		c.add("Assets", "nil", "the cluster's NodeAssets")
	}
}

var imagePattern = regexp.MustCompile(`^(ami-[0-9a-f]{8,17}|resolve:ssm:/\S+)$`)

func (c checker) imageID(field, image string) {
	c.matches(field, image, imagePattern, "an AMI ID such as ami-0123456789abcdef0, or resolve:ssm:/<parameter>")
}
