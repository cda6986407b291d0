package components

import (
	"errors"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/mockrun"
)

// runWorkers declares the control plane and, per zone, a worker group
// made by pool from the zone's index.
func runWorkers(t *testing.T, pool func(i int, a *ZonalWorkerGroupArgs)) (*mockrun.Recorder, error) {
	t.Helper()
	return runControlPlane(t, nil, func(ctx *pulumi.Context, cp *ControlPlane) error {
		for i, zone := range testZones {
			args := &ZonalWorkerGroupArgs{
				ClusterName: "c1", Region: "eu-west-1", KubernetesVersion: "v1.36.3", Zone: zone,
				SubnetID: pulumi.String("subnet-" + zone), ControlPlane: cp, SecurityGroupIDs: []pulumi.StringInput{pulumi.String("sg-workers")},
				KMSKeyArn: pulumi.String("arn:aws:kms:eu-west-1:123456789012:key/k1"),
				WorkerPool: WorkerPool{Name: "general", InstanceTypes: []string{"m6i.large"},
					MinPerZone: pulumi.IntRef(1), DesiredPerZone: pulumi.IntRef(2), MaxPerZone: 5},
			}
			pool(i, args)
			if _, err := NewZonalWorkerGroup(ctx, "c1-"+args.Name+"-"+zone, args); err != nil {
				return err
			}
		}
		return nil
	})
}

func workerGroups(rec *mockrun.Recorder) []mockrun.Resource {
	var out []mockrun.Resource
	for _, g := range rec.OfType("aws:autoscaling/group:Group") {
		if g.Tags()["kubeha.io/pool"] != "" || strings.HasPrefix(g.Name, "c1-general-") || strings.HasPrefix(g.Name, "c1-spot-") {
			out = append(out, g)
		}
	}
	return out
}

// groupTags reads an ASG's tag list into a map.
func groupTags(g mockrun.Resource) map[string]string {
	tags := map[string]string{}
	for _, tag := range g.Get("tags").ArrayValue() {
		tags[tag.ObjectValue()["key"].StringValue()] = tag.ObjectValue()["value"].StringValue()
	}
	return tags
}

func TestZonalWorkerGroups(t *testing.T) {
	rec, err := runWorkers(t, func(i int, a *ZonalWorkerGroupArgs) {
		if i == 2 {
			a.Name, a.InstanceTypes, a.OnDemandBase, a.SpotPercent = "spot", []string{"m6i.large", "m7i.large"}, 0, 100
			a.Labels = []string{"kubeha.io/capacity=spot"}
			a.Taints = []string{"kubeha.io/spot=true:NoSchedule"}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	groups := workerGroups(rec)
	if len(groups) != 3 {
		t.Fatalf("%d worker groups, want one per zone", len(groups))
	}
	for _, g := range groups {
		zone := g.Name[strings.LastIndex(g.Name, "-eu-west-")+1:]
		if subnets := g.Strings("vpcZoneIdentifiers"); len(subnets) != 1 || subnets[0] != "subnet-"+zone {
			t.Errorf("%s spans %v, want only its zone's subnet", g.Name, subnets)
		}
		tags := groupTags(g)
		for k, v := range map[string]string{
			"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/c1": "owned", "kubernetes.io/cluster/c1": "owned",
			"k8s.io/cluster-autoscaler/node-template/label/topology.kubernetes.io/zone": zone,
		} {
			if tags[k] != v {
				t.Errorf("%s tag %s = %q, want %q", g.Name, k, tags[k], v)
			}
		}
		// pulumi up replaces no running worker: kubeha upgrade does,
		// drained, zone by zone.
		if refresh := g.Get("instanceRefresh"); !refresh.IsNull() {
			t.Errorf("%s has an instance refresh %v, which would replace its workers undrained", g.Name, refresh)
		}
		spot := strings.HasPrefix(g.Name, "c1-spot-")
		if spot {
			if tags["k8s.io/cluster-autoscaler/node-template/taint/kubeha.io/spot"] != "true:NoSchedule" ||
				tags["k8s.io/cluster-autoscaler/node-template/label/kubeha.io/capacity"] != "spot" {
				t.Errorf("%s lacks its node-template label and taint tags: %v", g.Name, tags)
			}
			if g.Get("mixedInstancesPolicy", "instancesDistribution", "onDemandPercentageAboveBaseCapacity").NumberValue() != 0 {
				t.Errorf("%s is not all spot", g.Name)
			}
		} else if g.Get("launchTemplate", "id").StringValue() == "" {
			t.Errorf("%s has no launch template", g.Name)
		}
	}
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		checkNodeBaseline(t, lt)
		if !strings.HasPrefix(lt.Name, "c1-general-") && !strings.HasPrefix(lt.Name, "c1-spot-") {
			continue
		}
		data := decodeUserData(t, lt)
		if !strings.Contains(data, "apiServerEndpoint: c1-api-0123456789.elb.eu-west-1.amazonaws.com:6443") || !strings.Contains(data, "worker-bootstrap.sh") {
			t.Errorf("%s user-data does not join through the load balancer", lt.Name)
		}
		if len(mockrun.JoinTokens(data, bootstrap.BootstrapTokenPlaceholder)) > 0 || strings.Contains(data, "PRIVATE KEY") {
			t.Errorf("%s user-data carries a secret", lt.Name)
		}
	}
}

func TestZonalWorkerGroupRejectsBadArgs(t *testing.T) {
	for name, c := range map[string]struct {
		edit  func(*ZonalWorkerGroupArgs)
		field string
	}{
		"min > max":   {func(a *ZonalWorkerGroupArgs) { a.MinPerZone, a.DesiredPerZone, a.MaxPerZone = pulumi.IntRef(6), nil, 5 }, "ZonalWorkerGroupArgs.MinPerZone"},
		"bad type":    {func(a *ZonalWorkerGroupArgs) { a.InstanceTypes = []string{"big"} }, "ZonalWorkerGroupArgs.InstanceTypes[0]"},
		"bad taint":   {func(a *ZonalWorkerGroupArgs) { a.Taints = []string{"x:Never"} }, "ZonalWorkerGroupArgs.Taints[0]"},
		"spot > 100":  {func(a *ZonalWorkerGroupArgs) { a.SpotPercent = 101 }, "ZonalWorkerGroupArgs.SpotPercent"},
		"small root":  {func(a *ZonalWorkerGroupArgs) { a.RootVolumeGiB = 8 }, "ZonalWorkerGroupArgs.RootVolumeGiB"},
		"no subnet":   {func(a *ZonalWorkerGroupArgs) { a.SubnetID = nil }, "ZonalWorkerGroupArgs.SubnetID"},
		"bad version": {func(a *ZonalWorkerGroupArgs) { a.KubernetesVersion = "v1.99.0" }, "ZonalWorkerGroupArgs.KubernetesVersion"},
		"pool ahead of the control plane": {func(a *ZonalWorkerGroupArgs) {
			a.KubernetesVersion, a.WorkerPool.KubernetesVersion = "v1.35.8", "v1.36.3"
		}, "ZonalWorkerGroupArgs.WorkerPool.KubernetesVersion"},
	} {
		t.Run(name, func(t *testing.T) {
			rec, err := runWorkers(t, func(i int, a *ZonalWorkerGroupArgs) { c.edit(a) })
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("error %v, want a FieldError naming %s", err, c.field)
			}
			if n := len(workerGroups(rec)); n != 0 {
				t.Errorf("%d worker groups declared despite the error", n)
			}
		})
	}
}

// Every rule of the workers' group, and the control plane's rules that
// admit workers, as a Cluster declares them (no Prometheus: see
// TestPrometheusScrapeRules).
func TestWorkerSecurityGroup(t *testing.T) {
	rec, err := runCluster(withArgs(func(a *ClusterArgs) {
		a.Network.NodePortCidrs = []string{"100.64.20.0/24"}
		a.Network.VpcCidr = "10.30.0.0/16"
		a.Addons.Monitoring = MonitoringCloudWatch
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	workers, cp := "c1-workers-id", "c1-control-plane-id"
	got := ingressRules(rec, func(group, source string) bool { return group == workers || (group == cp && source == workers) })
	want := map[rule]int{
		{workers, "tcp", 10250, 10250, cp}:    1,
		{workers, "udp", 8472, 8472, workers}: 1, {workers, "udp", 8472, 8472, cp}: 1,
		{workers, "tcp", 4240, 4240, workers}: 1, {workers, "tcp", 4240, 4240, cp}: 1,
		{workers, "tcp", 30000, 32767, "10.30.0.0/16"}: 1, {workers, "tcp", 30000, 32767, "100.64.20.0/24"}: 1,
		{cp, "tcp", 6443, 6443, workers}: 1, {cp, "udp", 8472, 8472, workers}: 1, {cp, "tcp", 4240, 4240, workers}: 1,
	}
	expectRules(t, got, want)
}

// With Prometheus (on workers), it may scrape each role's metrics ports,
// and nothing else is opened for it.
func TestPrometheusScrapeRules(t *testing.T) {
	rec, err := runCluster(minimalClusterArgs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	workers, cp, etcd := "c1-workers-id", "c1-control-plane-id", "c1-etcd-id"
	got := ingressRules(rec, func(group, source string) bool { return source == workers && strings.HasSuffix(group, "-id") })
	want := map[rule]int{
		{workers, "tcp", 10250, 10250, workers}: 1, {workers, "tcp", 9100, 9100, workers}: 1,
		{workers, "udp", 8472, 8472, workers}: 1, {workers, "tcp", 4240, 4240, workers}: 1,
		{cp, "tcp", 10250, 10250, workers}: 1, {cp, "tcp", 9100, 9100, workers}: 1,
		{cp, "tcp", 10257, 10257, workers}: 1, {cp, "tcp", 10259, 10259, workers}: 1,
		{cp, "tcp", 6443, 6443, workers}: 1, {cp, "udp", 8472, 8472, workers}: 1, {cp, "tcp", 4240, 4240, workers}: 1,
		{etcd, "tcp", 2382, 2382, workers}: 1,
	}
	expectRules(t, got, want)
}

type rule struct {
	group, protocol string
	from, to        int
	source          string
}

// ingressRules counts the ingress rules keep selects by group and source.
func ingressRules(rec *mockrun.Recorder, keep func(group, source string) bool) map[rule]int {
	got := map[rule]int{}
	for _, r := range rec.OfType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") {
		group, source := r.String("securityGroupId"), r.String("referencedSecurityGroupId")+r.String("cidrIpv4")
		if keep(group, source) {
			got[rule{group, r.String("ipProtocol"), int(r.Get("fromPort").NumberValue()), int(r.Get("toPort").NumberValue()), source}]++
		}
	}
	return got
}

func expectRules(t *testing.T, got, want map[rule]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("ingress = %v, want exactly %v", got, want)
	}
	for r, n := range want {
		if got[r] != n {
			t.Errorf("rule %+v: %d, want %d", r, got[r], n)
		}
	}
}

// withArgs is minimalClusterArgs changed by edit.
func withArgs(edit func(*ClusterArgs)) *ClusterArgs {
	args := minimalClusterArgs()
	edit(args)
	return args
}
