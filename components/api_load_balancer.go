package components

import (
	"cmp"
	"fmt"
	"regexp"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2transitgateway"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/route53"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/vpc"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// APIPort is where every API server and the load balancer listen.
const APIPort = 6443

// APIOptions are how the Kubernetes API endpoint is exposed: the stack's
// kubeha:api keys.
type APIOptions struct {
	// Public makes the load balancer internet-facing, reachable only from AllowedCidrs; false makes it internal.
	Public bool `json:"public"`
	// AllowedCidrs may reach the API on 6443, besides the VPC and the nodes' egress addresses. Required when Public; 0.0.0.0/0 is refused in prod.
	AllowedCidrs []string    `json:"allowedCidrs"`
	HealthCheck  HealthCheck `json:"healthCheck"`
	// DeregistrationDelaySeconds is how long a removed API server keeps its open connections, 0 to 3600; nil means the default.
	DeregistrationDelaySeconds *int `json:"deregistrationDelaySeconds"`
	// NoAccessEndpoint leaves out the EC2 Instance Connect Endpoint through which a private API is reached (aws ec2-instance-connect open-tunnel), e.g. in a VPC that already has one.
	NoAccessEndpoint bool `json:"noAccessEndpoint"`
	// DNSName is an optional DNS name for the API: an alias record to the load balancer in HostedZoneID.
	DNSName string `json:"dnsName"`
	// HostedZoneID is the Route 53 hosted zone that holds DNSName.
	HostedZoneID pulumi.StringInput `json:"hostedZoneId"`
}

// HealthCheck is how the load balancer decides an API server may serve:
// HTTPS GET /readyz, which fails when the API server loses etcd.
type HealthCheck struct {
	// IntervalSeconds is the time between checks of each API server, 5 to 300 seconds.
	IntervalSeconds int `json:"intervalSeconds"`
	// TimeoutSeconds is how long a check may take, 2 to 120 seconds and less than the interval.
	TimeoutSeconds int `json:"timeoutSeconds"`
	// HealthyThreshold is the passed checks before an API server is put in rotation, 2 to 10.
	HealthyThreshold int `json:"healthyThreshold"`
	// UnhealthyThreshold is the failed checks before an API server is taken out of rotation, 2 to 10; times the interval, it is the detection time.
	UnhealthyThreshold int `json:"unhealthyThreshold"`
}

// Defaults of APIOptions: a dead API server is out of rotation within
// 10 s, and a removed one drains for 15 s.
const (
	DefaultHealthCheckIntervalSeconds = 5
	DefaultHealthCheckTimeoutSeconds  = 3
	DefaultHealthyThreshold           = 2
	DefaultUnhealthyThreshold         = 2
	DefaultDeregistrationDelaySeconds = 15
)

func (o APIOptions) withDefaults() APIOptions {
	h := &o.HealthCheck
	h.IntervalSeconds = cmp.Or(h.IntervalSeconds, DefaultHealthCheckIntervalSeconds)
	h.TimeoutSeconds = cmp.Or(h.TimeoutSeconds, DefaultHealthCheckTimeoutSeconds)
	h.HealthyThreshold = cmp.Or(h.HealthyThreshold, DefaultHealthyThreshold)
	h.UnhealthyThreshold = cmp.Or(h.UnhealthyThreshold, DefaultUnhealthyThreshold)
	if o.DeregistrationDelaySeconds == nil {
		o.DeregistrationDelaySeconds = pulumi.IntRef(DefaultDeregistrationDelaySeconds)
	}
	return o
}

var (
	dnsNamePattern    = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
	hostedZonePattern = regexp.MustCompile(`^Z[0-9A-Z]{1,31}$`)
)

// check reports every field of defaulted options outside its limits; in
// production the API is never open to the whole internet.
func (o APIOptions) check(c checker, production bool) {
	h, hc := o.HealthCheck, c.at("HealthCheck")
	hc.between("IntervalSeconds", h.IntervalSeconds, 5, 300)
	hc.between("HealthyThreshold", h.HealthyThreshold, 2, 10)
	hc.between("UnhealthyThreshold", h.UnhealthyThreshold, 2, 10)
	if h.TimeoutSeconds < 2 || h.TimeoutSeconds > 120 || h.TimeoutSeconds >= h.IntervalSeconds {
		hc.add("TimeoutSeconds", fmt.Sprint(h.TimeoutSeconds), fmt.Sprintf("2 to 120, and less than IntervalSeconds (%d)", h.IntervalSeconds))
	}
	c.between("DeregistrationDelaySeconds", *o.DeregistrationDelaySeconds, 0, 3600)
	zone, known := o.HostedZoneID.(pulumi.String)
	switch {
	case (o.DNSName == "") != (o.HostedZoneID == nil):
		c.add("DNSName", quote(o.DNSName), "set together with HostedZoneID, or neither")
	case o.DNSName != "" && !dnsNamePattern.MatchString(o.DNSName):
		c.add("DNSName", quote(o.DNSName), "a DNS name such as api.example.com")
	case known && !hostedZonePattern.MatchString(string(zone)):
		c.add("HostedZoneID", quote(string(zone)), "a Route 53 hosted zone ID such as Z0123456789ABCDEFGHIJ")
	}
	if o.Public && len(o.AllowedCidrs) == 0 {
		c.add("AllowedCidrs", "empty", "at least one CIDR when Public is true")
	}
	c.allowlist("AllowedCidrs", o.AllowedCidrs, production)
}

// ApiLoadBalancerArgs describes the API endpoint: its options and what it
// is wired to.
type ApiLoadBalancerArgs struct {
	APIOptions
	ClusterName string
	VpcID       pulumi.StringInput
	// VpcCidr: the API servers' addresses, which the load balancer forwards to.
	VpcCidr pulumi.StringInput
	// SubnetIDs, one per zone: public subnets when Public, else private.
	SubnetIDs []pulumi.StringInput
	// NodeEgressCidrs are where nodes reach a public endpoint from (their
	// NAT addresses): admitted besides AllowedCidrs.
	NodeEgressCidrs []pulumi.StringInput
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
	// AccessEndpointID is the EC2 Instance Connect Endpoint that reaches a
	// private API from outside the VPC; "" for a public API.
	AccessEndpointID pulumi.StringOutput
	// accessEndpoint says whether there is one: control-plane nodes then
	// forward bootstrap.APITunnelPort to their API server.
	accessEndpoint bool
	// detection is how long its checks take to find an API server failing.
	detection time.Duration
}

// validated is args with defaults filled in, or every problem found.
func (args *ApiLoadBalancerArgs) validated() (*ApiLoadBalancerArgs, error) {
	a := *args
	a.APIOptions = a.APIOptions.withDefaults()
	c := newChecker("ApiLoadBalancerArgs.")
	a.APIOptions.check(c, false)
	c.clusterName("ClusterName", a.ClusterName)
	if len(a.SubnetIDs) < 2 {
		c.add("SubnetIDs", fmt.Sprintf("%d IDs", len(a.SubnetIDs)), "one subnet per zone, at least 2")
	}
	if a.VpcID == nil || a.VpcCidr == nil {
		c.add("VpcID", "nil", "the VPC and its CIDR (VpcCidr)")
	}
	if a.Public && len(a.NodeEgressCidrs) == 0 {
		c.add("NodeEgressCidrs", "empty", "the addresses nodes reach a public endpoint from (their NAT gateways' /32s)")
	}
	return &a, c.err()
}

// NewApiLoadBalancer declares the load balancer, its listener, target
// group and security group.
func NewApiLoadBalancer(ctx *pulumi.Context, name string, args *ApiLoadBalancerArgs, opts ...pulumi.ResourceOption) (*ApiLoadBalancer, error) {
	args, err := args.validated()
	if err != nil {
		return nil, err
	}
	a := &ApiLoadBalancer{}
	if err := ctx.RegisterComponentResource("kubeha:index:ApiLoadBalancer", name, a, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(a)}
	tags := func(resource string) pulumi.StringMap { return clusterTags(args.ClusterName, resource, args.Tags) }

	sg, err := newSecurityGroup(ctx, name, args.VpcID, "Kubernetes API load balancer of "+args.ClusterName, tags(name), child)
	if err != nil {
		return nil, err
	}
	sources := append([]pulumi.StringInput{args.VpcCidr}, pulumi.ToStringArray(args.AllowedCidrs)...)
	if err := loadBalancerRules(ctx, name, sg.ID(), args.VpcCidr, append(sources, args.NodeEgressCidrs...), child); err != nil {
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
	a.AccessEndpointID = pulumi.String("").ToStringOutput()
	if !args.Public && !args.NoAccessEndpoint {
		// The one way in to a private API: a tunnel, by IAM, with no
		// bastion or agent, to a control-plane node's port 22 (the only
		// port besides 3389 these tunnels reach), which the node forwards
		// to its API server. It wears the load balancer's group, which
		// the nodes admit.
		a.accessEndpoint = true
		if _, err := vpc.NewSecurityGroupEgressRule(ctx, name+"-tunnel-to-nodes", &vpc.SecurityGroupEgressRuleArgs{
			SecurityGroupId: sg.ID(), CidrIpv4: args.VpcCidr, IpProtocol: pulumi.String("tcp"),
			FromPort: pulumi.Int(bootstrap.APITunnelPort), ToPort: pulumi.Int(bootstrap.APITunnelPort),
		}, child...); err != nil {
			return nil, err
		}
		access, err := ec2transitgateway.NewInstanceConnectEndpoint(ctx, name+"-access", &ec2transitgateway.InstanceConnectEndpointArgs{
			SubnetId: args.SubnetIDs[0], SecurityGroupIds: pulumi.StringArray{sg.ID()}, PreserveClientIp: pulumi.Bool(false),
			Tags: tags(name + "-access"),
		}, child...)
		if err != nil {
			return nil, err
		}
		a.AccessEndpointID = access.ID().ToStringOutput()
	}
	h := args.HealthCheck
	a.detection = time.Duration(h.IntervalSeconds*h.UnhealthyThreshold+h.TimeoutSeconds) * time.Second
	tg, err := lb.NewTargetGroup(ctx, name, &lb.TargetGroupArgs{
		VpcId:      args.VpcID,
		Port:       pulumi.Int(APIPort),
		Protocol:   pulumi.String("TCP"),
		TargetType: pulumi.String("instance"),
		// The NLB, not the client, is the source: a control-plane node that
		// reaches the API through the NLB may land on itself (hairpin).
		PreserveClientIp:    pulumi.String("false"),
		DeregistrationDelay: pulumi.Int(*args.DeregistrationDelaySeconds),
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
		// A target that turns unhealthy has its connections reset (AWS's
		// default, stated so it stays): a kubelet's long-lived watch on an
		// API server cut from etcd moves to a healthy one instead of hanging.
		TargetHealthStates: lb.TargetGroupTargetHealthStateArray{
			&lb.TargetGroupTargetHealthStateArgs{EnableUnhealthyConnectionTermination: pulumi.Bool(true)},
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
		"accessEndpointId": a.AccessEndpointID,
	})
}
