package components

import (
	"fmt"
	"net/netip"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/route53"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/vpc"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
)

// APIPort is where every API server and the load balancer listen.
const APIPort = 6443

// HealthCheck is the load balancer's check of each API server. Zero fields
// take DefaultHealthCheck's values.
type HealthCheck struct {
	IntervalSeconds    int
	TimeoutSeconds     int
	HealthyThreshold   int
	UnhealthyThreshold int
}

// DefaultHealthCheck takes a dead API server out of rotation within 10 s.
var DefaultHealthCheck = HealthCheck{IntervalSeconds: 5, TimeoutSeconds: 3, HealthyThreshold: 2, UnhealthyThreshold: 2}

// ApiLoadBalancerArgs describes the API endpoint.
type ApiLoadBalancerArgs struct {
	ClusterName string
	VpcID       pulumi.StringInput
	// VpcCidr: the API servers' addresses, which the load balancer forwards to.
	VpcCidr pulumi.StringInput
	// SubnetIDs, one per zone: public subnets when Public, else private.
	SubnetIDs []pulumi.StringInput
	Public    bool
	// AllowedCidrs may reach 6443. The VPC itself always may, and so may
	// ExtraAllowedIPs (e.g. the NAT addresses nodes use to reach a public
	// endpoint).
	AllowedCidrs               []string
	ExtraAllowedIPs            []pulumi.StringOutput
	HealthCheck                HealthCheck
	DeregistrationDelaySeconds int
	// DNSName and HostedZoneID, both or neither, add an alias record.
	DNSName      string
	HostedZoneID pulumi.StringInput
	// Protect turns on the load balancer's deletion protection.
	Protect bool
	Tags    map[string]string
}

// ApiLoadBalancer is a Network Load Balancer in front of every API server:
// TCP passthrough on 6443, cross-zone, and an HTTPS GET /readyz health
// check, so a node whose API server lost etcd leaves rotation even though
// it still accepts TCP.
type ApiLoadBalancer struct {
	pulumi.ResourceState

	// DNSName is the endpoint's name: the alias if given, else the NLB's.
	DNSName pulumi.StringOutput
	// Endpoint is https://DNSName:6443, kubeadm's controlPlaneEndpoint.
	Endpoint        pulumi.StringOutput
	TargetGroupArn  pulumi.StringOutput
	SecurityGroupID pulumi.StringOutput
	// ArnSuffix and TargetGroupArnSuffix name the NLB in CloudWatch.
	ArnSuffix            pulumi.StringOutput
	TargetGroupArnSuffix pulumi.StringOutput
}

func (args *ApiLoadBalancerArgs) validate() error {
	bad := func(field, value, allowed string) error {
		return &config.FieldError{Key: "ApiLoadBalancerArgs." + field, Value: value, Allowed: allowed}
	}
	d := DefaultHealthCheck
	h := &args.HealthCheck
	for _, f := range []struct {
		v   *int
		def int
	}{{&h.IntervalSeconds, d.IntervalSeconds}, {&h.TimeoutSeconds, d.TimeoutSeconds},
		{&h.HealthyThreshold, d.HealthyThreshold}, {&h.UnhealthyThreshold, d.UnhealthyThreshold}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	switch {
	case args.ClusterName == "":
		return bad("ClusterName", "empty", "the cluster's name")
	case len(args.SubnetIDs) < 2:
		return bad("SubnetIDs", fmt.Sprintf("%d IDs", len(args.SubnetIDs)), "one subnet per zone, at least 2")
	case args.VpcID == nil || args.VpcCidr == nil:
		return bad("VpcID/VpcCidr", "nil", "the VPC and its CIDR")
	case h.IntervalSeconds < 5 || h.IntervalSeconds > 300:
		return bad("HealthCheck.IntervalSeconds", fmt.Sprint(h.IntervalSeconds), "5 to 300")
	case h.TimeoutSeconds < 2 || h.TimeoutSeconds >= h.IntervalSeconds:
		return bad("HealthCheck.TimeoutSeconds", fmt.Sprint(h.TimeoutSeconds), "2 or more, and less than the interval")
	case h.HealthyThreshold < 2 || h.HealthyThreshold > 10 || h.UnhealthyThreshold < 2 || h.UnhealthyThreshold > 10:
		return bad("HealthCheck thresholds", fmt.Sprintf("%d/%d", h.HealthyThreshold, h.UnhealthyThreshold), "2 to 10 each")
	case (args.DNSName == "") != (args.HostedZoneID == nil):
		return bad("DNSName/HostedZoneID", args.DNSName, "both set, or neither")
	case args.Public && len(args.AllowedCidrs) == 0:
		return bad("AllowedCidrs", "empty", "at least one CIDR for a public endpoint")
	}
	for _, c := range args.AllowedCidrs {
		if p, err := netip.ParsePrefix(c); err != nil || !p.Addr().Is4() {
			return bad("AllowedCidrs", fmt.Sprintf("%q", c), "IPv4 CIDRs such as 203.0.113.0/24")
		}
	}
	return nil
}

// NewApiLoadBalancer declares the load balancer, its listener, target
// group and security group.
func NewApiLoadBalancer(ctx *pulumi.Context, name string, args *ApiLoadBalancerArgs, opts ...pulumi.ResourceOption) (*ApiLoadBalancer, error) {
	if err := args.validate(); err != nil {
		return nil, err
	}
	a := &ApiLoadBalancer{}
	if err := ctx.RegisterComponentResource("kubeha:index:ApiLoadBalancer", name, a, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(a)}
	tags := func(resource string) pulumi.StringMap { return clusterTags(args.ClusterName, resource, args.Tags) }

	sg, err := ec2.NewSecurityGroup(ctx, name, &ec2.SecurityGroupArgs{
		VpcId: args.VpcID, Description: pulumi.String("Kubernetes API load balancer of " + args.ClusterName), Tags: tags(name),
	}, child...)
	if err != nil {
		return nil, err
	}
	sources := []pulumi.StringInput{args.VpcCidr}
	for _, c := range args.AllowedCidrs {
		sources = append(sources, pulumi.String(c))
	}
	for _, ip := range args.ExtraAllowedIPs {
		sources = append(sources, pulumi.Sprintf("%s/32", ip))
	}
	for i, source := range sources {
		if _, err := vpc.NewSecurityGroupIngressRule(ctx, fmt.Sprintf("%s-clients-%d", name, i), &vpc.SecurityGroupIngressRuleArgs{
			SecurityGroupId: sg.ID(), CidrIpv4: source, IpProtocol: pulumi.String("tcp"),
			FromPort: pulumi.Int(APIPort), ToPort: pulumi.Int(APIPort), Description: pulumi.String("Kubernetes API clients"),
		}, child...); err != nil {
			return nil, err
		}
	}
	// Traffic and health checks go to the API servers, inside the VPC.
	if _, err := vpc.NewSecurityGroupEgressRule(ctx, name+"-to-api-servers", &vpc.SecurityGroupEgressRuleArgs{
		SecurityGroupId: sg.ID(), CidrIpv4: args.VpcCidr, IpProtocol: pulumi.String("tcp"),
		FromPort: pulumi.Int(APIPort), ToPort: pulumi.Int(APIPort),
	}, child...); err != nil {
		return nil, err
	}

	nlb, err := lb.NewLoadBalancer(ctx, name, &lb.LoadBalancerArgs{
		LoadBalancerType:             pulumi.String("network"),
		Internal:                     pulumi.Bool(!args.Public),
		Subnets:                      pulumi.ToStringArrayOutput(toOutputs(args.SubnetIDs)),
		SecurityGroups:               pulumi.StringArray{sg.ID()},
		EnableCrossZoneLoadBalancing: pulumi.Bool(true),
		EnableDeletionProtection:     pulumi.Bool(args.Protect),
		Tags:                         tags(name),
	}, child...)
	if err != nil {
		return nil, err
	}
	h := args.HealthCheck
	tg, err := lb.NewTargetGroup(ctx, name, &lb.TargetGroupArgs{
		VpcId:      args.VpcID,
		Port:       pulumi.Int(APIPort),
		Protocol:   pulumi.String("TCP"),
		TargetType: pulumi.String("instance"),
		// The NLB, not the client, is the source: a control-plane node that
		// reaches the API through the NLB may land on itself (hairpin).
		PreserveClientIp:    pulumi.String("false"),
		DeregistrationDelay: pulumi.Int(args.DeregistrationDelaySeconds),
		HealthCheck: &lb.TargetGroupHealthCheckArgs{
			Enabled:            pulumi.Bool(true),
			Protocol:           pulumi.String("HTTPS"),
			Path:               pulumi.String(bootstrap.HealthCheckPath),
			Port:               pulumi.String("traffic-port"),
			Matcher:            pulumi.String("200"),
			Interval:           pulumi.Int(h.IntervalSeconds),
			Timeout:            pulumi.Int(h.TimeoutSeconds),
			HealthyThreshold:   pulumi.Int(h.HealthyThreshold),
			UnhealthyThreshold: pulumi.Int(h.UnhealthyThreshold),
		},
		Tags: tags(name),
	}, child...)
	if err != nil {
		return nil, err
	}
	if _, err := lb.NewListener(ctx, name, &lb.ListenerArgs{
		LoadBalancerArn: nlb.Arn,
		Port:            pulumi.Int(APIPort),
		Protocol:        pulumi.String("TCP"),
		DefaultActions:  lb.ListenerDefaultActionArray{lb.ListenerDefaultActionArgs{Type: pulumi.String("forward"), TargetGroupArn: tg.Arn}},
		Tags:            tags(name),
	}, child...); err != nil {
		return nil, err
	}

	a.DNSName = nlb.DnsName
	if args.DNSName != "" {
		record, err := route53.NewRecord(ctx, name, &route53.RecordArgs{
			ZoneId: args.HostedZoneID, Name: pulumi.String(args.DNSName), Type: pulumi.String("A"),
			Aliases: route53.RecordAliasArray{route53.RecordAliasArgs{Name: nlb.DnsName, ZoneId: nlb.ZoneId, EvaluateTargetHealth: pulumi.Bool(true)}},
		}, child...)
		if err != nil {
			return nil, err
		}
		a.DNSName = record.Fqdn
	}
	a.Endpoint = pulumi.Sprintf("https://%s:%d", a.DNSName, APIPort)
	a.TargetGroupArn, a.SecurityGroupID = tg.Arn, sg.ID().ToStringOutput()
	a.ArnSuffix, a.TargetGroupArnSuffix = nlb.ArnSuffix, tg.ArnSuffix
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{
		"dnsName": a.DNSName, "endpoint": a.Endpoint, "targetGroupArn": a.TargetGroupArn, "securityGroupId": a.SecurityGroupID,
	})
}

// toOutputs widens a slice of inputs for pulumi.ToStringArrayOutput.
func toOutputs(in []pulumi.StringInput) []pulumi.StringOutput {
	out := make([]pulumi.StringOutput, len(in))
	for i, v := range in {
		out[i] = v.ToStringOutput()
	}
	return out
}
