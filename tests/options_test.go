package tests

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/program"
)

// A valid prod cluster, once as a stack's raw config and once as a Go
// program's ClusterArgs, each written out by hand.
func prodRaw() map[string]string {
	return map[string]string{
		"aws:region": "eu-west-1", "kubeha:environment": "prod", "kubeha:clusterName": "kubeha-prod",
		"kubeha:zones": `["eu-west-1a","eu-west-1b","eu-west-1c"]`,
	}
}

func prodArgs() *components.ClusterArgs {
	return &components.ClusterArgs{Region: "eu-west-1", Environment: "prod", ClusterName: "kubeha-prod",
		Zones: []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}}
}

var ownSubnets = []string{"subnet-0a00000000000000a", "subnet-0b00000000000000b", "subnet-0c00000000000000c"}

func existing(public bool) *components.ExistingNetwork {
	n := &components.ExistingNetwork{VpcID: pulumi.String("vpc-0123456789abcdef0")}
	for _, id := range ownSubnets {
		n.PrivateSubnetIDs = append(n.PrivateSubnetIDs, pulumi.String(id))
		if public {
			n.PublicSubnetIDs = append(n.PublicSubnetIDs, pulumi.String(id))
		}
	}
	return n
}

// Each bad input is refused by the stack path (the program on a stack's
// keys) and by a Go importer's NewCluster alike: the same field, the same
// key, and nothing declared.
func TestStackAndGoRefuseAlike(t *testing.T) {
	existingVPC := `{"existing":{"vpcId":"vpc-0123456789abcdef0","privateSubnetIds":["` + strings.Join(ownSubnets, `","`) +
		`"],"publicSubnetIds":["` + strings.Join(ownSubnets, `","`) + `"]}}`
	cases := []struct {
		name       string
		raw        map[string]string // "" deletes the key
		goArgs     func(*components.ClusterArgs)
		field, key string
	}{
		{"name S3 refuses", map[string]string{"kubeha:clusterName": "Acme-Payments"},
			func(a *components.ClusterArgs) { a.ClusterName = "Acme-Payments" }, "ClusterName", "kubeha:clusterName"},
		{"prod API open to the internet", map[string]string{"kubeha:api": `{"public":true,"allowedCidrs":["0.0.0.0/0"]}`},
			func(a *components.ClusterArgs) {
				a.LoadBalancer.Public, a.LoadBalancer.AllowedCidrs = true, []string{"0.0.0.0/0"}
			},
			"LoadBalancer.AllowedCidrs[0]", "kubeha:api.allowedCidrs[0]"},
		{"public API in an existing VPC, egress unknown", map[string]string{"kubeha:network": existingVPC, "kubeha:api": `{"public":true,"allowedCidrs":["100.64.20.0/24"]}`},
			func(a *components.ClusterArgs) {
				a.Network.Existing = existing(true)
				a.LoadBalancer.Public, a.LoadBalancer.AllowedCidrs = true, []string{"100.64.20.0/24"}
			}, "Network.Existing.NodeEgressCidrs", "kubeha:network.existing.nodeEgressCidrs"},
		{"prod without deletion protection", map[string]string{"kubeha:deletionProtection": "False"},
			func(a *components.ClusterArgs) { a.DeletionProtection = pulumi.BoolRef(false) }, "DeletionProtection", "kubeha:deletionProtection"},
		{"prod shared NAT", map[string]string{"kubeha:network": `{"sharedNatGateway":true}`},
			func(a *components.ClusterArgs) { a.Network.SharedNatGateway = true }, "Network.SharedNatGateway", "kubeha:network.sharedNatGateway"},
		{"prod NodePorts open to all", map[string]string{"kubeha:network": `{"nodePortCidrs":["0.0.0.0/0"]}`},
			func(a *components.ClusterArgs) { a.Network.NodePortCidrs = []string{"0.0.0.0/0"} }, "Network.NodePortCidrs[0]", "kubeha:network.nodePortCidrs[0]"},
		{"four etcd members", map[string]string{"kubeha:etcd": `{"members":4}`},
			func(a *components.ClusterArgs) { a.Etcd.Members = 4 }, "Etcd.Members", "kubeha:etcd.members"},
		{"etcd volume over 1 TiB", map[string]string{"kubeha:etcd": `{"volumeSizeGiB":2048}`},
			func(a *components.ClusterArgs) { a.Etcd.VolumeSizeGiB = 2048 }, "Etcd.VolumeSizeGiB", "kubeha:etcd.volumeSizeGiB"},
		{"etcd image not an AMI", map[string]string{"kubeha:etcd": `{"imageId":"debian-12"}`},
			func(a *components.ClusterArgs) { a.Etcd.ImageID = "debian-12" }, "Etcd.ImageID", "kubeha:etcd.imageId"},
		{"health check timeout not below interval", map[string]string{"kubeha:api": `{"healthCheck":{"intervalSeconds":5,"timeoutSeconds":5}}`},
			func(a *components.ClusterArgs) {
				a.LoadBalancer.HealthCheck = components.HealthCheck{IntervalSeconds: 5, TimeoutSeconds: 5}
			},
			"LoadBalancer.HealthCheck.TimeoutSeconds", "kubeha:api.healthCheck.timeoutSeconds"},
		{"deregistration delay over an hour", map[string]string{"kubeha:api": `{"deregistrationDelaySeconds":3601}`},
			func(a *components.ClusterArgs) { a.LoadBalancer.DeregistrationDelaySeconds = pulumi.IntRef(3601) },
			"LoadBalancer.DeregistrationDelaySeconds", "kubeha:api.deregistrationDelaySeconds"},
		{"DNS name without its zone", map[string]string{"kubeha:api": `{"dnsName":"api.example.com"}`},
			func(a *components.ClusterArgs) { a.LoadBalancer.DNSName = "api.example.com" }, "LoadBalancer.DNSName", "kubeha:api.dnsName"},
		{"renew deadline within client-go's jitter", map[string]string{"kubeha:controlPlane": `{"leaderElection":{"leaseDurationSeconds":7,"renewDeadlineSeconds":6,"retryPeriodSeconds":5}}`},
			func(a *components.ClusterArgs) {
				a.ControlPlane.LeaderElection = components.LeaderElection{LeaseDurationSeconds: 7, RenewDeadlineSeconds: 6, RetryPeriodSeconds: 5}
			}, "ControlPlane.LeaderElection.RenewDeadlineSeconds", "kubeha:controlPlane.leaderElection.renewDeadlineSeconds"},
		{"two zones", map[string]string{"kubeha:zones": `["eu-west-1a","eu-west-1b"]`},
			func(a *components.ClusterArgs) { a.Zones = a.Zones[:2] }, "Zones", "kubeha:zones"},
		{"zone of another region", map[string]string{"kubeha:zones": `["eu-west-1a","eu-west-1b","us-east-1c"]`},
			func(a *components.ClusterArgs) { a.Zones = []string{"eu-west-1a", "eu-west-1b", "us-east-1c"} }, "Zones[2]", "kubeha:zones[2]"},
		{"unsupported minor", map[string]string{"kubeha:kubernetesVersion": "v1.29.4"},
			func(a *components.ClusterArgs) { a.KubernetesVersion = "v1.29.4" }, "KubernetesVersion", "kubeha:kubernetesVersion"},
		{"public VPC range", map[string]string{"kubeha:network": `{"vpcCidr":"8.8.0.0/16"}`},
			func(a *components.ClusterArgs) { a.Network.VpcCidr = "8.8.0.0/16" }, "Network.VpcCidr", "kubeha:network.vpcCidr"},
		{"pods inside the VPC", map[string]string{"kubeha:network": `{"vpcCidr":"10.0.0.0/16","podCidr":"10.0.128.0/17"}`},
			func(a *components.ClusterArgs) { a.Network.VpcCidr, a.Network.PodCidr = "10.0.0.0/16", "10.0.128.0/17" }, "Network.PodCidr", "kubeha:network.podCidr"},
		{"pool min above max", map[string]string{"kubeha:workers": `[{"name":"general","minPerZone":6,"maxPerZone":3}]`},
			func(a *components.ClusterArgs) {
				a.Workers = []components.WorkerPool{{Name: "general", MinPerZone: pulumi.IntRef(6), MaxPerZone: 3}}
			}, "Workers[0].MinPerZone", "kubeha:workers[0].minPerZone"},
		{"taint effect", map[string]string{"kubeha:workers": `[{"name":"general","taints":["spot=true:Never"]}]`},
			func(a *components.ClusterArgs) {
				a.Workers = []components.WorkerPool{{Name: "general", Taints: []string{"spot=true:Never"}}}
			},
			"Workers[0].Taints[0]", "kubeha:workers[0].taints[0]"},
		{"label the kubelet may not set", map[string]string{"kubeha:workers": `[{"name":"general","labels":["node-role.kubernetes.io/worker="]}]`},
			func(a *components.ClusterArgs) {
				a.Workers = []components.WorkerPool{{Name: "general", Labels: []string{"node-role.kubernetes.io/worker="}}}
			}, "Workers[0].Labels[0]", "kubeha:workers[0].labels[0]"},
		{"two pools, one name", map[string]string{"kubeha:workers": `[{"name":"a"},{"name":"a"}]`},
			func(a *components.ClusterArgs) { a.Workers = []components.WorkerPool{{Name: "a"}, {Name: "a"}} }, "Workers[1].Name", "kubeha:workers[1].name"},
		{"unknown monitoring", map[string]string{"kubeha:addons": `{"monitoring":"datadog"}`},
			func(a *components.ClusterArgs) { a.Addons.Monitoring = "datadog" }, "Addons.Monitoring", "kubeha:addons.monitoring"},
		{"alarm address", map[string]string{"kubeha:addons": `{"alarmEmail":"ops"}`},
			func(a *components.ClusterArgs) { a.Addons.AlarmEmail = "ops" }, "Addons.AlarmEmail", "kubeha:addons.alarmEmail"},
		{"reserved tag", map[string]string{"kubeha:tags": `{"kubernetes.io/cluster/other":"owned"}`},
			func(a *components.ClusterArgs) { a.Tags = map[string]string{"kubernetes.io/cluster/other": "owned"} }, "Tags", "kubeha:tags"},
		{"unknown environment", map[string]string{"kubeha:environment": "production"},
			func(a *components.ClusterArgs) { a.Environment = "production" }, "Environment", "kubeha:environment"},
		{"no region", map[string]string{"aws:region": ""},
			func(a *components.ClusterArgs) { a.Region = "" }, "Region", "aws:region"},
	}
	if len(cases) < 20 {
		t.Fatalf("only %d cases; keep at least 20", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := prodRaw()
			for k, v := range c.raw {
				if v == "" {
					delete(raw, k)
				} else {
					raw[k] = v
				}
			}
			rec, err := mockrun.Run("kubeha", "prod", raw, program.Stack(raw))
			expectRefusal(t, "stack", err, rec, c.field, c.key)

			args := prodArgs()
			c.goArgs(args)
			rec, err = mockrun.Run("kubeha", "prod", nil, func(ctx *pulumi.Context) error {
				_, err := components.NewCluster(ctx, "kubeha-prod", args)
				return err
			})
			expectRefusal(t, "Go", err, rec, c.field, c.key)
		})
	}
	// Both bases are accepted, so each refusal above is its case's own.
	if _, err := mockrun.Run("kubeha", "prod", prodRaw(), program.Stack(prodRaw())); err != nil {
		t.Errorf("the valid stack is refused: %v", err)
	}
}

func expectRefusal(t *testing.T, path string, err error, rec *mockrun.Recorder, field, key string) {
	t.Helper()
	var fe *components.FieldError
	if !errors.As(err, &fe) {
		t.Errorf("%s path: %v, want a components.FieldError", path, err)
		return
	}
	var all components.FieldErrors
	if !errors.As(err, &all) || len(all) != 1 || fe.Field != field || fe.Key != key {
		t.Errorf("%s path refused with %v; want exactly one error, on %s (%s)", path, err, field, key)
	}
	if n := len(rec.Resources()); n != 0 {
		t.Errorf("%s path declared %d resources before refusing", path, n)
	}
}

// Keys a stack sets away from their defaults reach the resources they
// configure through the program.
func TestNonDefaultKeysReachTheResources(t *testing.T) {
	raw := prodRaw()
	raw["kubeha:api"] = `{"healthCheck":{"intervalSeconds":10,"timeoutSeconds":4,"healthyThreshold":3,"unhealthyThreshold":4},` +
		`"deregistrationDelaySeconds":0,"dnsName":"api.prod.example.com","hostedZoneId":"Z0123456789ABCDEFGHIJ"}`
	raw["kubeha:controlPlane"] = `{"leaderElection":{"leaseDurationSeconds":30,"renewDeadlineSeconds":20,"retryPeriodSeconds":4}}`
	raw["kubeha:addons"] = `{"alarmEmail":"oncall@example.com"}`
	raw["kubeha:tags"] = `{"cost-center":"42"}`
	rec, err := mockrun.Run("kubeha", "prod", raw, program.Stack(raw))
	if err != nil {
		t.Fatal(err)
	}
	tg := rec.OfType("aws:lb/targetGroup:TargetGroup")[0]
	for field, want := range map[string]float64{"interval": 10, "timeout": 4, "healthyThreshold": 3, "unhealthyThreshold": 4} {
		if got := tg.Get("healthCheck", field).NumberValue(); got != want {
			t.Errorf("target group healthCheck.%s = %v, want %v", field, got, want)
		}
	}
	if d := tg.Get("deregistrationDelay"); !d.IsNumber() || d.NumberValue() != 0 {
		t.Errorf("deregistrationDelay %v, want 0", d)
	}
	record, err := rec.Named("aws:route53/record:Record", "kubeha-prod-api")
	if err != nil || record.String("name") != "api.prod.example.com" || record.String("zoneId") != "Z0123456789ABCDEFGHIJ" {
		t.Errorf("API alias record %v (%v), want api.prod.example.com in Z0123456789ABCDEFGHIJ", record.Inputs, err)
	}
	subs := rec.OfType("aws:sns/topicSubscription:TopicSubscription")
	if len(subs) != 1 || subs[0].String("endpoint") != "oncall@example.com" || subs[0].String("protocol") != "email" {
		t.Errorf("alarm subscriptions %v, want oncall@example.com by e-mail", subs)
	}
	lt, err := rec.Named("aws:ec2/launchTemplate:LaunchTemplate", "kubeha-prod-control-plane-eu-west-1b")
	if err != nil {
		t.Fatal(err)
	}
	// The scheduler's configuration file and the controller-manager's flags.
	scheduler := regexp.MustCompile(`leaseDuration: 30s\s+renewDeadline: 20s\s+resourceLock: leases\s+resourceName: kube-scheduler[\s\S]*retryPeriod: 4s`)
	controllerManager := regexp.MustCompile(`leader-elect-lease-duration\s+value: 30s\s+- name: leader-elect-renew-deadline\s+value: 20s\s+- name: leader-elect-retry-period\s+value: 4s`)
	var schedulers, managers int
	for _, content := range renderedFiles(t, lt.String("userData")) {
		if scheduler.MatchString(content) {
			schedulers++
		}
		managers += len(controllerManager.FindAllString(content, -1))
	}
	if schedulers != 1 || managers < 1 {
		t.Errorf("lease timing 30s/20s/4s in %d scheduler configs and %d controller-manager flag sets, want 1 and at least 1", schedulers, managers)
	}
	// kubeha's node lifecycle defaults: a lost node's pods out of Services
	// after 20 s, evicted after 60 s more.
	for _, flag := range []string{`node-monitor-grace-period\s+value: 20s`, `default-not-ready-toleration-seconds\s+value: "60"`, `default-unreachable-toleration-seconds\s+value: "60"`} {
		found := false
		for _, content := range renderedFiles(t, lt.String("userData")) {
			found = found || regexp.MustCompile(flag).MatchString(content)
		}
		if !found {
			t.Errorf("control-plane user-data has no flag %s", flag)
		}
	}
	if vpc := rec.OfType("aws:ec2/vpc:Vpc")[0]; vpc.Tags()["cost-center"] != "42" {
		t.Errorf("kubeha:tags did not reach the VPC: %v", vpc.Tags())
	}
}
