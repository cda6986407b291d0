package components

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/mockrun"
)

var testZones = []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}

func runNetwork(t *testing.T, args *NetworkArgs) *mockrun.Recorder {
	t.Helper()
	rec, err := mockrun.Run("kubeha", "test", nil, func(ctx *pulumi.Context) error {
		_, err := NewNetwork(ctx, "c1-network", args)
		return err
	})
	if err != nil {
		t.Fatalf("NewNetwork: %v", err)
	}
	return rec
}

func perZoneArgs() *NetworkArgs {
	return &NetworkArgs{ClusterName: "c1", Region: "eu-west-1", Zones: testZones, NetworkOptions: NetworkOptions{VpcCidr: "10.30.0.0/16"}}
}

func TestNetworkSubnetsPerZone(t *testing.T) {
	rec := runNetwork(t, perZoneArgs())
	vpc := netip.MustParsePrefix("10.30.0.0/16")
	var cidrs []netip.Prefix
	for _, role := range []struct{ kind, tag string }{{"public", "kubernetes.io/role/elb"}, {"private", "kubernetes.io/role/internal-elb"}} {
		zones := map[string]int{}
		for _, s := range rec.OfType("aws:ec2/subnet:Subnet") {
			if !strings.Contains(s.Name, "-"+role.kind+"-") {
				continue
			}
			zones[s.String("availabilityZone")]++
			if !strings.HasSuffix(s.Name, s.String("availabilityZone")) {
				t.Errorf("subnet %s is in %s: its name must end in its zone", s.Name, s.String("availabilityZone"))
			}
			tags := s.Tags()
			if tags[role.tag] != "1" || tags["kubernetes.io/cluster/c1"] != "owned" {
				t.Errorf("%s subnet %s tags = %v", role.kind, s.Name, tags)
			}
			p := netip.MustParsePrefix(s.String("cidrBlock"))
			if !vpc.Contains(p.Addr()) {
				t.Errorf("subnet %s %s is outside the VPC", s.Name, p)
			}
			cidrs = append(cidrs, p)
		}
		if len(zones) != 3 {
			t.Errorf("%s subnets cover zones %v, want one in each of %v", role.kind, zones, testZones)
		}
		for _, z := range testZones {
			if zones[z] != 1 {
				t.Errorf("%d %s subnets in %s, want 1", zones[z], role.kind, z)
			}
		}
	}
	for i, a := range cidrs {
		for _, b := range cidrs[i+1:] {
			if a.Overlaps(b) {
				t.Errorf("subnets %s and %s overlap", a, b)
			}
		}
	}
	if vpcs := rec.OfType("aws:ec2/vpc:Vpc"); len(vpcs) != 1 || vpcs[0].Tags()["kubernetes.io/cluster/c1"] != "owned" || !vpcs[0].Bool("enableDnsHostnames") {
		t.Errorf("want one tagged VPC with DNS hostnames, got %+v", vpcs)
	}
}

func TestNetworkNatPerZone(t *testing.T) {
	rec := runNetwork(t, perZoneArgs())
	nats := rec.OfType("aws:ec2/natGateway:NatGateway")
	if len(nats) != 3 {
		t.Fatalf("%d NAT gateways, want one per zone (3)", len(nats))
	}
	// Each zone's private route table sends 0.0.0.0/0 to the NAT gateway in
	// that zone's public subnet, so a zone never depends on another's NAT.
	for _, z := range testZones {
		nat, err := rec.Named("aws:ec2/natGateway:NatGateway", "c1-network-nat-"+z)
		if err != nil {
			t.Fatal(err)
		}
		if want := "c1-network-public-" + z + "-id"; nat.String("subnetId") != want {
			t.Errorf("NAT in %s sits in subnet %s, want %s", z, nat.String("subnetId"), want)
		}
		rt, err := rec.Named("aws:ec2/routeTable:RouteTable", "c1-network-private-"+z)
		if err != nil {
			t.Fatal(err)
		}
		if got := defaultRouteTarget(rt, "natGatewayId"); got != "c1-network-nat-"+z+"-id" {
			t.Errorf("private route table in %s routes 0.0.0.0/0 to %q, want its own zone's NAT", z, got)
		}
	}
}

func TestNetworkSharedNat(t *testing.T) {
	args := perZoneArgs()
	args.SharedNatGateway = true
	rec := runNetwork(t, args)
	if nats := rec.OfType("aws:ec2/natGateway:NatGateway"); len(nats) != 1 {
		t.Fatalf("%d NAT gateways, want 1 shared", len(nats))
	}
	for _, z := range testZones {
		rt, _ := rec.Named("aws:ec2/routeTable:RouteTable", "c1-network-private-"+z)
		if got := defaultRouteTarget(rt, "natGatewayId"); got != "c1-network-nat-eu-west-1a-id" {
			t.Errorf("zone %s routes to %q, want the shared NAT", z, got)
		}
	}
}

func TestNetworkS3EndpointAndProtection(t *testing.T) {
	args := perZoneArgs()
	args.Protect = true
	rec := runNetwork(t, args)
	eps := rec.OfType("aws:ec2/vpcEndpoint:VpcEndpoint")
	if len(eps) != 1 {
		t.Fatalf("%d VPC endpoints, want 1", len(eps))
	}
	ep := eps[0]
	if ep.String("serviceName") != "com.amazonaws.eu-west-1.s3" || ep.String("vpcEndpointType") != "Gateway" {
		t.Errorf("endpoint = %s %s, want the S3 gateway endpoint", ep.String("serviceName"), ep.String("vpcEndpointType"))
	}
	if got := ep.Strings("routeTableIds"); len(got) != 3 {
		t.Errorf("S3 endpoint on route tables %v, want all 3 private ones", got)
	}
	for _, r := range rec.Resources() {
		if r.Custom && !r.Protect {
			t.Errorf("%s %s is not protected", r.Type, r.Name)
		}
	}
	if rt := rec.OfType("aws:ec2/routeTable:RouteTable"); len(rt) != 4 {
		t.Errorf("%d route tables, want 1 public + 3 private", len(rt))
	}
}

func TestNetworkExistingVPC(t *testing.T) {
	args := perZoneArgs()
	args.Existing = &ExistingNetwork{
		VpcID:            pulumi.String("vpc-0123456789abcdef0"),
		PrivateSubnetIDs: ownSubnets,
	}
	rec := runNetwork(t, args)
	for _, typ := range []string{"aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway", "aws:ec2/internetGateway:InternetGateway"} {
		if n := len(rec.OfType(typ)); n != 0 {
			t.Errorf("bring-your-own VPC created %d %s", n, typ)
		}
	}
	tags := rec.OfType("aws:ec2/tag:Tag")
	if len(tags) != 3 {
		t.Fatalf("%d subnet tags, want 3 (one per private subnet)", len(tags))
	}
	for _, tag := range tags {
		if tag.String("key") != "kubernetes.io/cluster/c1" || tag.String("value") != "shared" {
			t.Errorf("tag %s = %s=%s, want kubernetes.io/cluster/c1=shared", tag.Name, tag.String("key"), tag.String("value"))
		}
	}
}

func TestNetworkRejectsBadArgs(t *testing.T) {
	for name, c := range map[string]struct {
		mutate func(*NetworkArgs)
		field  string
	}{
		"duplicate zone": {func(a *NetworkArgs) { a.Zones = []string{"eu-west-1a", "eu-west-1a", "eu-west-1b"} }, "NetworkArgs.Zones"},
		"no zones":       {func(a *NetworkArgs) { a.Zones = nil }, "NetworkArgs.Zones"},
		"bad CIDR":       {func(a *NetworkArgs) { a.VpcCidr = "10.0.0.0/8" }, "NetworkArgs.VpcCidr"},
		"pods in VPC":    {func(a *NetworkArgs) { a.PodCidr = "10.30.128.0/17" }, "NetworkArgs.PodCidr"},
		"subnet count": {func(a *NetworkArgs) {
			a.Existing = &ExistingNetwork{VpcID: pulumi.String("vpc-0123456789abcdef0"), PrivateSubnetIDs: ownSubnets[:1]}
		}, "NetworkArgs.Existing.PrivateSubnetIDs"},
		"not a VPC ID": {func(a *NetworkArgs) {
			a.Existing = &ExistingNetwork{VpcID: pulumi.String("vpc-1"), PrivateSubnetIDs: ownSubnets}
		}, "NetworkArgs.Existing.VpcID"},
	} {
		args := perZoneArgs()
		c.mutate(args)
		rec, err := mockrun.Run("kubeha", "test", nil, func(ctx *pulumi.Context) error {
			_, err := NewNetwork(ctx, "c1-network", args)
			return err
		})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: got %v, want a FieldError naming %s", name, err, c.field)
		}
		if n := len(rec.Resources()); n != 0 {
			t.Errorf("%s: %d resources declared before the error, want none", name, n)
		}
	}
}

// defaultRouteTarget returns field of the route table's 0.0.0.0/0 route.
func defaultRouteTarget(rt mockrun.Resource, field string) string {
	routes := rt.Inputs["routes"]
	if !routes.IsArray() {
		return ""
	}
	for _, r := range routes.ArrayValue() {
		obj := r.ObjectValue()
		target := obj[resource.PropertyKey(field)]
		if obj["cidrBlock"].StringValue() == "0.0.0.0/0" && target.IsString() {
			return target.StringValue()
		}
	}
	return ""
}
