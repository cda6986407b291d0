package components

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
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
	return &ClusterArgs{ClusterName: "c1", Environment: "dev", Region: "eu-west-1", Zones: testZones}
}

// Only the name, environment, region and zones given: everything else defaults to HA.
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
// sets options; Cluster defaults only what was left unset.
func TestClusterOwnNetworkAndOverrides(t *testing.T) {
	args := minimalClusterArgs()
	args.KMSKeyArn = pulumi.String("arn:aws:kms:eu-west-1:123456789012:key/own")
	args.Network.Existing = &ExistingNetwork{
		VpcID:            pulumi.String("vpc-0123456789abcdef0"),
		PrivateSubnetIDs: ownSubnets,
	}
	args.Etcd.Members = 5
	args.ControlPlane.InstanceType = "c7i.2xlarge"
	args.Workers = []WorkerPool{{Name: "general", InstanceTypes: []string{"m6i.large"}, MinPerZone: pulumi.IntRef(2), MaxPerZone: 9}}
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
		if s := g.Strings("vpcZoneIdentifiers"); len(s) != 1 || s[0] != string(ownSubnets[i].(pulumi.String)) {
			t.Errorf("%s in subnets %v, want the importer's subnet for %s", g.Name, s, z)
		}
		if g.Get("maxSize").NumberValue() != 9 || g.Get("desiredCapacity").NumberValue() != 2 {
			t.Errorf("%s max %v desired %v, want the importer's 9, and desired = min = 2", g.Name, g.Get("maxSize").NumberValue(), g.Get("desiredCapacity").NumberValue())
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
	if args.Workers[0].DesiredPerZone != nil || args.Etcd.VolumeSizeGiB != 0 || args.Tags != nil || args.DeletionProtection != nil {
		t.Errorf("NewCluster wrote its defaults into the caller's args: %+v", args.Workers[0])
	}
}

var ownSubnets = []pulumi.StringInput{pulumi.String("subnet-0a00000000000000a"), pulumi.String("subnet-0b00000000000000b"), pulumi.String("subnet-0c00000000000000c")}

// A bad field anywhere fails the whole cluster before anything exists, and
// the error names the field both as Go and as the stack key.
func TestClusterRejectsBadArgsBeforeDeclaringAnything(t *testing.T) {
	for name, c := range map[string]struct {
		edit       func(*ClusterArgs)
		field, key string
	}{
		"two zones":      {func(a *ClusterArgs) { a.Zones = testZones[:2] }, "Zones", "kubeha:zones"},
		"duplicate pool": {func(a *ClusterArgs) { a.Workers = []WorkerPool{{Name: "x"}, {Name: "x"}} }, "Workers[1].Name", "kubeha:workers[1].name"},
		"bad vpc cidr":   {func(a *ClusterArgs) { a.Network.VpcCidr = "10.0.0.0/33" }, "Network.VpcCidr", "kubeha:network.vpcCidr"},
		"four etcd":      {func(a *ClusterArgs) { a.Etcd.Members = 4 }, "Etcd.Members", "kubeha:etcd.members"},
		"health check too fast": {func(a *ClusterArgs) { a.LoadBalancer.HealthCheck.IntervalSeconds = 1 },
			"LoadBalancer.HealthCheck.IntervalSeconds", "kubeha:api.healthCheck.intervalSeconds"},
		"bad version":   {func(a *ClusterArgs) { a.KubernetesVersion = "1.36" }, "KubernetesVersion", "kubeha:kubernetesVersion"},
		"unpinned etcd": {func(a *ClusterArgs) { a.Etcd.Version = "v3.5.24" }, "Etcd.Version", "kubeha:etcd.version"},
		"pool's version": {func(a *ClusterArgs) { a.Workers = []WorkerPool{{Name: "p", KubernetesVersion: "v1.34.0"}} },
			"Workers[0].KubernetesVersion", "kubeha:workers[0].kubernetesVersion"},
		"bad pool size": {func(a *ClusterArgs) {
			a.Workers = []WorkerPool{{Name: "p", MinPerZone: pulumi.IntRef(3), DesiredPerZone: pulumi.IntRef(1)}}
		}, "Workers[0].DesiredPerZone", "kubeha:workers[0].desiredPerZone"},
		"no region": {func(a *ClusterArgs) { a.Region = "" }, "Region", "aws:region"},
		"own key, uppercase name": {func(a *ClusterArgs) {
			a.ClusterName, a.KMSKeyArn = "Acme-Payments", pulumi.String("arn:aws:kms:eu-west-1:1:key/own")
		}, "ClusterName", "kubeha:clusterName"},
		"reserved tag": {func(a *ClusterArgs) { a.Tags = map[string]string{"kubernetes.io/cluster/x": "owned"} }, "Tags", "kubeha:tags"},
	} {
		t.Run(name, func(t *testing.T) {
			args := minimalClusterArgs()
			c.edit(args)
			rec, err := runCluster(args, nil)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field || fe.Key != c.key {
				t.Fatalf("error %v, want a FieldError naming %s (%s)", err, c.field, c.key)
			}
			if n := len(rec.Resources()); n != 0 {
				t.Errorf("%d resources declared before the error, want none", n)
			}
		})
	}
}

// A public API admits the nodes' egress addresses: the NAT gateways' in a
// VPC kubeha makes, the caller's NodeEgressCidrs in an existing VPC, and
// without them an existing VPC's public API is refused.
func TestPublicAPIAdmitsNodeEgress(t *testing.T) {
	clients := func(rec *mockrun.Recorder) []string {
		var out []string
		for _, r := range rec.OfType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") {
			if strings.HasPrefix(r.Name, "c1-api-clients-") {
				out = append(out, r.String("cidrIpv4"))
			}
		}
		return out
	}
	args := minimalClusterArgs()
	args.LoadBalancer.Public, args.LoadBalancer.AllowedCidrs = true, []string{"100.64.20.0/24"}
	rec, err := runCluster(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The mock gives each NAT address from its name: three distinct /32s.
	got := clients(rec)
	nat := 0
	for _, eip := range rec.OfType("aws:ec2/eip:Eip") {
		if slices.Contains(got, mockrun.EipAddress(eip.Name)+"/32") {
			nat++
		}
	}
	if nat != 3 || !slices.Contains(got, "100.64.20.0/24") || len(got) != 5 {
		t.Errorf("public API admits %v, want the VPC, 100.64.20.0/24 and the 3 NAT addresses", got)
	}

	args.Network.Existing = &ExistingNetwork{VpcID: pulumi.String("vpc-0123456789abcdef0"), PrivateSubnetIDs: ownSubnets, PublicSubnetIDs: ownSubnets}
	rec, err = runCluster(args, nil)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "Network.Existing.NodeEgressCidrs" || len(rec.Resources()) != 0 {
		t.Fatalf("public API in an existing VPC without egress addresses: %v (%d resources), want a refusal naming Network.Existing.NodeEgressCidrs", err, len(rec.Resources()))
	}
	args.Network.Existing.NodeEgressCidrs = []string{"100.64.30.7/32", "100.64.30.8/32"}
	if rec, err = runCluster(args, nil); err != nil {
		t.Fatal(err)
	}
	if got := clients(rec); !slices.Contains(got, "100.64.30.7/32") || !slices.Contains(got, "100.64.30.8/32") || len(got) != 4 {
		t.Errorf("public API in an existing VPC admits %v, want its VPC, the allowlist and both egress CIDRs", got)
	}
}

// With a DNS name the API's endpoint is the alias record, and every node
// (control plane and workers) is given that name, not the NLB's.
func TestAPIDNSAliasIsTheNodesEndpoint(t *testing.T) {
	args := minimalClusterArgs()
	args.LoadBalancer.DNSName, args.LoadBalancer.HostedZoneID = "api.example.com", pulumi.String("Z0123456789ABCDEFGHIJ")
	var endpoint string
	rec, err := runCluster(args, func(c *Cluster) error {
		c.Endpoint.ApplyT(func(e string) string { endpoint = e; return e })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	record, err := rec.Named("aws:route53/record:Record", "c1-api")
	if err != nil {
		t.Fatal(err)
	}
	alias := record.Get("aliases", "0")
	if record.String("name") != "api.example.com" || record.String("zoneId") != "Z0123456789ABCDEFGHIJ" || record.String("type") != "A" ||
		alias.ObjectValue()["name"].StringValue() != "c1-api-0123456789.elb.eu-west-1.amazonaws.com" {
		t.Errorf("alias record %v, want api.example.com A -> the NLB in the given zone", record.Inputs)
	}
	fqdn := mockrun.RecordFQDN("c1-api")
	if endpoint != "https://"+fqdn+":6443" {
		t.Errorf("endpoint %q, want the record's FQDN %s", endpoint, fqdn)
	}
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if typ, _ := rec.Component(lt); typ == "kubeha:index:EtcdCluster" {
			continue
		}
		if data := decodeUserData(t, lt); !strings.Contains(data, fqdn) || strings.Contains(data, "elb.eu-west-1.amazonaws.com") {
			t.Errorf("%s does not reach the API by %s only", lt.Name, fqdn)
		}
	}
}

// CoreDNS comes from one place: kubeadm skips its own exactly when the
// CoreDNS add-on is installed.
func TestCoreDNSFromExactlyOnePlace(t *testing.T) {
	for _, c := range []struct {
		name     string
		edit     func(*ClusterArgs)
		kubeadm  bool
		releases int
	}{
		{"add-on on", func(*ClusterArgs) {}, false, 1},
		{"add-on off", func(a *ClusterArgs) { a.Addons.CoreDNS.Disabled = true }, true, 0},
		{"no add-ons", func(a *ClusterArgs) { a.NoAddons = true }, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := minimalClusterArgs()
			c.edit(args)
			rec, err := runCluster(args, nil)
			if err != nil {
				t.Fatal(err)
			}
			coreDNS := 0
			if _, ok := releases(rec)["coredns"]; ok {
				coreDNS++
			}
			lt, err := rec.Named("aws:ec2/launchTemplate:LaunchTemplate", "c1-control-plane-eu-west-1a")
			if err != nil {
				t.Fatal(err)
			}
			skipped := strings.Contains(decodeUserData(t, lt), "addon/coredns")
			if skipped == c.kubeadm || coreDNS != c.releases {
				t.Errorf("kubeadm skips its CoreDNS: %v, CoreDNS releases: %d; want kubeadm's CoreDNS %v and %d releases", skipped, coreDNS, c.kubeadm, c.releases)
			}
		})
	}
}

// kubeha:tags reach every AWS resource that takes tags, and every
// instance and volume through the launch templates and groups.
func TestTagsReachEveryResource(t *testing.T) {
	args := minimalClusterArgs()
	args.Tags = map[string]string{"team": "payments", "cost-center": "42"}
	rec, err := runCluster(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	tagged := 0
	for _, r := range rec.Resources() {
		if _, takesTags := r.Inputs["tags"]; !takesTags || !strings.HasPrefix(r.Type, "aws:") {
			continue
		}
		tagged++
		if r.Type == "aws:autoscaling/group:Group" {
			propagated := map[string]bool{}
			for _, tag := range r.Get("tags").ArrayValue() {
				o := tag.ObjectValue()
				if o["propagateAtLaunch"].BoolValue() {
					propagated[o["key"].StringValue()+"="+o["value"].StringValue()] = true
				}
			}
			if !propagated["team=payments"] || !propagated["cost-center=42"] || !propagated["kubeha.io/environment=dev"] {
				t.Errorf("group %s propagates %v to its instances, want the cluster's tags", r.Name, propagated)
			}
			continue
		}
		if tags := r.Tags(); tags["team"] != "payments" || tags["cost-center"] != "42" || tags["kubeha.io/environment"] != "dev" {
			t.Errorf("%s %s tags %v lack the cluster's tags", r.Type, r.Name, tags)
		}
	}
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		for _, spec := range lt.Get("tagSpecifications").ArrayValue() {
			o := spec.ObjectValue()
			if o["tags"].ObjectValue()["team"].StringValue() != "payments" {
				t.Errorf("%s does not tag new %ss with team=payments", lt.Name, o["resourceType"].StringValue())
			}
		}
	}
	if tagged < 80 {
		t.Errorf("only %d tagged resources checked", tagged)
	}
}

// TestEveryNodeReportsItsOwnLaunch: every group holds a new instance out of
// service until its first boot completes the launch hook, and abandons it
// (the group replaces it) if none does; every node's role may complete
// only its own cluster's hooks; the etcd members' names exist before any
// member does; a node that gives up raises an alarm.
func TestEveryNodeReportsItsOwnLaunch(t *testing.T) {
	rec, err := runCluster(minimalClusterArgs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	groups := rec.OfType("aws:autoscaling/group:Group")
	if len(groups) != 9 {
		t.Fatalf("%d groups, want 9 (etcd, control plane, workers)", len(groups))
	}
	for _, g := range groups {
		hooks := g.Get("initialLifecycleHooks").ArrayValue()
		if len(hooks) != 1 {
			t.Errorf("%s has %d launch hooks, want 1", g.Name, len(hooks))
			continue
		}
		h := hooks[0].ObjectValue()
		if h["name"].StringValue() != bootstrap.LaunchHook || h["lifecycleTransition"].StringValue() != "autoscaling:EC2_INSTANCE_LAUNCHING" ||
			h["defaultResult"].StringValue() != "ABANDON" || h["heartbeatTimeout"].NumberValue() != 1800 {
			t.Errorf("%s: launch hook %v", g.Name, h)
		}
		if g.String("waitForCapacityTimeout") != "30m" {
			t.Errorf("%s: pulumi up waits %q for its instances, want the hook's 30m", g.Name, g.String("waitForCapacityTimeout"))
		}
	}
	// A stack's bootstrapTimeoutMinutes reaches every node's deadline and
	// every group's hook, 10 minutes longer.
	args := minimalClusterArgs()
	args.BootstrapTimeoutMinutes = 5
	short, err := runCluster(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range short.OfType("aws:autoscaling/group:Group") {
		if h := g.Get("initialLifecycleHooks").ArrayValue()[0].ObjectValue(); h["heartbeatTimeout"].NumberValue() != 900 || g.String("waitForCapacityTimeout") != "15m" {
			t.Errorf("%s with a 5-minute bootstrap timeout: hook %v, wait %q; want 900 s and 15m", g.Name, h["heartbeatTimeout"], g.String("waitForCapacityTimeout"))
		}
	}
	for _, lt := range short.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if data := decodeUserData(t, lt); !strings.Contains(data, "BOOTSTRAP_DEADLINE_SECONDS=300\n") {
			t.Errorf("%s: the user-data does not give the node 300 s", lt.Name)
		}
	}
	roles, bootstrapPolicies := 0, 0
	for _, r := range rec.OfType("aws:iam/role:Role") {
		if strings.Contains(r.String("assumeRolePolicy"), "ec2.amazonaws.com") {
			roles++
		}
	}
	for _, p := range rec.OfType("aws:iam/rolePolicy:RolePolicy") {
		if !strings.HasSuffix(p.Name, "-bootstrap") {
			continue
		}
		bootstrapPolicies++
		policy := p.String("policy")
		for _, want := range []string{`"autoscaling:CompleteLifecycleAction","autoscaling:SetInstanceHealth"`,
			`"autoscaling:ResourceTag/kubernetes.io/cluster/c1":"owned"`, `"cloudwatch:namespace":"kubeha"`} {
			if !strings.Contains(policy, want) {
				t.Errorf("%s lacks %s:\n%s", p.Name, want, policy)
			}
		}
	}
	if roles == 0 || bootstrapPolicies != roles {
		t.Errorf("%d node roles, %d with the bootstrap policy", roles, bootstrapPolicies)
	}
	var names []string
	for _, r := range rec.OfType("aws:route53/record:Record") {
		if strings.HasPrefix(r.String("name"), "etcd-") {
			names = append(names, r.String("name"))
			if recs := r.Strings("records"); len(recs) != 1 || recs[0] != "203.0.113.123" || !r.Get("allowOverwrite").BoolValue() {
				t.Errorf("%s: records %v, want the placeholder, overwritable", r.Name, recs)
			}
		}
	}
	if slices.Sort(names); !slices.Equal(names, []string{"etcd-a.c1.internal", "etcd-b.c1.internal", "etcd-c.c1.internal"}) {
		t.Errorf("etcd member records %v", names)
	}
	for alarm, metric := range map[string]string{"node-bootstrap-failed": bootstrap.BootstrapFailedMetric,
		"join-token-sync-failed": bootstrap.TokenSyncFailedMetric, "csr-approver-failed": bootstrap.CSRApproverFailedMetric,
		"certificate-renewal-failed": bootstrap.CertRenewalFailedMetric} {
		if a, err := rec.Named("aws:cloudwatch/metricAlarm:MetricAlarm", "c1-addons-"+alarm); err != nil ||
			a.String("metricName") != metric || a.String("treatMissingData") != "notBreaching" {
			t.Errorf("no alarm c1-addons-%s on %s: %v", alarm, metric, err)
		}
	}
	// Certificates: under 30 days left on any node, or no node reporting.
	if a, err := rec.Named("aws:cloudwatch/metricAlarm:MetricAlarm", "c1-addons-certificate-expiry"); err != nil || a.String("metricName") != bootstrap.CertDaysLeftMetric ||
		a.String("statistic") != "Minimum" || a.Get("threshold").NumberValue() != 30 || a.String("comparisonOperator") != "LessThanThreshold" || a.String("treatMissingData") != "breaching" {
		t.Errorf("no alarm on certificates near expiry: %v %v", a, err)
	}
}

// TestWorkersAreDrainedBeforeTheyLeave: every worker group, and only
// those, holds a leaving instance on the drain hook, which the
// control-plane nodes complete once they drained it (their role may
// complete the cluster's hooks), and which lets it go after its timeout
// whatever happened.
func TestWorkersAreDrainedBeforeTheyLeave(t *testing.T) {
	rec, err := runCluster(minimalClusterArgs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Worker groups carry their pool's tag; the mocks name a group after
	// its resource, with a suffix.
	var workers []string
	for _, g := range rec.OfType("aws:autoscaling/group:Group") {
		for _, tag := range g.Get("tags").ArrayValue() {
			if tag.ObjectValue()["key"].StringValue() == bootstrap.PoolTag {
				workers = append(workers, g.Name+"-")
			}
		}
	}
	var hooks []mockrun.Resource
	for _, h := range rec.OfType("aws:autoscaling/lifecycleHook:LifecycleHook") {
		if h.String("name") != bootstrap.EtcdLeaveHook {
			hooks = append(hooks, h)
		}
	}
	if len(workers) != 3 || len(hooks) != 3 {
		t.Fatalf("%d worker groups and %d lifecycle hooks besides etcd's, want 3 of each", len(workers), len(hooks))
	}
	for _, h := range hooks {
		group := h.String("autoscalingGroupName")
		if !slices.ContainsFunc(workers, func(w string) bool { return strings.HasPrefix(group, w) }) || h.String("name") != bootstrap.DrainHook || h.String("lifecycleTransition") != "autoscaling:EC2_INSTANCE_TERMINATING" ||
			h.String("defaultResult") != "CONTINUE" || h.Get("heartbeatTimeout").NumberValue() != bootstrap.DrainHookTimeout.Seconds() {
			t.Errorf("%s: group %q, hook %q, %q, %q after %v s", h.Name, h.String("autoscalingGroupName"), h.String("name"),
				h.String("lifecycleTransition"), h.String("defaultResult"), h.Get("heartbeatTimeout"))
		}
	}
}
