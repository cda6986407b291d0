package components

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/mockrun"
)

func lbArgs() *ApiLoadBalancerArgs {
	return &ApiLoadBalancerArgs{
		ClusterName: "c1", VpcID: pulumi.String("vpc-1"), VpcCidr: pulumi.String("10.30.0.0/16"),
		SubnetIDs:       []pulumi.StringInput{pulumi.String("s-a"), pulumi.String("s-b"), pulumi.String("s-c")},
		NodeEgressCidrs: []pulumi.StringInput{pulumi.String("192.0.2.7/32")},
		APIOptions: APIOptions{
			AllowedCidrs: []string{"100.64.10.0/24"}, Public: true,
			HealthCheck:                HealthCheck{IntervalSeconds: 10, TimeoutSeconds: 6, HealthyThreshold: 3, UnhealthyThreshold: 2},
			DeregistrationDelaySeconds: pulumi.IntRef(15),
		},
	}
}

func runLB(t *testing.T, args *ApiLoadBalancerArgs) *mockrun.Recorder {
	t.Helper()
	rec, err := mockrun.Run("kubeha", "test", nil, func(ctx *pulumi.Context) error {
		_, err := NewApiLoadBalancer(ctx, "c1-api", args)
		return err
	})
	if err != nil {
		t.Fatalf("NewApiLoadBalancer: %v", err)
	}
	return rec
}

func TestApiLoadBalancerHealthCheckAndTargets(t *testing.T) {
	rec := runLB(t, lbArgs())
	tgs := rec.OfType("aws:lb/targetGroup:TargetGroup")
	if len(tgs) != 1 {
		t.Fatalf("%d target groups, want 1", len(tgs))
	}
	tg := tgs[0]
	want := map[string]string{"protocol": "HTTPS", "path": "/readyz", "port": "traffic-port", "matcher": "200"}
	for k, v := range want {
		if got := tg.Get("healthCheck", k); !got.IsString() || got.StringValue() != v {
			t.Errorf("health check %s = %q, want %q", k, got, v)
		}
	}
	for k, v := range map[string]float64{"interval": 10, "timeout": 6, "healthyThreshold": 3, "unhealthyThreshold": 2} {
		if got := tg.Get("healthCheck", k).NumberValue(); got != v {
			t.Errorf("health check %s = %v, want the configured %v", k, got, v)
		}
	}
	if tg.String("preserveClientIp") != "false" || tg.String("protocol") != "TCP" || tg.Get("port").NumberValue() != 6443 {
		t.Errorf("target group preserveClientIp=%q protocol=%s port=%v, want false/TCP/6443",
			tg.String("preserveClientIp"), tg.String("protocol"), tg.Get("port").NumberValue())
	}
	if tg.Get("deregistrationDelay").NumberValue() != 15 {
		t.Errorf("deregistration delay %v, want 15", tg.Get("deregistrationDelay"))
	}
	if states := tg.Get("targetHealthStates"); !states.IsArray() || len(states.ArrayValue()) != 1 ||
		!states.ArrayValue()[0].ObjectValue()["enableUnhealthyConnectionTermination"].BoolValue() {
		t.Errorf("target health states %v, want one that resets an unhealthy target's connections", states)
	}
	nlb := rec.OfType("aws:lb/loadBalancer:LoadBalancer")[0]
	if nlb.String("loadBalancerType") != "network" || !nlb.Bool("enableCrossZoneLoadBalancing") || nlb.Bool("internal") {
		t.Errorf("load balancer type=%s crossZone=%v internal=%v, want an internet-facing cross-zone NLB",
			nlb.String("loadBalancerType"), nlb.Bool("enableCrossZoneLoadBalancing"), nlb.Bool("internal"))
	}
	if got := nlb.Strings("subnets"); len(got) != 3 {
		t.Errorf("NLB in subnets %v, want one per zone", got)
	}
	l := rec.OfType("aws:lb/listener:Listener")[0]
	if l.String("protocol") != "TCP" || l.Get("port").NumberValue() != 6443 || l.Get("defaultActions", "0", "type").StringValue() != "forward" {
		t.Errorf("listener is not TCP 6443 forwarding to the API servers")
	}
}

func TestApiLoadBalancerDefaultsDetectWithin10s(t *testing.T) {
	args := lbArgs()
	args.HealthCheck, args.DeregistrationDelaySeconds = HealthCheck{}, nil
	tg := runLB(t, args).OfType("aws:lb/targetGroup:TargetGroup")[0]
	interval, unhealthy := tg.Get("healthCheck", "interval").NumberValue(), tg.Get("healthCheck", "unhealthyThreshold").NumberValue()
	if interval*unhealthy > 10 {
		t.Errorf("defaults take %vs x %v checks to drop a dead API server; want within 10 s", interval, unhealthy)
	}
	if d := tg.Get("deregistrationDelay").NumberValue(); d != DefaultDeregistrationDelaySeconds {
		t.Errorf("unset deregistration delay is %v, want the default %d", d, DefaultDeregistrationDelaySeconds)
	}
	// Zero is a real choice (drop connections at once), not "unset".
	args.DeregistrationDelaySeconds = pulumi.IntRef(0)
	tg = runLB(t, args).OfType("aws:lb/targetGroup:TargetGroup")[0]
	if d := tg.Get("deregistrationDelay"); !d.IsNumber() || d.NumberValue() != 0 {
		t.Errorf("deregistration delay 0 became %v", d)
	}
}

func TestApiLoadBalancerSecurityGroup(t *testing.T) {
	rec := runLB(t, lbArgs())
	var sources []string
	for _, r := range rec.OfType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") {
		if r.Get("fromPort").NumberValue() != 6443 || r.Get("toPort").NumberValue() != 6443 {
			t.Errorf("%s opens ports %v-%v, want 6443 only", r.Name, r.Get("fromPort"), r.Get("toPort"))
		}
		sources = append(sources, r.String("cidrIpv4"))
	}
	slices.Sort(sources)
	if want := []string{"10.30.0.0/16", "100.64.10.0/24", "192.0.2.7/32"}; !slices.Equal(sources, want) {
		t.Errorf("6443 open to %v, want exactly the VPC, the NAT address and the allowlist %v", sources, want)
	}
	internal := lbArgs()
	internal.Public, internal.AllowedCidrs, internal.NodeEgressCidrs = false, nil, nil
	rec = runLB(t, internal)
	if nlb := rec.OfType("aws:lb/loadBalancer:LoadBalancer")[0]; !nlb.Bool("internal") {
		t.Error("a non-public endpoint is not internal")
	}
	if rules := rec.OfType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"); len(rules) != 1 || rules[0].String("cidrIpv4") != "10.30.0.0/16" {
		t.Errorf("internal endpoint rules %d, want only the VPC", len(rules))
	}
}

func TestApiLoadBalancerRejectsBadArgs(t *testing.T) {
	for name, c := range map[string]struct {
		mutate func(*ApiLoadBalancerArgs)
		field  string
	}{
		"timeout >= interval":    {func(a *ApiLoadBalancerArgs) { a.HealthCheck.TimeoutSeconds = 10 }, "ApiLoadBalancerArgs.HealthCheck.TimeoutSeconds"},
		"public, no allowlist":   {func(a *ApiLoadBalancerArgs) { a.AllowedCidrs = nil }, "ApiLoadBalancerArgs.AllowedCidrs"},
		"public, no node egress": {func(a *ApiLoadBalancerArgs) { a.NodeEgressCidrs = nil }, "ApiLoadBalancerArgs.NodeEgressCidrs"},
		"dns without zone":       {func(a *ApiLoadBalancerArgs) { a.DNSName = "api.example.com" }, "ApiLoadBalancerArgs.DNSName"},
		"bad cidr":               {func(a *ApiLoadBalancerArgs) { a.AllowedCidrs = []string{"nope"} }, "ApiLoadBalancerArgs.AllowedCidrs[0]"},
		"delay over an hour":     {func(a *ApiLoadBalancerArgs) { a.DeregistrationDelaySeconds = pulumi.IntRef(3601) }, "ApiLoadBalancerArgs.DeregistrationDelaySeconds"},
	} {
		args := lbArgs()
		c.mutate(args)
		rec, err := mockrun.Run("kubeha", "test", nil, func(ctx *pulumi.Context) error {
			_, err := NewApiLoadBalancer(ctx, "c1-api", args)
			return err
		})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || len(rec.Resources()) != 0 {
			t.Errorf("%s: got %v, want a FieldError naming %s and nothing declared", name, err, c.field)
		}
	}
}

// A private API gets one way in from outside the VPC: an EC2 Instance
// Connect Endpoint in the first zone's subnet, in the load balancer's
// security group (which the API servers admit), sources not preserved.
// A public API, or NoAccessEndpoint, gets none.
func TestPrivateAPIHasAnAccessEndpoint(t *testing.T) {
	private := lbArgs()
	private.Public, private.AllowedCidrs, private.NodeEgressCidrs = false, nil, nil
	rec := runLB(t, private)
	endpoints := rec.OfType("aws:ec2transitgateway/instanceConnectEndpoint:InstanceConnectEndpoint")
	if len(endpoints) != 1 {
		t.Fatalf("%d Instance Connect Endpoints for a private API, want 1", len(endpoints))
	}
	e := endpoints[0]
	groups := e.Strings("securityGroupIds")
	lbGroups := rec.OfType("aws:ec2/securityGroup:SecurityGroup")
	if e.String("subnetId") != "s-a" || len(groups) != 1 || len(lbGroups) != 1 || groups[0] != lbGroups[0].ID || e.Get("preserveClientIp").BoolValue() {
		t.Errorf("endpoint in %q with groups %v, preserveClientIp %v; want s-a, the load balancer's group, false", e.String("subnetId"), groups, e.Get("preserveClientIp"))
	}
	if n := len(runLB(t, lbArgs()).OfType("aws:ec2transitgateway/instanceConnectEndpoint:InstanceConnectEndpoint")); n != 0 {
		t.Errorf("%d Instance Connect Endpoints for a public API, want 0", n)
	}
	private.NoAccessEndpoint = true
	if n := len(runLB(t, private).OfType("aws:ec2transitgateway/instanceConnectEndpoint:InstanceConnectEndpoint")); n != 0 {
		t.Errorf("%d Instance Connect Endpoints with NoAccessEndpoint, want 0", n)
	}
}

// With the endpoint, control-plane nodes forward port 22 (the endpoint's
// tunnels reach 22 and 3389 only) to their API server, admitted from the
// endpoint's group alone; a public API has neither.
func TestAccessEndpointReachesTheAPIOnPort22(t *testing.T) {
	for _, public := range []bool{false, true} {
		rec := mustRunCluster(t, func(a *ClusterArgs) {
			if public {
				a.LoadBalancer.Public, a.LoadBalancer.AllowedCidrs = true, []string{"10.99.0.0/16"}
			}
		})
		var tunnelRules []mockrun.Resource
		for _, r := range rec.OfType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") {
			if port := r.Get("fromPort"); port.IsNumber() && port.NumberValue() == bootstrap.APITunnelPort {
				tunnelRules = append(tunnelRules, r)
			}
		}
		lt, err := rec.Named("aws:ec2/launchTemplate:LaunchTemplate", "c1-control-plane-eu-west-1a")
		if err != nil {
			t.Fatal(err)
		}
		forwards := strings.Contains(decodeUserData(t, lt), "ListenStream=22")
		lbGroup, err := rec.Named("aws:ec2/securityGroup:SecurityGroup", "c1-api")
		if err != nil {
			t.Fatal(err)
		}
		egress := 0
		for _, r := range rec.OfType("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") {
			if port := r.Get("fromPort"); port.IsNumber() && port.NumberValue() == bootstrap.APITunnelPort && r.String("securityGroupId") == lbGroup.ID {
				egress++
			}
		}
		if want := map[bool]int{false: 1, true: 0}[public]; egress != want {
			t.Errorf("public %v: %d egress rules to port 22 from the endpoint's group, want %d", public, egress, want)
		}
		switch {
		case public && (len(tunnelRules) != 0 || forwards):
			t.Errorf("a public API: %d rules on port 22, forwarding %v; want none", len(tunnelRules), forwards)
		case !public && (len(tunnelRules) != 1 || !forwards || tunnelRules[0].String("referencedSecurityGroupId") != lbGroup.ID):
			t.Errorf("a private API: rules on port 22 %v, forwarding %v; want one, from the endpoint's (the load balancer's) group", tunnelRules, forwards)
		}
	}
}
