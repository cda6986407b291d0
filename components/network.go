package components

import (
	"fmt"
	"net/netip"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/subnets"
)

// NetworkArgs describes the VPC a cluster runs in.
type NetworkArgs struct {
	// ClusterName names and tags every resource.
	ClusterName string
	// Region is the AWS region, for the S3 endpoint's service name.
	Region string
	// Zones get one public and one private subnet each, in this order.
	Zones []string
	// VpcCidr is carved into the subnets. Ignored with Existing.
	VpcCidr string
	// SharedNatGateway puts one NAT gateway in the first zone instead of one
	// per zone. Cheaper, and not HA.
	SharedNatGateway bool
	// Existing, when set, uses this VPC and its subnets and creates none.
	Existing *ExistingNetwork
	// Protect refuses deletion of the network by `pulumi destroy`.
	Protect bool
	// Tags are added to every resource.
	Tags map[string]string
}

// ExistingNetwork is a VPC the user brings. Subnet IDs are in zone order.
type ExistingNetwork struct {
	VpcID            pulumi.StringInput
	PrivateSubnetIDs []pulumi.StringInput
	// PublicSubnetIDs may be empty when nothing is internet-facing.
	PublicSubnetIDs []pulumi.StringInput
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
	// NatPublicIPs are the addresses nodes reach the internet from; a public
	// API endpoint must admit them. Empty for an existing VPC.
	NatPublicIPs []pulumi.StringOutput
}

// NewNetwork declares the network, or adopts an existing one.
func NewNetwork(ctx *pulumi.Context, name string, args *NetworkArgs, opts ...pulumi.ResourceOption) (*Network, error) {
	layouts, err := args.validate()
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

func (args *NetworkArgs) validate() ([]subnets.Layout, error) {
	bad := func(field, value, allowed string) error {
		return &config.FieldError{Key: "NetworkArgs." + field, Value: value, Allowed: allowed}
	}
	if args.ClusterName == "" {
		return nil, bad("ClusterName", "empty", "the cluster's name")
	}
	seen := map[string]bool{}
	for _, z := range args.Zones {
		if z == "" || seen[z] {
			return nil, bad("Zones", fmt.Sprintf("%q", args.Zones), "distinct, non-empty zone names")
		}
		seen[z] = true
	}
	if len(args.Zones) == 0 || len(args.Zones) > subnets.MaxZones {
		return nil, bad("Zones", fmt.Sprintf("%d zones", len(args.Zones)), fmt.Sprintf("1 to %d zones", subnets.MaxZones))
	}
	if e := args.Existing; e != nil {
		if e.VpcID == nil {
			return nil, bad("Existing.VpcID", "nil", "the existing VPC's ID")
		}
		if len(e.PrivateSubnetIDs) != len(args.Zones) {
			return nil, bad("Existing.PrivateSubnetIDs", fmt.Sprintf("%d IDs", len(e.PrivateSubnetIDs)), fmt.Sprintf("one per zone: %d", len(args.Zones)))
		}
		if len(e.PublicSubnetIDs) != 0 && len(e.PublicSubnetIDs) != len(args.Zones) {
			return nil, bad("Existing.PublicSubnetIDs", fmt.Sprintf("%d IDs", len(e.PublicSubnetIDs)), fmt.Sprintf("none, or one per zone: %d", len(args.Zones)))
		}
		return nil, nil
	}
	vpc, err := netip.ParsePrefix(args.VpcCidr)
	if err != nil {
		return nil, bad("VpcCidr", fmt.Sprintf("%q", args.VpcCidr), "an IPv4 CIDR such as 10.0.0.0/16")
	}
	layouts, err := subnets.Carve(vpc, len(args.Zones))
	if err != nil {
		return nil, bad("VpcCidr", fmt.Sprintf("%q", args.VpcCidr), err.Error())
	}
	return layouts, nil
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
			n.NatPublicIPs = append(n.NatPublicIPs, ip)
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
