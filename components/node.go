package components

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"slices"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/autoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
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
func nodeIdentity(ctx *pulumi.Context, name string, policy pulumi.StringInput, tags pulumi.StringMap, opts []pulumi.ResourceOption) (*iam.InstanceProfile, error) {
	role, err := iam.NewRole(ctx, name, &iam.RoleArgs{
		AssumeRolePolicy: pulumi.String(policyJSON(policyStatement{
			Effect: "Allow", Principal: map[string]string{"Service": "ec2.amazonaws.com"}, Action: []string{"sts:AssumeRole"}, Resource: nil,
		})),
		Tags: tags,
	}, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := iam.NewRolePolicyAttachment(ctx, name+"-ssm", &iam.RolePolicyAttachmentArgs{
		Role: role.Name, PolicyArn: pulumi.String("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"),
	}, opts...); err != nil {
		return nil, err
	}
	if _, err := iam.NewRolePolicy(ctx, name, &iam.RolePolicyArgs{Role: role.Name, Policy: policy}, opts...); err != nil {
		return nil, err
	}
	return iam.NewInstanceProfile(ctx, name, &iam.InstanceProfileArgs{Role: role.Name, Tags: tags}, opts...)
}

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

// launchTemplate applies kubeha's node baseline: IMDSv2 only with a hop
// limit of 1 (pods cannot reach the node's credentials), an encrypted gp3
// root volume, no SSH key.
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

// singleNodeGroup is an auto-scaling group of exactly one instance in one
// subnet: AWS replaces the instance if it dies, in the same zone. It uses
// EC2 health checks, so an unhealthy service never recycles the node.
func singleNodeGroup(ctx *pulumi.Context, name string, subnet pulumi.StringInput, template *ec2.LaunchTemplate, tags map[string]pulumi.StringInput, opts []pulumi.ResourceOption) (*autoscaling.Group, error) {
	var asgTags autoscaling.GroupTagArray
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		asgTags = append(asgTags, autoscaling.GroupTagArgs{Key: pulumi.String(k), Value: tags[k], PropagateAtLaunch: pulumi.Bool(true)})
	}
	return autoscaling.NewGroup(ctx, name, &autoscaling.GroupArgs{
		MinSize:                pulumi.Int(1),
		MaxSize:                pulumi.Int(1),
		DesiredCapacity:        pulumi.Int(1),
		VpcZoneIdentifiers:     pulumi.StringArray{subnet},
		HealthCheckType:        pulumi.String("EC2"),
		HealthCheckGracePeriod: pulumi.Int(300),
		LaunchTemplate:         &autoscaling.GroupLaunchTemplateArgs{Id: template.ID(), Version: pulumi.Sprintf("%d", template.LatestVersion)},
		Tags:                   asgTags,
	}, opts...)
}

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
