package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/components"
)

// validRaw is a complete, valid configuration as Pulumi passes it.
func validRaw() map[string]string {
	return map[string]string{
		"aws:region":               "eu-west-1",
		"kubeha:environment":       "prod",
		"kubeha:clusterName":       "kubeha-prod",
		"kubeha:zones":             `["eu-west-1a","eu-west-1b","eu-west-1c"]`,
		"kubeha:kubernetesVersion": "v1.36.3",
		"kubeha:network":           `{"vpcCidr":"10.10.0.0/16"}`,
		"kubeha:api":               `{"public":true,"allowedCidrs":["100.64.10.0/24"]}`,
		"kubeha:etcd":              `{"members":5,"backupRetentionDays":14}`,
		"kubeha:workers":           `[{"name":"general","maxPerZone":10},{"name":"batch","instanceTypes":["c6i.xlarge","c7i.xlarge"],"spotPercent":100,"minPerZone":0,"desiredPerZone":0,"labels":["kubeha.io/capacity=spot","node.kubernetes.io/lifecycle=spot"],"taints":["kubeha.io/spot=true:NoSchedule","dedicated:NoExecute"]}]`,
		"aws:profile":              "ignored-by-kubeha",
	}
}

func TestParseValid(t *testing.T) {
	s, err := Parse(validRaw())
	if err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	if s.Region != "eu-west-1" || s.Etcd.Members != 5 || s.Etcd.BackupRetentionDays != 14 {
		t.Errorf("values not read: region %q, members %d, retention %d", s.Region, s.Etcd.Members, s.Etcd.BackupRetentionDays)
	}
	// Unset keys keep their defaults, in nested objects and in list items.
	if s.Etcd.BackupIntervalMinutes != 15 || s.Network.PodCidr != "10.244.0.0/16" {
		t.Errorf("defaults lost: interval %d, pod CIDR %q", s.Etcd.BackupIntervalMinutes, s.Network.PodCidr)
	}
	if got := s.Workers[0]; got.InstanceTypes[0] != "m6i.large" || *got.MinPerZone != 1 || got.MaxPerZone != 10 {
		t.Errorf("workers[0] = %+v, want defaults merged with maxPerZone 10", got)
	}
	if got := s.Workers[1]; *got.MinPerZone != 0 || got.InstanceTypes[0] != "c6i.xlarge" {
		t.Errorf("workers[1] = %+v", got)
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name    string
		set     map[string]string // "" deletes the key
		wantKey string
		wantMsg string
	}{
		{"two zones", map[string]string{"kubeha:zones": `["eu-west-1a","eu-west-1b"]`}, "kubeha:zones", "3 to 6 distinct zones"},
		{"bootstrap timeout too short", map[string]string{"kubeha:bootstrapTimeoutMinutes": "4"}, "kubeha:bootstrapTimeoutMinutes", "5 to 60"},
		{"duplicate zone", map[string]string{"kubeha:zones": `["eu-west-1a","eu-west-1b","eu-west-1a"]`}, "kubeha:zones[2]", "already Zones[0]"},
		{"zone outside region", map[string]string{"kubeha:zones": `["eu-west-1a","eu-west-1b","us-east-1c"]`}, "kubeha:zones[2]", "a zone of eu-west-1"},
		{"zones missing", map[string]string{"kubeha:zones": ""}, "kubeha:zones", "3 to 6"},
		{"even etcd members", map[string]string{"kubeha:etcd": `{"members":4}`}, "kubeha:etcd.members", "3 or 5"},
		{"single etcd member", map[string]string{"kubeha:etcd": `{"members":1}`}, "kubeha:etcd.members", "3 or 5"},
		{"etcd members as text", map[string]string{"kubeha:etcd": `{"members":"three"}`}, "kubeha:etcd.members", "a whole number"},
		{"public VPC CIDR", map[string]string{"kubeha:network": `{"vpcCidr":"8.8.0.0/16"}`}, "kubeha:network.vpcCidr", "RFC 1918"},
		{"VPC CIDR with host bits", map[string]string{"kubeha:network": `{"vpcCidr":"10.0.0.1/16"}`}, "kubeha:network.vpcCidr", "no host bits"},
		{"VPC CIDR too small", map[string]string{"kubeha:network": `{"vpcCidr":"10.0.0.0/24"}`}, "kubeha:network.vpcCidr", "/16 to /22"},
		{"pod CIDR overlaps VPC", map[string]string{"kubeha:network": `{"vpcCidr":"10.0.0.0/16","podCidr":"10.0.128.0/17"}`}, "kubeha:network.podCidr", "does not overlap VpcCidr"},
		{"service CIDR overlaps pods", map[string]string{"kubeha:network": `{"podCidr":"10.96.0.0/16"}`}, "kubeha:network.serviceCidr", "does not overlap PodCidr"},
		{"public service CIDR", map[string]string{"kubeha:network": `{"serviceCidr":"1.96.0.0/12"}`}, "kubeha:network.serviceCidr", "private range"},
		{"shared NAT in prod", map[string]string{"kubeha:network": `{"sharedNatGateway":true}`}, "kubeha:network.sharedNatGateway", "false in prod"},
		{"malformed version", map[string]string{"kubeha:kubernetesVersion": "1.36"}, "kubeha:kubernetesVersion", "vMAJOR.MINOR.PATCH"},
		{"unsupported minor", map[string]string{"kubeha:kubernetesVersion": "v1.29.4"}, "kubeha:kubernetesVersion", "a patch release of 1.35 or 1.36"},
		{"unpinned patch", map[string]string{"kubeha:kubernetesVersion": "v1.36.1"}, "kubeha:kubernetesVersion", "v1.35.8 or v1.36.3"},
		{"unpinned etcd", map[string]string{"kubeha:etcd": `{"version":"v3.5.21"}`}, "kubeha:etcd.version", "v3.6.6: an etcd release kubeha pins"},
		{"pool ahead of the control plane", map[string]string{"kubeha:kubernetesVersion": "v1.35.8", "kubeha:workers": `[{"name":"general","kubernetesVersion":"v1.36.3"}]`},
			"kubeha:workers[0].kubernetesVersion", "v1.35.8 or older"},
		{"worker min above max", map[string]string{"kubeha:workers": `[{"name":"general","minPerZone":6,"maxPerZone":3}]`}, "kubeha:workers[0].minPerZone", "at most MaxPerZone (3)"},
		{"worker desired outside range", map[string]string{"kubeha:workers": `[{"name":"general","desiredPerZone":9,"maxPerZone":3}]`}, "kubeha:workers[0].desiredPerZone", "from MinPerZone (1) to MaxPerZone (3)"},
		{"duplicate pool name", map[string]string{"kubeha:workers": `[{"name":"a"},{"name":"a"}]`}, "kubeha:workers[1].name", "not used by Workers[0]"},
		{"old single instanceType key", map[string]string{"kubeha:workers": `[{"name":"general","instanceType":"m6i.large"}]`}, "kubeha:workers[0].instanceType", "instanceTypes"},
		{"eleven instance types", map[string]string{"kubeha:workers": `[{"name":"general","instanceTypes":["a.b","a.b","a.b","a.b","a.b","a.b","a.b","a.b","a.b","a.b","a.b"]}]`}, "kubeha:workers[0].instanceTypes", "1 to 10 EC2 instance types"},
		{"spot over 100", map[string]string{"kubeha:workers": `[{"name":"general","spotPercent":101}]`}, "kubeha:workers[0].spotPercent", "0 to 100"},
		{"label without value", map[string]string{"kubeha:workers": `[{"name":"general","labels":["team"]}]`}, "kubeha:workers[0].labels[0]", "key=value"},
		{"label in reserved namespace", map[string]string{"kubeha:workers": `[{"name":"general","labels":["node-role.kubernetes.io/worker="]}]`}, "kubeha:workers[0].labels[0]", "may not set node-role.kubernetes.io/ labels"},
		{"taint with bad effect", map[string]string{"kubeha:workers": `[{"name":"general","taints":["spot=true:Never"]}]`}, "kubeha:workers[0].taints[0]", "NoSchedule, PreferNoSchedule, NoExecute"},
		{"taint with bad key", map[string]string{"kubeha:workers": `[{"name":"general","taints":["-spot=true:NoSchedule"]}]`}, "kubeha:workers[0].taints[0]", "[prefix/]name"},
		{"unknown monitoring", map[string]string{"kubeha:addons": `{"monitoring":"datadog"}`}, "kubeha:addons.monitoring", "prometheus, cloudwatch"},
		{"unknown CNI plugin", map[string]string{"kubeha:addons": `{"cniPlugin":"calico"}`}, "kubeha:addons.cniPlugin", "cilium, flannel"},
		{"malformed alarm e-mail", map[string]string{"kubeha:addons": `{"alarmEmail":"ops"}`}, "kubeha:addons.alarmEmail", "an e-mail address"},
		{"CloudWatch without its webhook", map[string]string{"kubeha:addons": `{"monitoring":"cloudwatch","podIdentityWebhook":false}`}, "kubeha:addons.podIdentityWebhook", "on (true) while monitoring is cloudwatch"},
		{"add-on switch not a bool", map[string]string{"kubeha:addons": `{"cni":"cilium"}`}, "kubeha:addons.cni", "true, false or an object"},
		{"pool name with capitals", map[string]string{"kubeha:workers": `[{"name":"General"}]`}, "kubeha:workers[0].name", "1 to 20 of a-z"},
		{"unknown top-level key", map[string]string{"kubeha:kubernetesVersoin": "v1.36.3"}, "kubeha:kubernetesVersoin", "one of clusterName, environment"},
		{"unknown nested key", map[string]string{"kubeha:etcd": `{"memberz":3}`}, "kubeha:etcd.memberz", "one of members, instanceType"},
		{"unknown key in a list item", map[string]string{"kubeha:workers": `[{"name":"general","minSize":1}]`}, "kubeha:workers[0].minSize", "minPerZone"},
		{"allowlist 0.0.0.0/0 in prod", map[string]string{"kubeha:api": `{"public":true,"allowedCidrs":["0.0.0.0/0"]}`}, "kubeha:api.allowedCidrs[0]", "narrower than the whole internet in prod"},
		{"public API without allowlist", map[string]string{"kubeha:api": `{"public":true}`}, "kubeha:api.allowedCidrs", "at least one CIDR"},
		{"NodePorts open to the internet in prod", map[string]string{"kubeha:network": `{"nodePortCidrs":["0.0.0.0/0"]}`}, "kubeha:network.nodePortCidrs[0]", "narrower than the whole internet in prod"},
		{"malformed NodePort CIDR", map[string]string{"kubeha:network": `{"nodePortCidrs":["10.0.0.0/40"]}`}, "kubeha:network.nodePortCidrs[0]", "IPv4 CIDR"},
		{"malformed allowlist CIDR", map[string]string{"kubeha:api": `{"public":true,"allowedCidrs":["203.0.113.0/33"]}`}, "kubeha:api.allowedCidrs[0]", "IPv4 CIDR"},
		{"documentation range left in the allowlist", map[string]string{"kubeha:api": `{"public":true,"allowedCidrs":["100.64.10.0/24","203.0.113.0/24"]}`}, "kubeha:api.allowedCidrs[1]", "documentation range"},
		{"documentation range in NodePort sources", map[string]string{"kubeha:network": `{"nodePortCidrs":["198.51.100.128/25"]}`}, "kubeha:network.nodePortCidrs[0]", "198.51.100.0/24 is a documentation range"},
		{"unknown environment", map[string]string{"kubeha:environment": "production"}, "kubeha:environment", "dev, staging, prod"},
		{"bad cluster name", map[string]string{"kubeha:clusterName": "Kube_HA"}, "kubeha:clusterName", "a-z, 0-9"},
		{"region missing", map[string]string{"aws:region": ""}, "aws:region", "an AWS region"},
		{"no deletion protection in prod", map[string]string{"kubeha:deletionProtection": "false"}, "kubeha:deletionProtection", "true in prod"},
		{"deletion protection not a bool", map[string]string{"kubeha:deletionProtection": "yes"}, "kubeha:deletionProtection", "true or false"},
		{"backup interval zero", map[string]string{"kubeha:etcd": `{"backupIntervalMinutes":4}`}, "kubeha:etcd.backupIntervalMinutes", "5 to 1440"},
		{"retention zero", map[string]string{"kubeha:etcd": `{"backupRetentionDays":-1}`}, "kubeha:etcd.backupRetentionDays", "1 to 3650"},
		{"bad instance type", map[string]string{"kubeha:controlPlane": `{"instanceType":"large"}`}, "kubeha:controlPlane.instanceType", "EC2 instance type"},
		{"existing subnets without VPC", map[string]string{"kubeha:network": `{"existing":{"privateSubnetIds":["subnet-0123456789abcdef0"]}}`}, "kubeha:network.existing.vpcId", "the existing VPC's ID"},
		{"existing VPC, too few subnets", map[string]string{"kubeha:network": `{"existing":{"vpcId":"vpc-0123456789abcdef0","privateSubnetIds":["subnet-0123456789abcdef0"],"publicSubnetIds":["subnet-0123456789abcdef1","subnet-0123456789abcdef2","subnet-0123456789abcdef3"],"nodeEgressCidrs":["198.51.100.1/32"]}}`}, "kubeha:network.existing.privateSubnetIds", "one subnet ID per zone, 3"},
		{"public API in an existing VPC without egress", map[string]string{"kubeha:network": `{"existing":{"vpcId":"vpc-0123456789abcdef0","privateSubnetIds":["subnet-0123456789abcdef0","subnet-0123456789abcdef1","subnet-0123456789abcdef2"],"publicSubnetIds":["subnet-0123456789abcdef3","subnet-0123456789abcdef4","subnet-0123456789abcdef5"]}}`}, "kubeha:network.existing.nodeEgressCidrs", "which a public API must admit"},
		{"renew within client-go's jitter of retry", map[string]string{"kubeha:controlPlane": `{"leaderElection":{"leaseDurationSeconds":7,"renewDeadlineSeconds":6,"retryPeriodSeconds":5}}`}, "kubeha:controlPlane.leaderElection.renewDeadlineSeconds", "more than 1.2 x RetryPeriodSeconds (5)"},
		{"deregistration delay over an hour", map[string]string{"kubeha:api": `{"deregistrationDelaySeconds":3601}`}, "kubeha:api.deregistrationDelaySeconds", "0 to 3600"},
		{"uppercase cluster name", map[string]string{"kubeha:clusterName": "Acme-Payments"}, "kubeha:clusterName", "S3 buckets"},
		{"reserved tag key", map[string]string{"kubeha:tags": `{"aws:createdBy":"me"}`}, "kubeha:tags", "outside the aws:"},
		{"tags as a list", map[string]string{"kubeha:tags": `["team=payments"]`}, "kubeha:tags", "a map of strings"},
		{"zones as a string", map[string]string{"kubeha:zones": "eu-west-1a,eu-west-1b,eu-west-1c"}, "kubeha:zones", "a list of strings"},
		{"health check timeout not below interval", map[string]string{"kubeha:api": `{"healthCheck":{"intervalSeconds":5,"timeoutSeconds":5}}`}, "kubeha:api.healthCheck.timeoutSeconds", "less than IntervalSeconds (5)"},
		{"health check interval too short", map[string]string{"kubeha:api": `{"healthCheck":{"intervalSeconds":1,"timeoutSeconds":2}}`}, "kubeha:api.healthCheck.intervalSeconds", "5 to 300"},
		{"dns name without zone", map[string]string{"kubeha:api": `{"dnsName":"api.example.com"}`}, "kubeha:api.dnsName", "set together with HostedZoneID"},
		{"node grace under two Lease renewals", map[string]string{"kubeha:controlPlane": `{"nodeLifecycle":{"nodeMonitorGracePeriodSeconds":10}}`}, "kubeha:controlPlane.nodeLifecycle.nodeMonitorGracePeriodSeconds", "20 to 300"},
		{"pod eviction over an hour", map[string]string{"kubeha:controlPlane": `{"nodeLifecycle":{"podEvictionSeconds":7200}}`}, "kubeha:controlPlane.nodeLifecycle.podEvictionSeconds", "1 to 3600"},
		{"lease not above renew deadline", map[string]string{"kubeha:controlPlane": `{"leaderElection":{"leaseDurationSeconds":10,"renewDeadlineSeconds":10}}`}, "kubeha:controlPlane.leaderElection.leaseDurationSeconds", "more than RenewDeadlineSeconds (10)"},
		{"int overflow", map[string]string{"kubeha:etcd": `{"members":99999999999999999999}`}, "kubeha:etcd.members", "a whole number"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := validRaw()
			for k, v := range c.set {
				if v == "" {
					delete(raw, k)
				} else {
					raw[k] = v
				}
			}
			_, err := Parse(raw)
			var errs components.FieldErrors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want FieldErrors naming %s", err, c.wantKey)
			}
			i := slices.Index(keys(errs), c.wantKey)
			if i < 0 {
				t.Fatalf("error names %v, want %s:\n%v", keys(errs), c.wantKey, err)
			}
			if msg := errs[i].Error(); !strings.Contains(msg, c.wantMsg) {
				t.Errorf("error %q does not say %q", msg, c.wantMsg)
			}
		})
	}
	if len(cases) < 15 {
		t.Fatalf("only %d bad configs; the table must keep at least 15", len(cases))
	}
}

func TestErrorNamesKeyValueAndAllowed(t *testing.T) {
	raw := validRaw()
	raw["kubeha:etcd"] = `{"members":4}`
	_, err := Parse(raw)
	want := "Etcd.Members (kubeha:etcd.members): 4; allowed: 3 or 5"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want it to contain %q", err, want)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	raw := validRaw()
	raw["kubeha:etcd"] = `{"members":4}`
	raw["kubeha:clusterName"] = "X"
	raw["kubeha:typo"] = "1"
	_, err := Parse(raw)
	var errs components.FieldErrors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v", err)
	}
	// Unknown keys are reported before validation runs, so a typo is never
	// hidden behind the rules of the keys it was meant to set.
	if got := keys(errs); !reflect.DeepEqual(got, []string{"kubeha:typo"}) {
		t.Errorf("first pass keys = %v, want [kubeha:typo]", got)
	}
	delete(raw, "kubeha:typo")
	_, err = Parse(raw)
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
}

func keys(errs components.FieldErrors) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Key
	}
	return out
}

// A key tagged required is refused when left out: the reference's
// "required" is what validation does.
func TestRequiredTagMatchesValidation(t *testing.T) {
	st := reflect.TypeOf(components.ClusterArgs{})
	required := 0
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		if f.Tag.Get("required") != "true" {
			continue
		}
		required++
		key := components.StackKey(f.Name)
		raw := validRaw()
		delete(raw, key)
		_, err := Parse(raw)
		var errs components.FieldErrors
		if !errors.As(err, &errs) || !slices.Contains(keys(errs), key) {
			t.Errorf("%s is tagged required, but leaving it out gives %v", key, err)
		}
	}
	if required != 4 {
		t.Errorf("%d required keys, want 4: aws:region, clusterName, environment, zones", required)
	}
}

func TestNotHA(t *testing.T) {
	raw := validRaw()
	raw["kubeha:environment"] = "dev"
	raw["kubeha:network"] = `{"sharedNatGateway":true}`
	s, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	f := s.NotHA()
	if len(f) != 1 || f[0].Key != "kubeha:network.sharedNatGateway" {
		t.Errorf("NotHA = %v, want the shared NAT gateway", f)
	}
	s.Network.SharedNatGateway = false
	if f := s.NotHA(); len(f) != 0 {
		t.Errorf("NotHA = %v, want none", f)
	}
	for i := range s.Workers {
		s.Workers[i].MinPerZone = pulumi.IntRef(0)
	}
	if f := s.NotHA(); len(f) != 1 || !strings.Contains(f[0].Key, "minPerZone") {
		t.Errorf("NotHA = %v, want the zero-minimum workers", f)
	}
}

// Booleans read as Pulumi's GetBool reads them, at the top level and
// inside objects; anything else is refused.
func TestBoolSpellings(t *testing.T) {
	for _, c := range []struct {
		protection, public string
		want               bool
	}{{"False", `"False"`, false}, {"True", `"TRUE"`, true}, {"false", "false", false}, {"1", `"t"`, true}} {
		raw := validRaw()
		raw["kubeha:environment"] = "dev"
		raw["kubeha:deletionProtection"] = c.protection
		raw["kubeha:api"] = `{"public":` + c.public + `,"allowedCidrs":["100.64.10.0/24"]}`
		s, err := Parse(raw)
		if err != nil {
			t.Fatalf("deletionProtection %q, public %s: %v", c.protection, c.public, err)
		}
		if *s.DeletionProtection != c.want || s.LoadBalancer.Public != c.want {
			t.Errorf("deletionProtection %q, public %s read as %v, %v; want %v", c.protection, c.public, *s.DeletionProtection, s.LoadBalancer.Public, c.want)
		}
	}
}

// Zero where zero is a real value stays zero; unset takes the default.
func TestZeroIsNotUnset(t *testing.T) {
	raw := validRaw()
	raw["kubeha:api"] = `{"deregistrationDelaySeconds":0}`
	raw["kubeha:workers"] = `[{"name":"batch","minPerZone":0,"maxPerZone":3}]`
	s, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	w := s.Workers[0]
	if *s.LoadBalancer.DeregistrationDelaySeconds != 0 || *w.MinPerZone != 0 || *w.DesiredPerZone != 0 {
		t.Errorf("zero became a default: delay %d, min %d, desired %d", *s.LoadBalancer.DeregistrationDelaySeconds, *w.MinPerZone, *w.DesiredPerZone)
	}
	delete(raw, "kubeha:api")
	delete(raw, "kubeha:workers")
	if s, err = Parse(raw); err != nil {
		t.Fatal(err)
	}
	if *s.LoadBalancer.DeregistrationDelaySeconds != components.DefaultDeregistrationDelaySeconds || *s.Workers[0].MinPerZone != components.DefaultMinPerZone {
		t.Errorf("unset took %d and %d, want the defaults", *s.LoadBalancer.DeregistrationDelaySeconds, *s.Workers[0].MinPerZone)
	}
}

// Add-ons are switched with a bool or configured with an object.
func TestAddonForms(t *testing.T) {
	raw := validRaw()
	raw["kubeha:addons"] = `{"cni":false,"coreDNS":"true","metricsServer":{"version":"3.13.0","values":{"replicas":3},` +
		`"chart":"https://github.com/kubernetes-sigs/metrics-server/releases/download/metrics-server-helm-chart-3.13.0/metrics-server-3.13.0.tgz",` +
		`"digest":"fb929902e3b7565663cdd1734f31d63735c932be1541a7228b5aeef6d2348a1f"}}`
	s, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	a := s.Addons
	if !a.CNI.Disabled || a.CoreDNS.Disabled || a.MetricsServer.Disabled || a.MetricsServer.Version != "3.13.0" || fmt.Sprint(a.MetricsServer.Values["replicas"]) != "3" {
		t.Errorf("add-ons read as %+v", a)
	}
}

func TestParseStackYAML(t *testing.T) {
	raw, err := ParseStackYAML([]byte(`
config:
  aws:region: eu-west-1
  kubeha:environment: prod
  kubeha:clusterName: kubeha-prod
  kubeha:zones: [eu-west-1a, eu-west-1b, eu-west-1c]
  kubeha:deletionProtection: true
  kubeha:etcd:
    members: 3
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"aws:region": "eu-west-1", "kubeha:environment": "prod", "kubeha:clusterName": "kubeha-prod",
		"kubeha:zones": `["eu-west-1a","eu-west-1b","eu-west-1c"]`, "kubeha:deletionProtection": "true",
		"kubeha:etcd": `{"members":3}`,
	}
	if !reflect.DeepEqual(raw, want) {
		t.Errorf("got %v\nwant %v", raw, want)
	}
	if _, err := Parse(raw); err != nil {
		t.Errorf("parse: %v", err)
	}
	for _, bad := range []string{"config: [", "config:\n  zones: [a]\n", "config:\n  kubeha:x:\n    secure: v1:abc\n"} {
		if _, err := ParseStackYAML([]byte(bad)); err == nil {
			t.Errorf("ParseStackYAML(%q) succeeded, want an error", bad)
		}
	}
}
