package components

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/autoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/vpc"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
)

// DefaultImage is the node image: the latest Debian 12, resolved by EC2 at
// each launch. Its cloud-init (22.4) is the version kubeha validates
// user-data with.
const DefaultImage = "resolve:ssm:/aws/service/debian/release/12/latest/amd64"

// policyStatement and policyDocument are IAM policy JSON.
type policyStatement struct {
	Sid       string                    `json:",omitempty"`
	Effect    string                    `json:"Effect"`
	Principal any                       `json:",omitempty"`
	Action    []string                  `json:"Action"`
	Resource  any                       `json:"Resource"`
	Condition map[string]map[string]any `json:",omitempty"`
}

type policyDocument struct {
	Version   string            `json:"Version"`
	Statement []policyStatement `json:"Statement"`
}

func policyJSON(statements ...policyStatement) string {
	out, err := json.Marshal(policyDocument{Version: "2012-10-17", Statement: statements})
	if err != nil {
		panic(err) // only plain strings and maps: cannot fail
	}
	return string(out)
}

// nodeIdentity is an instance's IAM role and profile: Session Manager for
// access (no SSH), plus the node's own inline policy.
func nodeIdentity(ctx *pulumi.Context, name string, policy pulumi.StringInput, tags pulumi.StringMap, managed []string, opts []pulumi.ResourceOption) (*iam.InstanceProfile, error) {
	role, err := iam.NewRole(ctx, name, &iam.RoleArgs{
		AssumeRolePolicy: pulumi.String(policyJSON(policyStatement{
			Effect: "Allow", Principal: map[string]string{"Service": "ec2.amazonaws.com"}, Action: []string{"sts:AssumeRole"}, Resource: nil,
		})),
		Tags: tags,
	}, opts...)
	if err != nil {
		return nil, err
	}
	// Session Manager instead of SSH, and any AWS-managed policies asked for,
	// each attachment named by the policy's last path segment.
	for _, arn := range append([]string{ssmPolicy}, managed...) {
		short := strings.ToLower(arn[strings.LastIndex(arn, "/")+1:])
		if _, err := iam.NewRolePolicyAttachment(ctx, name+"-"+short, &iam.RolePolicyAttachmentArgs{
			Role: role.Name, PolicyArn: pulumi.String(arn),
		}, opts...); err != nil {
			return nil, err
		}
	}
	if _, err := iam.NewRolePolicy(ctx, name, &iam.RolePolicyArgs{Role: role.Name, Policy: policy}, opts...); err != nil {
		return nil, err
	}
	return iam.NewInstanceProfile(ctx, name, &iam.InstanceProfileArgs{Role: role.Name, Tags: tags}, opts...)
}

// AWS-managed policies nodes use.
const (
	ssmPolicy = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
	ecrPolicy = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
	// CloudWatchAgentPolicy lets the CloudWatch agent and Fluent Bit send
	// metrics and logs, in the cloudwatch monitoring mode.
	CloudWatchAgentPolicy = "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"
)

// nodeTemplate is what differs between kubeha's launch templates.
type nodeTemplate struct {
	ImageID        string
	InstanceType   string
	RootVolumeGiB  int
	Profile        *iam.InstanceProfile
	SecurityGroups pulumi.StringArray
	UserData       pulumi.StringOutput // base64
	Tags           pulumi.StringMap
	// PodsUseNodeRole raises the IMDS hop limit to 2, so that pods reach
	// the node's role. Only control-plane nodes, which run nothing but the
	// system add-ons that act on AWS, set it.
	PodsUseNodeRole bool
}

// launchTemplate applies kubeha's node baseline: IMDSv2 only with a hop
// limit of 1 (pods cannot reach the node's credentials) unless
// PodsUseNodeRole, an encrypted gp3 root volume, no SSH key.
func launchTemplate(ctx *pulumi.Context, name string, t nodeTemplate, opts []pulumi.ResourceOption) (*ec2.LaunchTemplate, error) {
	return ec2.NewLaunchTemplate(ctx, name, &ec2.LaunchTemplateArgs{
		ImageId:              pulumi.String(t.ImageID),
		InstanceType:         pulumi.String(t.InstanceType),
		UserData:             t.UserData,
		VpcSecurityGroupIds:  t.SecurityGroups,
		IamInstanceProfile:   &ec2.LaunchTemplateIamInstanceProfileArgs{Arn: t.Profile.Arn},
		UpdateDefaultVersion: pulumi.Bool(true),
		MetadataOptions: &ec2.LaunchTemplateMetadataOptionsArgs{
			HttpEndpoint:            pulumi.String("enabled"),
			HttpTokens:              pulumi.String("required"),
			HttpPutResponseHopLimit: pulumi.Int(map[bool]int{false: 1, true: 2}[t.PodsUseNodeRole]),
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

// singleNodeGroup is an auto-scaling group of exactly one instance in one
// subnet: AWS replaces the instance if it dies, in the same zone. It uses
// EC2 health checks, so an unhealthy service never recycles the node.
// With a target group, the instance is registered in it and `pulumi up`
// waits until it passes the target group's health check: the readiness
// gate for whatever depends on the group.
func singleNodeGroup(ctx *pulumi.Context, name string, subnet pulumi.StringInput, template *ec2.LaunchTemplate, tags map[string]pulumi.StringInput,
	targetGroupArn pulumi.StringInput, opts []pulumi.ResourceOption) (*autoscaling.Group, error) {
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
	}
	if targetGroupArn != nil {
		args.TargetGroupArns = pulumi.StringArray{targetGroupArn}
		args.WaitForElbCapacity = pulumi.Int(1)
		// Installing packages and kubeadm take minutes; later zones wait
		// for the first to create the cluster.
		args.WaitForCapacityTimeout = pulumi.String("30m")
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

// storeSecret keeps files (name -> PEM) as one JSON secret under the
// cluster's KMS key.
func storeSecret(ctx *pulumi.Context, name string, kmsKeyArn pulumi.StringInput, tags pulumi.StringMap,
	opts []pulumi.ResourceOption, files map[string]pulumi.StringOutput) (*secretsmanager.Secret, error) {
	secret, err := secretsmanager.NewSecret(ctx, name, &secretsmanager.SecretArgs{
		NamePrefix:           pulumi.String(name + "-"),
		KmsKeyId:             kmsKeyArn,
		RecoveryWindowInDays: pulumi.Int(7),
		Tags:                 tags,
	}, opts...)
	if err != nil {
		return nil, err
	}
	var keys []string
	var values []any
	for _, k := range slices.Sorted(maps.Keys(files)) {
		keys = append(keys, k)
		values = append(values, files[k])
	}
	content := pulumi.All(values...).ApplyT(func(v []any) (string, error) {
		doc := map[string]string{}
		for i, k := range keys {
			doc[k] = v[i].(string)
		}
		out, err := json.Marshal(doc)
		return string(out), err
	}).(pulumi.StringOutput)
	_, err = secretsmanager.NewSecretVersion(ctx, name, &secretsmanager.SecretVersionArgs{
		SecretId: secret.ID(), SecretString: pulumi.ToSecret(content).(pulumi.StringOutput),
	}, opts...)
	return secret, err
}

// nodeGroupArgs are what every component of zonal node groups is given.
type nodeGroupArgs struct {
	ClusterName  string
	Zones        []string
	SubnetIDs    []pulumi.StringInput
	VpcID        pulumi.StringInput
	KMSKeyArn    pulumi.StringInput
	InstanceType string
}

// check names the first bad field, as component.Field.
func (a nodeGroupArgs) check(component string) error {
	bad := func(field, value, allowed string) error {
		return &config.FieldError{Key: component + "." + field, Value: value, Allowed: allowed}
	}
	switch {
	case a.ClusterName == "":
		return bad("ClusterName", "empty", "the cluster's name")
	case len(a.Zones) < 3:
		return bad("Zones", fmt.Sprintf("%q", a.Zones), "at least 3 zones, so the cluster survives losing one")
	case len(a.SubnetIDs) != len(a.Zones):
		return bad("SubnetIDs", fmt.Sprintf("%d IDs", len(a.SubnetIDs)), fmt.Sprintf("one private subnet per zone: %d", len(a.Zones)))
	case a.VpcID == nil || a.KMSKeyArn == nil:
		return bad("VpcID/KMSKeyArn", "nil", "the VPC and the cluster's KMS key")
	case a.InstanceType == "":
		return bad("InstanceType", "empty", "an EC2 instance type such as m6i.large")
	}
	return nil
}

// groupRule admits a port (TCP unless Protocol says udp) from the
// security group From.
type groupRule struct {
	Name     string
	Port     int
	From     pulumi.StringInput
	Protocol string
}

// allowFromGroups adds ingress rules to a security group that name other
// groups only, never a CIDR.
func allowFromGroups(ctx *pulumi.Context, prefix string, group pulumi.StringInput, rules []groupRule, opts []pulumi.ResourceOption) error {
	for _, rule := range rules {
		if _, err := vpc.NewSecurityGroupIngressRule(ctx, prefix+"-"+rule.Name, &vpc.SecurityGroupIngressRuleArgs{
			SecurityGroupId: group, ReferencedSecurityGroupId: rule.From, IpProtocol: pulumi.String(cmp.Or(rule.Protocol, "tcp")),
			FromPort: pulumi.Int(rule.Port), ToPort: pulumi.Int(rule.Port), Description: pulumi.String(rule.Name),
		}, opts...); err != nil {
			return err
		}
	}
	return nil
}
