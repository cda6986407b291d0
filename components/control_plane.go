package components

import (
	"fmt"
	"regexp"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/autoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/vpc"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/pki"
)

// LeaderElection is the Lease timing of kube-scheduler and
// kube-controller-manager.
type LeaderElection = bootstrap.LeaderElection

// DefaultLeaderElection is Kubernetes' own: a dead holder is replaced
// within about 15 s.
var DefaultLeaderElection = LeaderElection{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}

// ControlPlaneArgs describes the control-plane nodes.
type ControlPlaneArgs struct {
	ClusterName       string
	Region            string
	KubernetesVersion string
	// Zones and SubnetIDs (private, one per zone, same order): one node each.
	Zones     []string
	SubnetIDs []pulumi.StringInput
	VpcID     pulumi.StringInput
	KMSKeyArn pulumi.StringInput
	// Etcd and LoadBalancer are the cluster's EtcdCluster and ApiLoadBalancer.
	Etcd         *EtcdCluster
	LoadBalancer *ApiLoadBalancer
	InstanceType string
	PodCIDR      string
	ServiceCIDR  string
	// LeaderElection zero means DefaultLeaderElection.
	LeaderElection LeaderElection
	// ImageID defaults to DefaultImage.
	ImageID string
	Tags    map[string]string
	// SkipCoreDNS and ServeMetrics: see bootstrap.ControlPlane. Cluster
	// sets them from its Addons.
	SkipCoreDNS  bool
	ServeMetrics bool
	// ManagedPolicyArns are AWS-managed policies added to the nodes' role.
	ManagedPolicyArns []string
}

// ControlPlane is one control-plane node per zone, each an auto-scaling
// group of one registered with the API load balancer. Every node runs
// kube-apiserver against the external etcd, and kube-scheduler and
// kube-controller-manager under Lease leader election.
type ControlPlane struct {
	pulumi.ResourceState

	// Endpoint is https://<load balancer>:6443.
	Endpoint  pulumi.StringOutput
	CACertPEM pulumi.StringOutput
	// Kubeconfig is a cluster-admin kubeconfig for Endpoint (secret).
	Kubeconfig      pulumi.StringOutput
	SecurityGroupID pulumi.StringOutput
	// Groups are the nodes' auto-scaling groups, in zone order. Each waits
	// for its node to pass the load balancer's /readyz check, so anything
	// that depends on them starts against a serving API.
	Groups []*autoscaling.Group
	// JoinSecretArn holds the join token and CA for worker nodes.
	JoinSecretArn pulumi.StringOutput
	// endpointHost is the endpoint's DNS name, which nodes join through.
	endpointHost pulumi.StringOutput
}

var kubernetesVersionPattern = regexp.MustCompile(`^v1\.\d+\.\d+$`)

func (args *ControlPlaneArgs) validate() error {
	bad := func(field, value, allowed string) error {
		return &config.FieldError{Key: "ControlPlaneArgs." + field, Value: value, Allowed: allowed}
	}
	if args.ImageID == "" {
		args.ImageID = DefaultImage
	}
	if args.LeaderElection == (LeaderElection{}) {
		args.LeaderElection = DefaultLeaderElection
	}
	le := args.LeaderElection
	if err := (nodeGroupArgs{args.ClusterName, args.Zones, args.SubnetIDs, args.VpcID, args.KMSKeyArn, args.InstanceType}).check("ControlPlaneArgs"); err != nil {
		return err
	}
	switch {
	case !kubernetesVersionPattern.MatchString(args.KubernetesVersion):
		return bad("KubernetesVersion", fmt.Sprintf("%q", args.KubernetesVersion), "vMAJOR.MINOR.PATCH, such as v1.36.3")
	case args.Etcd == nil || args.LoadBalancer == nil:
		return bad("Etcd/LoadBalancer", "nil", "the cluster's EtcdCluster and ApiLoadBalancer")
	case args.PodCIDR == "" || args.ServiceCIDR == "":
		return bad("PodCIDR/ServiceCIDR", "empty", "the pod and service CIDRs")
	case le.RetryPeriod < time.Second || le.RenewDeadline <= le.RetryPeriod || le.LeaseDuration <= le.RenewDeadline:
		return bad("LeaderElection", fmt.Sprintf("%s/%s/%s", le.LeaseDuration, le.RenewDeadline, le.RetryPeriod),
			"lease duration > renew deadline > retry period >= 1s")
	}
	return nil
}

// NewControlPlane declares the shared PKI and secrets, the security group,
// and one node per zone.
func NewControlPlane(ctx *pulumi.Context, name string, args *ControlPlaneArgs, opts ...pulumi.ResourceOption) (*ControlPlane, error) {
	if err := args.validate(); err != nil {
		return nil, err
	}
	c := &ControlPlane{}
	if err := ctx.RegisterComponentResource("kubeha:index:ControlPlane", name, c, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(c)}
	tags := func(resource string, extra ...string) pulumi.StringMap {
		return clusterTags(args.ClusterName, resource, args.Tags, extra...)
	}

	if err := c.securityGroup(ctx, name, args, tags, child); err != nil {
		return nil, err
	}
	secrets, err := c.sharedSecrets(ctx, name, args, tags, child)
	if err != nil {
		return nil, err
	}
	c.Endpoint, c.endpointHost = args.LoadBalancer.Endpoint, args.LoadBalancer.DNSName

	var etcdEndpoints []string
	for _, m := range args.Etcd.Members {
		etcdEndpoints = append(etcdEndpoints, m.ClientURL())
	}
	rendered := bootstrap.ControlPlane{
		ClusterName: args.ClusterName, KubernetesVersion: args.KubernetesVersion,
		PodCIDR: args.PodCIDR, ServiceCIDR: args.ServiceCIDR, EtcdEndpoints: etcdEndpoints,
		LeaderElection: args.LeaderElection, InitZone: args.Zones[0],
		SkipCoreDNS: args.SkipCoreDNS, ServeMetrics: args.ServeMetrics,
	}
	policy := pulumi.All(secrets.Arn, args.KMSKeyArn).ApplyT(func(v []any) string {
		return controlPlanePolicy(args.ClusterName, args.Region, v[0].(string), v[1].(string))
	}).(pulumi.StringOutput)
	profile, err := nodeIdentity(ctx, name, policy, tags(name), args.ManagedPolicyArns, child)
	if err != nil {
		return nil, err
	}
	for i, zone := range args.Zones {
		nodeName := fmt.Sprintf("%s-%s", name, zone)
		data := pulumi.All(args.LoadBalancer.DNSName, secrets.Arn, c.CACertPEM).ApplyT(func(v []any) (string, error) {
			r := rendered
			r.Endpoint = v[0].(string)
			node, err := r.Node(bootstrap.ControlPlaneParams{Zone: zone, Region: args.Region, SecretID: v[1].(string), CACertPEM: v[2].(string)})
			if err != nil {
				return "", err
			}
			return userData(node)
		}).(pulumi.StringOutput)
		template, err := launchTemplate(ctx, nodeName, nodeTemplate{
			ImageID: args.ImageID, InstanceType: args.InstanceType, RootVolumeGiB: 50, Profile: profile,
			SecurityGroups: pulumi.StringArray{c.SecurityGroupID, args.Etcd.ClientSecurityGroupID},
			UserData:       data, Tags: tags(nodeName, controlPlaneTag, "true"),
			// The EBS CSI controller has no host-network mode; it and the
			// other AWS-facing add-ons run here only.
			PodsUseNodeRole: true,
		}, child)
		if err != nil {
			return nil, err
		}
		group, err := singleNodeGroup(ctx, nodeName, args.SubnetIDs[i], template, map[string]pulumi.StringInput{
			"Name": pulumi.String(nodeName), controlPlaneTag: pulumi.String("true"), clusterTagKey(args.ClusterName): pulumi.String("owned"),
		}, args.LoadBalancer.TargetGroupArn, child)
		if err != nil {
			return nil, err
		}
		c.Groups = append(c.Groups, group)
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"endpoint": c.Endpoint, "caCertPem": c.CACertPEM, "kubeconfig": c.Kubeconfig,
		"securityGroupId": c.SecurityGroupID, "joinSecretArn": c.JoinSecretArn,
	})
}

// controlPlaneTag marks control-plane instances.
const controlPlaneTag = "kubeha.io/control-plane"

// securityGroup: the API only from the load balancer (which holds the
// client allowlist) and the other control-plane nodes; kubelet only from
// the control plane.
func (c *ControlPlane) securityGroup(ctx *pulumi.Context, name string, args *ControlPlaneArgs, tags func(string, ...string) pulumi.StringMap, opts []pulumi.ResourceOption) error {
	sg, err := ec2.NewSecurityGroup(ctx, name, &ec2.SecurityGroupArgs{
		VpcId: args.VpcID, Description: pulumi.String("Kubernetes control-plane nodes of " + args.ClusterName), Tags: tags(name),
	}, opts...)
	if err != nil {
		return err
	}
	if err := allowFromGroups(ctx, name, sg.ID(), []groupRule{
		{Name: "api-from-load-balancer", Port: bootstrap.APIServerPort, From: args.LoadBalancer.SecurityGroupID},
		{Name: "api-from-control-plane", Port: bootstrap.APIServerPort, From: sg.ID()},
		{Name: "kubelet-from-control-plane", Port: kubeletPort, From: sg.ID()},
	}, opts); err != nil {
		return err
	}
	// Nodes reach etcd, AWS APIs and package mirrors.
	if _, err := vpc.NewSecurityGroupEgressRule(ctx, name+"-egress", &vpc.SecurityGroupEgressRuleArgs{
		SecurityGroupId: sg.ID(), IpProtocol: pulumi.String("-1"), CidrIpv4: pulumi.String("0.0.0.0/0"),
	}, opts...); err != nil {
		return err
	}
	c.SecurityGroupID = sg.ID().ToStringOutput()
	return nil
}

// kubeletPort is the kubelet's API, which the API server calls for logs,
// exec and metrics.
const kubeletPort = 10250

// sharedSecrets makes what every control-plane node shares (the CAs, the
// service-account key, the join token and the encryption key), stores it
// in one secret with bootstrap.ControlPlaneSecretFiles as its entries,
// and makes the admin kubeconfig.
func (c *ControlPlane) sharedSecrets(ctx *pulumi.Context, name string, args *ControlPlaneArgs, tags func(string, ...string) pulumi.StringMap, opts []pulumi.ResourceOption) (*secretsmanager.Secret, error) {
	ca, err := issueCA(ctx, name+"-ca", pki.KubernetesCA(args.ClusterName), opts)
	if err != nil {
		return nil, err
	}
	frontProxy, err := issueCA(ctx, name+"-front-proxy-ca", pki.FrontProxyCA(args.ClusterName), opts)
	if err != nil {
		return nil, err
	}
	serviceAccount, err := newKey(ctx, name+"-service-account", opts)
	if err != nil {
		return nil, err
	}
	token, err := joinToken(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	encryptionKey, err := random.NewRandomBytes(ctx, name+"-encryption-key", &random.RandomBytesArgs{Length: pulumi.Int(32)}, opts...)
	if err != nil {
		return nil, err
	}
	secret, err := storeSecret(ctx, name, args.KMSKeyArn, tags(name), opts, map[string]pulumi.StringOutput{
		"pki/ca.crt": ca.CertPEM, "pki/ca.key": ca.KeyPEM,
		"pki/front-proxy-ca.crt": frontProxy.CertPEM, "pki/front-proxy-ca.key": frontProxy.KeyPEM,
		"pki/sa.key": pulumi.ToSecret(serviceAccount.PrivateKeyPem).(pulumi.StringOutput), "pki/sa.pub": serviceAccount.PublicKeyPem,
		"pki/etcd/ca.crt": args.Etcd.CACertPEM, "pki/apiserver-etcd-client.crt": args.Etcd.ClientCertPEM,
		"pki/apiserver-etcd-client.key": args.Etcd.ClientKeyPEM,
		"bootstrap-token":               token, "encryption-key": encryptionKey.Base64,
	})
	if err != nil {
		return nil, err
	}
	// Workers need only the CA and the token.
	join, err := storeSecret(ctx, name+"-join", args.KMSKeyArn, tags(name+"-join"), opts, map[string]pulumi.StringOutput{
		"pki/ca.crt": ca.CertPEM, "bootstrap-token": token,
	})
	if err != nil {
		return nil, err
	}
	admin, err := issueCert(ctx, name+"-admin", pki.KubernetesAdmin(), ca, opts)
	if err != nil {
		return nil, err
	}
	c.CACertPEM, c.JoinSecretArn = ca.CertPEM, join.Arn
	c.Kubeconfig = pulumi.ToSecret(pulumi.All(args.LoadBalancer.Endpoint, ca.CertPEM, admin.CertPEM, admin.KeyPEM).ApplyT(func(v []any) (string, error) {
		return bootstrap.AdminKubeconfig(args.ClusterName, v[0].(string), v[1].(string), v[2].(string), v[3].(string))
	})).(pulumi.StringOutput)
	return secret, nil
}

// joinToken is a kubeadm bootstrap token, [a-z0-9]{6}.[a-z0-9]{16}.
// Replacing it (`pulumi up --replace` on its two parts) rotates it.
func joinToken(ctx *pulumi.Context, name string, opts []pulumi.ResourceOption) (pulumi.StringOutput, error) {
	part := func(suffix string, length int) (*random.RandomString, error) {
		return random.NewRandomString(ctx, name+"-join-token-"+suffix, &random.RandomStringArgs{
			Length: pulumi.Int(length), Upper: pulumi.Bool(false), Special: pulumi.Bool(false),
		}, opts...)
	}
	id, err := part("id", 6)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	secret, err := part("secret", 16)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	return pulumi.ToSecret(pulumi.Sprintf("%s.%s", id.Result, secret.Result)).(pulumi.StringOutput), nil
}

// controlPlanePolicy is what the AWS cloud-controller-manager needs, with
// every change to an existing resource limited to resources tagged as
// this cluster's, plus reading the node's own secret.
func controlPlanePolicy(cluster, region, secretArn, keyArn string) string {
	owned := map[string]map[string]any{"StringEquals": {"aws:ResourceTag/" + clusterTagKey(cluster): "owned"}}
	return policyJSON(
		policyStatement{Sid: "Describe", Effect: "Allow", Resource: "*", Action: []string{
			"autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeTags",
			"ec2:DescribeAvailabilityZones", "ec2:DescribeInstances", "ec2:DescribeInstanceTopology", "ec2:DescribeRegions",
			"ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVolumes", "ec2:DescribeVpcs",
			"elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeLoadBalancerAttributes",
			"elasticloadbalancing:DescribeLoadBalancerPolicies", "elasticloadbalancing:DescribeLoadBalancers",
			"elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTags",
			// EBS CSI controller and cluster-autoscaler, which run here.
			"ec2:DescribeSnapshots", "ec2:DescribeVolumesModifications", "ec2:DescribeTags", "ec2:DescribeInstanceTypes",
			"ec2:DescribeLaunchTemplateVersions", "ec2:DescribeImages", "ec2:GetInstanceTypesFromInstanceRequirements",
			"autoscaling:DescribeAutoScalingInstances", "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
		}},
		// New volumes and snapshots must carry the cluster tag (the EBS CSI
		// driver's k8sTagClusterId), so that the rules below apply to them.
		policyStatement{Sid: "CreateOwnedVolumes", Effect: "Allow", Resource: "*", Action: []string{"ec2:CreateVolume", "ec2:CreateSnapshot"},
			Condition: map[string]map[string]any{"StringEquals": {"aws:RequestTag/" + clusterTagKey(cluster): "owned"}}},
		policyStatement{Sid: "TagNewVolumes", Effect: "Allow", Resource: []string{"arn:aws:ec2:*:*:volume/*", "arn:aws:ec2:*:*:snapshot/*"},
			Action: []string{"ec2:CreateTags"}, Condition: map[string]map[string]any{"StringEquals": {"ec2:CreateAction": []string{"CreateVolume", "CreateSnapshot"}}}},
		// cluster-autoscaler resizes worker groups only: the control-plane
		// and etcd groups lack its tag.
		policyStatement{Sid: "ScaleWorkerGroups", Effect: "Allow", Resource: "*",
			Action:    []string{"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"},
			Condition: map[string]map[string]any{"StringEquals": {"aws:ResourceTag/" + AutoscalerClusterTag(cluster): "owned"}}},
		// Service load balancers and their security groups are new: no
		// tag to check yet. The CCM tags them as the cluster's at once.
		policyStatement{Sid: "CreateServiceLoadBalancers", Effect: "Allow", Resource: "*", Action: []string{
			"ec2:CreateSecurityGroup", "elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup",
			"elasticloadbalancing:CreateListener", "elasticloadbalancing:AddTags",
		}},
		policyStatement{Sid: "TagNewSecurityGroups", Effect: "Allow", Resource: "arn:aws:ec2:*:*:security-group/*", Action: []string{"ec2:CreateTags"},
			Condition: map[string]map[string]any{"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}}},
		policyStatement{Sid: "ChangeOwnedResources", Effect: "Allow", Resource: "*", Condition: owned, Action: []string{
			"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup", "ec2:CreateTags",
			"ec2:ModifyInstanceAttribute", "ec2:ModifyVolume", "ec2:AttachVolume", "ec2:DetachVolume", "ec2:DeleteVolume", "ec2:DeleteSnapshot",
			"elasticloadbalancing:ConfigureHealthCheck", "elasticloadbalancing:DeleteListener", "elasticloadbalancing:DeleteLoadBalancer",
			"elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:RegisterTargets",
			"elasticloadbalancing:ModifyListener", "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:ModifyTargetGroup",
			"elasticloadbalancing:SetLoadBalancerPoliciesOfListener", "elasticloadbalancing:CreateLoadBalancerPolicy",
		}},
		policyStatement{Sid: "LoadBalancerServiceRole", Effect: "Allow", Resource: "*", Action: []string{"iam:CreateServiceLinkedRole"},
			Condition: map[string]map[string]any{"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}},
		policyStatement{Sid: "ReadOwnSecret", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"}, Resource: secretArn},
		policyStatement{Sid: "UseClusterKey", Effect: "Allow", Action: []string{"kms:Decrypt"}, Resource: keyArn,
			Condition: map[string]map[string]any{"StringEquals": {"kms:ViaService": "secretsmanager." + region + ".amazonaws.com"}}},
	)
}
