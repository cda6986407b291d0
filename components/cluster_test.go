package components

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/mockrun"
)

// runCluster declares a Cluster named c1 under mocks and hands it to
// inspect, which runs inside the program so it can read the struct.
func runCluster(args *ClusterArgs, inspect func(*Cluster) error) (*mockrun.Recorder, error) {
	return mockrun.Run("kubeha", "test", nil, func(ctx *pulumi.Context) error {
		c, err := NewCluster(ctx, "c1", args)
		if err != nil {
			return err
		}
		if inspect != nil {
			return inspect(c)
		}
		return nil
	})
}

func minimalClusterArgs() *ClusterArgs {
	return &ClusterArgs{ClusterName: "c1", Region: "eu-west-1", Zones: testZones}
}

// Only the name, region and zones given: everything else defaults to HA.
func TestClusterDefaultsAreHA(t *testing.T) {
	var reachable []string
	rec, err := runCluster(minimalClusterArgs(), func(c *Cluster) error {
		for name, ok := range map[string]bool{
			"Network": c.Network != nil, "Key": c.Key != nil, "Etcd": c.Etcd != nil, "LoadBalancer": c.LoadBalancer != nil,
			"ControlPlane": c.ControlPlane != nil, "WorkerGroups[general]": len(c.WorkerGroups["general"]) == 3,
		} {
			if ok {
				reachable = append(reachable, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(reachable) != 6 {
		t.Errorf("reachable children %v, want Network, Key, Etcd, LoadBalancer, ControlPlane and 3 general worker groups", reachable)
	}
	if n := len(rec.OfType("aws:ec2/natGateway:NatGateway")); n != 3 {
		t.Errorf("%d NAT gateways, want one per zone", n)
	}
	perZone := map[string]map[string]int{}
	for _, g := range rec.OfType("aws:autoscaling/group:Group") {
		typ, _ := rec.Component(g)
		subnets := g.Strings("vpcZoneIdentifiers")
		if len(subnets) != 1 {
			t.Errorf("%s spans %d subnets, want its zone's only", g.Name, len(subnets))
			continue
		}
		zone := subnetZone(t, rec, subnets[0])
		if !strings.HasSuffix(g.Name, zone) && !strings.HasPrefix(g.Name, "c1-etcd-") {
			t.Errorf("%s is in %s's subnet", g.Name, zone)
		}
		if perZone[zone] == nil {
			perZone[zone] = map[string]int{}
		}
		perZone[zone][strings.TrimPrefix(typ, "kubeha:index:")]++
		if typ == "kubeha:index:ZonalWorkerGroup" && g.Get("minSize").NumberValue() < 1 {
			t.Errorf("%s may scale to 0: a zone loss would leave no spare workers elsewhere", g.Name)
		}
	}
	for _, z := range testZones {
		want := map[string]int{"EtcdCluster": 1, "ControlPlane": 1, "ZonalWorkerGroup": 1}
		for k, v := range want {
			if perZone[z][k] != v {
				t.Errorf("%s holds %v auto-scaling groups by component, want %v", z, perZone[z], want)
				break
			}
		}
	}
	for _, typ := range []string{"aws:ec2/vpc:Vpc", "aws:kms/key:Key", "aws:lb/loadBalancer:LoadBalancer"} {
		if r := rec.OfType(typ); len(r) != 1 || !r[0].Protect && r[0].Get("enableDeletionProtection").BoolValue() != true {
			t.Errorf("%s is not protected by default", typ)
		}
	}
	joins := 0
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		checkNodeBaseline(t, lt)
		if typ, _ := rec.Component(lt); typ != "kubeha:index:ZonalWorkerGroup" {
			continue
		}
		// Workers join the load balancer's name, never a node's address.
		endpoint := regexp.MustCompile(`apiServerEndpoint: (\S+)`).FindStringSubmatch(decodeUserData(t, lt))
		if endpoint == nil || endpoint[1] != "c1-api-0123456789.elb.eu-west-1.amazonaws.com:6443" {
			t.Errorf("%s joins %v, want the load balancer's DNS name", lt.Name, endpoint)
		}
		joins++
	}
	if joins != 3 {
		t.Errorf("%d worker launch templates join the cluster, want 3", joins)
	}
	// Every resource belongs to the Cluster, so importers see one tree.
	for _, r := range rec.Resources() {
		if r.Type != "kubeha:index:Cluster" && r.Type != "pulumi:providers:aws" && !strings.Contains(r.URN, "kubeha:index:Cluster$") {
			t.Errorf("%s %s is not under the Cluster", r.Type, r.Name)
		}
	}
}

// An importer brings its own VPC and KMS key, runs a 5-member etcd and
// overrides a component field; Cluster fills only what was left zero.
func TestClusterOwnNetworkAndOverrides(t *testing.T) {
	args := minimalClusterArgs()
	args.KMSKeyArn = pulumi.String("arn:aws:kms:eu-west-1:123456789012:key/own")
	args.Network.Existing = &ExistingNetwork{
		VpcID:            pulumi.String("vpc-own"),
		PrivateSubnetIDs: []pulumi.StringInput{pulumi.String("subnet-a"), pulumi.String("subnet-b"), pulumi.String("subnet-c")},
	}
	args.Etcd.Members = 5
	args.ControlPlane.InstanceType = "c7i.2xlarge"
	args.Workers = []ZonalWorkerGroupArgs{{Pool: "general", InstanceTypes: []string{"m6i.large"}, Min: 2, Desired: 2, Max: 9}}
	rec, err := runCluster(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:kms/key:Key"} {
		if n := len(rec.OfType(typ)); n != 0 {
			t.Errorf("%d %s declared; the importer brought its own", n, typ)
		}
	}
	if n := len(rec.OfType("aws:ebs/volume:Volume")); n != 5 {
		t.Errorf("%d etcd volumes, want 5", n)
	}
	for i, z := range testZones {
		g, err := rec.Named("aws:autoscaling/group:Group", "c1-general-"+z)
		if err != nil {
			t.Fatal(err)
		}
		if s := g.Strings("vpcZoneIdentifiers"); len(s) != 1 || s[0] != []string{"subnet-a", "subnet-b", "subnet-c"}[i] {
			t.Errorf("%s in subnets %v, want the importer's subnet for %s", g.Name, s, z)
		}
		if g.Get("maxSize").NumberValue() != 9 {
			t.Errorf("%s max %v, want the importer's 9", g.Name, g.Get("maxSize").NumberValue())
		}
	}
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if strings.HasPrefix(lt.Name, "c1-control-plane-") && lt.String("instanceType") != "c7i.2xlarge" {
			t.Errorf("%s is %s, want the override c7i.2xlarge", lt.Name, lt.String("instanceType"))
		}
	}
	for _, s := range rec.OfType("aws:secretsmanager/secret:Secret") {
		if s.String("kmsKeyId") != "arn:aws:kms:eu-west-1:123456789012:key/own" {
			t.Errorf("secret %s uses key %q, want the importer's", s.Name, s.String("kmsKeyId"))
		}
	}
	if args.Workers[0].Zone != "" || args.Etcd.ClusterName != "" || args.ControlPlane.PodCIDR != "" {
		t.Errorf("NewCluster wrote its defaults into the caller's args: %+v", args.Workers[0])
	}
}

// A bad field anywhere fails the whole cluster before anything exists.
func TestClusterRejectsBadArgsBeforeDeclaringAnything(t *testing.T) {
	for name, c := range map[string]struct {
		edit func(*ClusterArgs)
		key  string
	}{
		"two zones":             {func(a *ClusterArgs) { a.Zones = testZones[:2] }, "ClusterArgs.Zones"},
		"duplicate pool":        {func(a *ClusterArgs) { a.Workers = []ZonalWorkerGroupArgs{{Pool: "x"}, {Pool: "x"}} }, "ClusterArgs.Workers[1].Pool"},
		"bad vpc cidr":          {func(a *ClusterArgs) { a.Network.VpcCidr = "10.0.0.0/33" }, "NetworkArgs.VpcCidr"},
		"four etcd":             {func(a *ClusterArgs) { a.Etcd.Members = 4 }, "EtcdClusterArgs.Members"},
		"health check too fast": {func(a *ClusterArgs) { a.LoadBalancer.HealthCheck.IntervalSeconds = 1 }, "ApiLoadBalancerArgs.HealthCheck.IntervalSeconds"},
		"bad version":           {func(a *ClusterArgs) { a.KubernetesVersion = "1.36" }, "ControlPlaneArgs.KubernetesVersion"},
		"bad pool size": {func(a *ClusterArgs) {
			a.Workers = []ZonalWorkerGroupArgs{{Pool: "p", Min: 3, Desired: 1, Max: 5}}
		}, "ZonalWorkerGroupArgs.Min/Desired/Max"},
		"public in own vpc without public subnets": {func(a *ClusterArgs) {
			a.LoadBalancer.Public, a.LoadBalancer.AllowedCidrs = true, []string{"192.0.2.0/24"}
			a.Network.Existing = &ExistingNetwork{VpcID: pulumi.String("vpc-own"),
				PrivateSubnetIDs: []pulumi.StringInput{pulumi.String("a"), pulumi.String("b"), pulumi.String("c")}}
		}, "ApiLoadBalancerArgs.SubnetIDs"},
	} {
		t.Run(name, func(t *testing.T) {
			args := minimalClusterArgs()
			c.edit(args)
			rec, err := runCluster(args, nil)
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Key != c.key {
				t.Fatalf("error %v, want a FieldError naming %s", err, c.key)
			}
			if n := len(rec.Resources()); n != 0 {
				t.Errorf("%d resources declared before the error, want none", n)
			}
		})
	}
}
