package components

import (
	"encoding/json"
	"strings"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/oidc"
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

// attachManaged attaches AWS-managed policies to the role named name, each
// attachment named by the policy's last path segment.
func attachManaged(ctx *pulumi.Context, name string, role *iam.Role, arns []string, opts []pulumi.ResourceOption) error {
	for _, arn := range arns {
		short := strings.ToLower(arn[strings.LastIndex(arn, "/")+1:])
		if _, err := iam.NewRolePolicyAttachment(ctx, name+"-"+short, &iam.RolePolicyAttachmentArgs{
			Role: role.Name, PolicyArn: pulumi.String(arn),
		}, opts...); err != nil {
			return err
		}
	}
	return nil
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
	// Session Manager instead of SSH, and any AWS-managed policies asked for.
	if err := attachManaged(ctx, name, role, append([]string{ssmPolicy}, managed...), opts); err != nil {
		return nil, err
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
		protectEtcdVolumes,
		policyStatement{Sid: "FindOwnGroup", Effect: "Allow", Action: []string{"autoscaling:DescribeAutoScalingInstances"}, Resource: "*"},
		policyStatement{Sid: "ReportOwnLaunch", Effect: "Allow", Action: []string{"autoscaling:CompleteLifecycleAction", "autoscaling:SetInstanceHealth"}, Resource: "*",
			Condition: map[string]map[string]any{"StringEquals": {"autoscaling:ResourceTag/" + clusterTagKey(cluster): "owned"}}},
		policyStatement{Sid: "CountKubehaMetrics", Effect: "Allow", Action: []string{"cloudwatch:PutMetricData"}, Resource: "*",
			Condition: map[string]map[string]any{"StringEquals": {"cloudwatch:namespace": bootstrap.EtcdSnapshotMetricNamespace}}},
	)
}

// protectEtcdVolumes denies taking an etcd member's data volume away,
// whatever else a role allows: every node role and every add-on role
// holds it.
var protectEtcdVolumes = policyStatement{Sid: "ProtectEtcdVolumes", Effect: "Deny", Resource: "arn:aws:ec2:*:*:volume/*",
	Action:    []string{"ec2:DetachVolume", "ec2:DeleteVolume", "ec2:ModifyVolume", "ec2:CreateTags", "ec2:DeleteTags"},
	Condition: map[string]map[string]any{"Null": {"aws:ResourceTag/" + bootstrap.EtcdMemberTag: "false"}}}

// ownedBy is the condition that a resource is tagged as cluster's.
func ownedBy(cluster string) map[string]map[string]any {
	return map[string]map[string]any{"StringEquals": {"aws:ResourceTag/" + clusterTagKey(cluster): "owned"}}
}

// cloudControllerManagerPolicy is what the AWS cloud-controller-manager
// needs: reading instances and load balancers, and making and changing
// Service load balancers and their security groups, every change to an
// existing resource limited to the cluster's.
func cloudControllerManagerPolicy(cluster string) string {
	return policyJSON(
		policyStatement{Sid: "Describe", Effect: "Allow", Resource: "*", Action: []string{
			"autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeTags",
			"ec2:DescribeAvailabilityZones", "ec2:DescribeInstances", "ec2:DescribeInstanceTopology", "ec2:DescribeRegions",
			"ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVolumes", "ec2:DescribeVpcs",
			"elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeLoadBalancerAttributes",
			"elasticloadbalancing:DescribeLoadBalancerPolicies", "elasticloadbalancing:DescribeLoadBalancers",
			"elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTags",
		}},
		// Service load balancers and their security groups are new: no
		// tag to check yet. The CCM tags them as the cluster's at once.
		policyStatement{Sid: "CreateServiceLoadBalancers", Effect: "Allow", Resource: "*", Action: []string{
			"ec2:CreateSecurityGroup", "elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup",
			"elasticloadbalancing:CreateListener", "elasticloadbalancing:AddTags",
		}},
		policyStatement{Sid: "TagNewSecurityGroups", Effect: "Allow", Resource: "arn:aws:ec2:*:*:security-group/*", Action: []string{"ec2:CreateTags"},
			Condition: map[string]map[string]any{"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}}},
		policyStatement{Sid: "ChangeOwnedResources", Effect: "Allow", Resource: "*", Condition: ownedBy(cluster), Action: []string{
			"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup", "ec2:CreateTags",
			"ec2:ModifyInstanceAttribute",
			"elasticloadbalancing:ConfigureHealthCheck", "elasticloadbalancing:DeleteListener", "elasticloadbalancing:DeleteLoadBalancer",
			"elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:RegisterTargets",
			"elasticloadbalancing:ModifyListener", "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:ModifyTargetGroup",
			"elasticloadbalancing:SetLoadBalancerPoliciesOfListener", "elasticloadbalancing:CreateLoadBalancerPolicy",
		}},
		policyStatement{Sid: "LoadBalancerServiceRole", Effect: "Allow", Resource: "*", Action: []string{"iam:CreateServiceLinkedRole"},
			Condition: map[string]map[string]any{"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}},
		protectEtcdVolumes,
	)
}

// ebsCSIDriverPolicy is what the EBS CSI controller needs: new volumes and
// snapshots carry the cluster tag (the driver's k8sTagClusterId), and only
// the cluster's are attached, changed or deleted; never an etcd member's.
func ebsCSIDriverPolicy(cluster string) string {
	return policyJSON(
		policyStatement{Sid: "Describe", Effect: "Allow", Resource: "*", Action: []string{
			"ec2:DescribeAvailabilityZones", "ec2:DescribeInstances", "ec2:DescribeSnapshots", "ec2:DescribeTags",
			"ec2:DescribeVolumes", "ec2:DescribeVolumesModifications",
		}},
		policyStatement{Sid: "CreateOwnedVolumes", Effect: "Allow", Resource: "*", Action: []string{"ec2:CreateVolume", "ec2:CreateSnapshot"},
			Condition: map[string]map[string]any{"StringEquals": {"aws:RequestTag/" + clusterTagKey(cluster): "owned"}}},
		policyStatement{Sid: "TagNewVolumes", Effect: "Allow", Resource: []string{"arn:aws:ec2:*:*:volume/*", "arn:aws:ec2:*:*:snapshot/*"},
			Action: []string{"ec2:CreateTags"}, Condition: map[string]map[string]any{"StringEquals": {"ec2:CreateAction": []string{"CreateVolume", "CreateSnapshot"}}}},
		policyStatement{Sid: "ChangeOwnedVolumes", Effect: "Allow", Resource: "*", Condition: ownedBy(cluster), Action: []string{
			"ec2:AttachVolume", "ec2:DetachVolume", "ec2:ModifyVolume", "ec2:DeleteVolume", "ec2:DeleteSnapshot", "ec2:CreateTags",
		}},
		protectEtcdVolumes,
	)
}

// clusterAutoscalerPolicy: reading groups and instance types, and resizing
// worker groups only (the control-plane and etcd groups lack its tag).
func clusterAutoscalerPolicy(cluster string) string {
	return policyJSON(
		policyStatement{Sid: "Describe", Effect: "Allow", Resource: "*", Action: []string{
			"autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances", "autoscaling:DescribeLaunchConfigurations",
			"autoscaling:DescribeScalingActivities", "autoscaling:DescribeTags",
			"ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements",
		}},
		policyStatement{Sid: "ScaleWorkerGroups", Effect: "Allow", Resource: "*",
			Action:    []string{"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"},
			Condition: map[string]map[string]any{"StringEquals": {"aws:ResourceTag/" + AutoscalerClusterTag(cluster): "owned"}}},
		protectEtcdVolumes,
	)
}

// webIdentityTrust lets only serviceAccount (namespace:name) of the
// cluster whose issuer providerArn trusts assume a role, with a token for
// STS's audience.
func webIdentityTrust(providerArn, issuer, serviceAccount string) string {
	host := strings.TrimPrefix(issuer, "https://")
	return policyJSON(policyStatement{
		Effect: "Allow", Principal: map[string]string{"Federated": providerArn}, Action: []string{"sts:AssumeRoleWithWebIdentity"}, Resource: nil,
		Condition: map[string]map[string]any{"StringEquals": {
			host + ":sub": "system:serviceaccount:" + serviceAccount,
			host + ":aud": oidc.STSAudience,
		}},
	})
}

// AWS-managed policies nodes use.
const (
	ssmPolicy = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
	ecrPolicy = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
	// CloudWatchAgentPolicy lets the CloudWatch agent and Fluent Bit send
	// metrics and logs, in the cloudwatch monitoring mode: on their own
	// role, never a node's.
	CloudWatchAgentPolicy = "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"
)
