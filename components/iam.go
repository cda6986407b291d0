package components

import (
	"encoding/json"
	"strings"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

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
// access (no SSH), what every node's first boot needs (bootstrapPolicy),
// plus the node's own inline policy.
func nodeIdentity(ctx *pulumi.Context, name, cluster string, policy pulumi.StringInput, tags pulumi.StringMap, managed []string, opts []pulumi.ResourceOption) (*iam.InstanceProfile, error) {
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
	if _, err := iam.NewRolePolicy(ctx, name+"-bootstrap", &iam.RolePolicyArgs{Role: role.Name, Policy: pulumi.String(bootstrapPolicy(cluster))}, opts...); err != nil {
		return nil, err
	}
	return iam.NewInstanceProfile(ctx, name, &iam.InstanceProfileArgs{Role: role.Name, Tags: tags}, opts...)
}

// bootstrapPolicy is what every node's role holds: finding its
// auto-scaling group, completing its own launch hook or marking itself
// unhealthy (only in the cluster's groups), sending kubeha's metrics (a
// failed bootstrap, snapshots, add-on runs); and, denied whatever else the
// role allows, taking an etcd member's data volume away. The control
// plane's role may change the cluster's volumes (the EBS CSI driver's
// rights), so a pod that reached it could otherwise detach or delete one.
func bootstrapPolicy(cluster string) string {
	return policyJSON(
		policyStatement{Sid: "ProtectEtcdVolumes", Effect: "Deny", Resource: "arn:aws:ec2:*:*:volume/*",
			Action:    []string{"ec2:DetachVolume", "ec2:DeleteVolume", "ec2:ModifyVolume", "ec2:CreateTags", "ec2:DeleteTags"},
			Condition: map[string]map[string]any{"Null": {"aws:ResourceTag/" + bootstrap.EtcdMemberTag: "false"}}},
		policyStatement{Sid: "FindOwnGroup", Effect: "Allow", Action: []string{"autoscaling:DescribeAutoScalingInstances"}, Resource: "*"},
		policyStatement{Sid: "ReportOwnLaunch", Effect: "Allow", Action: []string{"autoscaling:CompleteLifecycleAction", "autoscaling:SetInstanceHealth"}, Resource: "*",
			Condition: map[string]map[string]any{"StringEquals": {"autoscaling:ResourceTag/" + clusterTagKey(cluster): "owned"}}},
		policyStatement{Sid: "CountKubehaMetrics", Effect: "Allow", Action: []string{"cloudwatch:PutMetricData"}, Resource: "*",
			Condition: map[string]map[string]any{"StringEquals": {"cloudwatch:namespace": bootstrap.EtcdSnapshotMetricNamespace}}},
	)
}

// AWS-managed policies nodes use.
const (
	ssmPolicy = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
	ecrPolicy = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
	// CloudWatchAgentPolicy lets the CloudWatch agent and Fluent Bit send
	// metrics and logs, in the cloudwatch monitoring mode.
	CloudWatchAgentPolicy = "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"
)
