package components

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/subnets"
)

// NetworkOptions are the cluster's address ranges and VPC: the stack's
// kubeha:network keys.
type NetworkOptions struct {
	// VpcCidr is the VPC's range, RFC 1918, /16 to /22, carved into one private and one public subnet per zone. Ignored with Existing.
	VpcCidr string `json:"vpcCidr"`
	// PodCidr is the pod network (private or 100.64.0.0/10), /8 to /20; it must not overlap the VPC or ServiceCidr.
	PodCidr string `json:"podCidr"`
	// ServiceCidr is the Service network (private or 100.64.0.0/10), /12 to /24; it must not overlap the VPC or PodCidr.
	ServiceCidr string `json:"serviceCidr"`
	// SharedNatGateway puts one NAT gateway in the first zone instead of one per zone: cheaper, and NOT HA (that zone is a single point of egress failure). Refused in prod.
	SharedNatGateway bool `json:"sharedNatGateway"`
	// NodePortCidrs may reach the workers' NodePorts (30000-32767) besides the VPC; 0.0.0.0/0 is refused in prod.
	NodePortCidrs []string `json:"nodePortCidrs"`
	// Existing, when set, runs the cluster in this VPC and its subnets, and creates none.
	Existing *ExistingNetwork `json:"existing"`
}

// ExistingNetwork is a VPC the user brings. Subnet IDs are in zone order.
type ExistingNetwork struct {
	// VpcID is the existing VPC's ID.
	VpcID pulumi.StringInput `json:"vpcId"`
	// PrivateSubnetIDs are the nodes' subnets, one per zone, in the order of the zones.
	PrivateSubnetIDs []pulumi.StringInput `json:"privateSubnetIds"`
	// PublicSubnetIDs are the public load balancer's subnets, one per zone; needed for a public API only.
	PublicSubnetIDs []pulumi.StringInput `json:"publicSubnetIds"`
	// NodeEgressCidrs are the addresses nodes reach the internet from (the VPC's NAT gateways, as /32s); a public API admits them. Needed for a public API only.
	NodeEgressCidrs []string `json:"nodeEgressCidrs"`
}

// Defaults of NetworkOptions.
const (
	DefaultVpcCidr     = "10.0.0.0/16"
	DefaultPodCidr     = "10.244.0.0/16"
	DefaultServiceCidr = "10.96.0.0/12"
)

func (o NetworkOptions) withDefaults() NetworkOptions {
	o.VpcCidr = cmp.Or(o.VpcCidr, DefaultVpcCidr)
	o.PodCidr = cmp.Or(o.PodCidr, DefaultPodCidr)
	o.ServiceCidr = cmp.Or(o.ServiceCidr, DefaultServiceCidr)
	return o
}

var (
	// RFC 1918, and RFC 6598 shared space which pod and service networks may use.
	rfc1918         = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16")}
	sharedAddress   = netip.MustParsePrefix("100.64.0.0/10")
	vpcIDPattern    = regexp.MustCompile(`^vpc-[0-9a-f]{8,17}$`)
	subnetIDPattern = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
)

func within(p netip.Prefix, ranges ...netip.Prefix) bool {
	for _, r := range ranges {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// check reports every field of defaulted options outside its limits.
// production refuses a shared NAT gateway and NodePorts open to all.
func (o NetworkOptions) check(c checker, zones int, production bool) {
	type named struct {
		field  string
		prefix netip.Prefix
	}
	var ranges []named
	if o.Existing == nil {
		if vpc, ok := c.cidr("VpcCidr", o.VpcCidr); ok {
			switch {
			case !within(vpc, rfc1918...):
				c.add("VpcCidr", quote(o.VpcCidr), "a private (RFC 1918) range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
			case vpc.Bits() < subnets.MinVPCBits || vpc.Bits() > subnets.MaxVPCBits:
				c.add("VpcCidr", quote(o.VpcCidr), fmt.Sprintf("a prefix length from /%d to /%d", subnets.MinVPCBits, subnets.MaxVPCBits))
			default:
				ranges = append(ranges, named{"VpcCidr", vpc})
			}
		}
	}
	for _, r := range []struct {
		field, value     string
		minBits, maxBits int
	}{{"PodCidr", o.PodCidr, 8, 20}, {"ServiceCidr", o.ServiceCidr, 12, 24}} {
		p, ok := c.cidr(r.field, r.value)
		switch {
		case !ok:
		case !within(p, append(rfc1918, sharedAddress)...):
			c.add(r.field, quote(r.value), "a private range: RFC 1918 or 100.64.0.0/10")
		case p.Bits() < r.minBits || p.Bits() > r.maxBits:
			c.add(r.field, quote(r.value), fmt.Sprintf("a prefix length from /%d to /%d", r.minBits, r.maxBits))
		default:
			ranges = append(ranges, named{r.field, p})
		}
	}
	for i, a := range ranges {
		for _, b := range ranges[:i] {
			if a.prefix.Overlaps(b.prefix) {
				c.add(a.field, quote(a.prefix.String()), fmt.Sprintf("a range that does not overlap %s (%s)", b.field, b.prefix))
			}
		}
	}
	if production && o.SharedNatGateway {
		c.add("SharedNatGateway", "true", "false in prod: one NAT gateway per zone")
	}
	c.allowlist("NodePortCidrs", o.NodePortCidrs, production)
	if e := o.Existing; e != nil {
		ec := c.at("Existing")
		if o.SharedNatGateway {
			c.add("SharedNatGateway", "true", "false with Existing: kubeha creates no NAT gateway in an existing VPC")
		}
		if e.VpcID == nil {
			ec.add("VpcID", "not set", "the existing VPC's ID, such as vpc-0123456789abcdef0")
		} else if id, known := e.VpcID.(pulumi.String); known {
			ec.matches("VpcID", string(id), vpcIDPattern, "a VPC ID such as vpc-0123456789abcdef0")
		}
		ec.subnetIDs("PrivateSubnetIDs", e.PrivateSubnetIDs, zones, true)
		ec.subnetIDs("PublicSubnetIDs", e.PublicSubnetIDs, zones, false)
		ec.allowlist("NodeEgressCidrs", e.NodeEgressCidrs, production)
	}
}

// subnetIDs: one per zone (or none, if not required), each a subnet ID
// where it is known at plan time.
func (c checker) subnetIDs(field string, ids []pulumi.StringInput, zones int, required bool) {
	if len(ids) != zones && (required || len(ids) > 0) {
		c.add(field, fmt.Sprintf("%d subnet IDs", len(ids)), fmt.Sprintf("one subnet ID per zone, %d in the order of the zones", zones))
	}
	for i, id := range ids {
		if s, known := id.(pulumi.String); known || id == nil {
			c.matches(fmt.Sprintf("%s[%d]", field, i), string(s), subnetIDPattern, "a subnet ID such as subnet-0123456789abcdef0")
		}
	}
}

// NetworkArgs describes the VPC a cluster runs in: its options and what
// it is wired to.
type NetworkArgs struct {
	NetworkOptions
	// ClusterName names and tags every resource.
	ClusterName string
	// Region is the AWS region, for the S3 endpoint's service name.
	Region string
	// Zones get one public and one private subnet each, in this order.
	Zones []string
	// Protect refuses deletion of the network by `pulumi destroy`.
	Protect bool
	// Tags are added to every resource.
	Tags map[string]string
}

// Network is a VPC with a public and a private subnet in each zone, and
// outbound internet for the private subnets through NAT.
type Network struct {
	pulumi.ResourceState

	// Zones lists the zones in the order of the subnet ID slices.
	Zones            []string
	VpcID            pulumi.StringOutput
	VpcCidr          pulumi.StringOutput
	PrivateSubnetIDs []pulumi.StringOutput
	PublicSubnetIDs  []pulumi.StringOutput
	// NodeEgressCidrs are where nodes reach the internet from: the NAT
	// gateways' addresses as /32s, or ExistingNetwork.NodeEgressCidrs. A
	// public API endpoint admits them.
	NodeEgressCidrs []pulumi.StringInput
}

// NewNetwork declares the network, or adopts an existing one.
func NewNetwork(ctx *pulumi.Context, name string, args *NetworkArgs, opts ...pulumi.ResourceOption) (*Network, error) {
	args, layouts, err := args.validated()
	if err != nil {
		return nil, err
	}
	n := &Network{Zones: args.Zones}
	if err := ctx.RegisterComponentResource("kubeha:index:Network", name, n, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(n), pulumi.Protect(args.Protect)}
	if args.Existing != nil {
		err = n.adopt(ctx, name, args, child)
	} else {
		err = n.create(ctx, name, args, layouts, child)
	}
	if err != nil {
		return nil, err
	}
	return n, ctx.RegisterResourceOutputs(n, pulumi.Map{
		"vpcId":            n.VpcID,
		"vpcCidr":          n.VpcCidr,
		"privateSubnetIds": pulumi.ToStringArrayOutput(n.PrivateSubnetIDs),
		"publicSubnetIds":  pulumi.ToStringArrayOutput(n.PublicSubnetIDs),
	})
}

// validated is args with defaults filled in and the subnets carved, or
// every problem found.
func (args *NetworkArgs) validated() (*NetworkArgs, []subnets.Layout, error) {
	a := *args
	a.NetworkOptions = a.NetworkOptions.withDefaults()
	c := newChecker("NetworkArgs.")
	a.NetworkOptions.check(c, len(a.Zones), false)
	c.clusterName("ClusterName", a.ClusterName)
	seen := map[string]bool{}
	for _, z := range a.Zones {
		if z == "" || seen[z] {
			c.add("Zones", fmt.Sprintf("%q", a.Zones), "distinct, non-empty zone names")
			break
		}
		seen[z] = true
	}
	if len(a.Zones) == 0 || len(a.Zones) > subnets.MaxZones {
		c.add("Zones", fmt.Sprintf("%d zones", len(a.Zones)), fmt.Sprintf("1 to %d zones", subnets.MaxZones))
	}
	if err := c.err(); err != nil || a.Existing != nil {
		return &a, nil, err
	}
	layouts, err := subnets.Carve(netip.MustParsePrefix(a.VpcCidr), len(a.Zones))
	if err != nil {
		c.add("VpcCidr", quote(a.VpcCidr), err.Error())
	}
	return &a, layouts, c.err()
}

func (n *Network) create(ctx *pulumi.Context, name string, args *NetworkArgs, layouts []subnets.Layout, opts []pulumi.ResourceOption) error {
	tags := func(resource string, extra ...string) pulumi.StringMap {
		return clusterTags(args.ClusterName, resource, args.Tags, extra...)
	}
	vpc, err := ec2.NewVpc(ctx, name+"-vpc", &ec2.VpcArgs{
		CidrBlock: pulumi.String(args.VpcCidr),
		// Both are needed for the private Route53 zone etcd members register in.
		EnableDnsHostnames: pulumi.Bool(true),
		EnableDnsSupport:   pulumi.Bool(true),
		Tags:               tags(name + "-vpc"),
	}, opts...)
	if err != nil {
		return err
	}
	n.VpcID, n.VpcCidr = vpc.ID().ToStringOutput(), vpc.CidrBlock

	igw, err := ec2.NewInternetGateway(ctx, name+"-igw", &ec2.InternetGatewayArgs{
		VpcId: vpc.ID(), Tags: tags(name + "-igw"),
	}, opts...)
	if err != nil {
		return err
	}
	publicRoutes, err := ec2.NewRouteTable(ctx, name+"-public", &ec2.RouteTableArgs{
		VpcId:  vpc.ID(),
		Routes: ec2.RouteTableRouteArray{ec2.RouteTableRouteArgs{CidrBlock: pulumi.String("0.0.0.0/0"), GatewayId: igw.ID()}},
		Tags:   tags(name + "-public"),
	}, opts...)
	if err != nil {
		return err
	}

	var nats []*ec2.NatGateway
	var privateRouteTables pulumi.StringArray
	for i, zone := range args.Zones {
		subnet := func(kind, cidr, roleTag string, routeTable pulumi.IDOutput) (*ec2.Subnet, error) {
			subnetName := fmt.Sprintf("%s-%s-%s", name, kind, zone)
			s, err := ec2.NewSubnet(ctx, subnetName, &ec2.SubnetArgs{
				VpcId:            vpc.ID(),
				AvailabilityZone: pulumi.String(zone),
				CidrBlock:        pulumi.String(cidr),
				// Nodes live in private subnets; nothing here needs a public IP by default.
				MapPublicIpOnLaunch: pulumi.Bool(false),
				Tags:                tags(subnetName, roleTag, "1"),
			}, opts...)
			if err != nil {
				return nil, err
			}
			_, err = ec2.NewRouteTableAssociation(ctx, subnetName, &ec2.RouteTableAssociationArgs{
				SubnetId: s.ID(), RouteTableId: routeTable,
			}, opts...)
			return s, err
		}

		public, err := subnet("public", layouts[i].Public.String(), "kubernetes.io/role/elb", publicRoutes.ID())
		if err != nil {
			return err
		}
		if i == 0 || !args.SharedNatGateway {
			nat, ip, err := natGateway(ctx, fmt.Sprintf("%s-nat-%s", name, zone), public, igw, tags, opts)
			if err != nil {
				return err
			}
			nats = append(nats, nat)
			n.NodeEgressCidrs = append(n.NodeEgressCidrs, pulumi.Sprintf("%s/32", ip))
		}
		// A route table per zone, so a zone's egress never crosses another zone
		// unless the NAT gateway is shared on purpose.
		privateRoutes, err := ec2.NewRouteTable(ctx, fmt.Sprintf("%s-private-%s", name, zone), &ec2.RouteTableArgs{
			VpcId:  vpc.ID(),
			Routes: ec2.RouteTableRouteArray{ec2.RouteTableRouteArgs{CidrBlock: pulumi.String("0.0.0.0/0"), NatGatewayId: nats[len(nats)-1].ID()}},
			Tags:   tags(fmt.Sprintf("%s-private-%s", name, zone)),
		}, opts...)
		if err != nil {
			return err
		}
		private, err := subnet("private", layouts[i].Private.String(), "kubernetes.io/role/internal-elb", privateRoutes.ID())
		if err != nil {
			return err
		}
		privateRouteTables = append(privateRouteTables, privateRoutes.ID())
		n.PublicSubnetIDs = append(n.PublicSubnetIDs, public.ID().ToStringOutput())
		n.PrivateSubnetIDs = append(n.PrivateSubnetIDs, private.ID().ToStringOutput())
	}

	// etcd snapshots and node downloads from S3 stay off the NAT gateways.
	_, err = ec2.NewVpcEndpoint(ctx, name+"-s3", &ec2.VpcEndpointArgs{
		VpcId:           vpc.ID(),
		ServiceName:     pulumi.Sprintf("com.amazonaws.%s.s3", args.Region),
		VpcEndpointType: pulumi.String("Gateway"),
		RouteTableIds:   privateRouteTables,
		Tags:            tags(name + "-s3"),
	}, opts...)
	return err
}

func natGateway(ctx *pulumi.Context, name string, subnet *ec2.Subnet, igw *ec2.InternetGateway,
	tags func(string, ...string) pulumi.StringMap, opts []pulumi.ResourceOption) (*ec2.NatGateway, pulumi.StringOutput, error) {
	eip, err := ec2.NewEip(ctx, name, &ec2.EipArgs{Domain: pulumi.String("vpc"), Tags: tags(name)}, opts...)
	if err != nil {
		return nil, pulumi.StringOutput{}, err
	}
	nat, err := ec2.NewNatGateway(ctx, name, &ec2.NatGatewayArgs{
		AllocationId: eip.AllocationId,
		SubnetId:     subnet.ID(),
		Tags:         tags(name),
	}, append(opts, pulumi.DependsOn([]pulumi.Resource{igw}))...)
	return nat, eip.PublicIp, err
}

// adopt uses an existing VPC. It only adds the cluster's "shared" tag to the
// subnets, as kops does, so the cloud-controller-manager finds them; the
// role tags are left to the VPC's owner.
func (n *Network) adopt(ctx *pulumi.Context, name string, args *NetworkArgs, opts []pulumi.ResourceOption) error {
	e := args.Existing
	n.VpcID = e.VpcID.ToStringOutput()
	n.NodeEgressCidrs = pulumi.ToStringArray(e.NodeEgressCidrs)
	n.VpcCidr = ec2.LookupVpcOutput(ctx, ec2.LookupVpcOutputArgs{Id: e.VpcID}, pulumi.Parent(n)).CidrBlock()
	tag := func(kind string, ids []pulumi.StringInput) ([]pulumi.StringOutput, error) {
		var out []pulumi.StringOutput
		for i, id := range ids {
			if _, err := ec2.NewTag(ctx, fmt.Sprintf("%s-%s-%s", name, kind, args.Zones[i]), &ec2.TagArgs{
				ResourceId: id,
				Key:        pulumi.String(clusterTagKey(args.ClusterName)),
				Value:      pulumi.String("shared"),
			}, opts...); err != nil {
				return nil, err
			}
			out = append(out, id.ToStringOutput())
		}
		return out, nil
	}
	var err error
	if n.PrivateSubnetIDs, err = tag("private", e.PrivateSubnetIDs); err != nil {
		return err
	}
	n.PublicSubnetIDs, err = tag("public", e.PublicSubnetIDs)
	return err
}
