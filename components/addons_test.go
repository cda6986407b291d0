package components

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/mockrun"
)

func mustRunCluster(t *testing.T, edit func(*ClusterArgs)) *mockrun.Recorder {
	t.Helper()
	args := minimalClusterArgs()
	if edit != nil {
		edit(args)
	}
	rec, err := runCluster(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// addonSet is the add-on set the program wrote for the control plane's
// applier, or false on the provider path.
func addonSet(rec *mockrun.Recorder) (addons.Set, bool) {
	var set addons.Set
	for _, r := range rec.OfType("aws:s3/bucketObjectv2:BucketObjectv2") {
		if r.String("key") != bootstrap.AddonSetKey {
			continue
		}
		content := r.Inputs["content"]
		if content.IsSecret() {
			content = content.SecretValue().Element
		}
		if err := json.Unmarshal([]byte(content.StringValue()), &set); err != nil {
			panic(fmt.Sprintf("the add-on set is not JSON: %v", err))
		}
		return set, true
	}
	return set, false
}

// releases maps chart name to its release: in the add-on set when the
// control plane applies it, as a resource with a Helm release's inputs
// (chart, version, repositoryOpts.repo, namespace, values); on the
// provider path, the recorded Helm release itself.
func releases(rec *mockrun.Recorder) map[string]mockrun.Resource {
	out := map[string]mockrun.Resource{}
	if set, ok := addonSet(rec); ok {
		for _, step := range set.Steps {
			if r := step.Release; r != nil {
				out[r.Name] = mockrun.Resource{Type: "addon set release", Name: r.Name, Inputs: resource.NewPropertyMapFromMap(map[string]any{
					"chart": r.Name, "version": r.Version, "namespace": r.Namespace,
					"repositoryOpts": map[string]any{"repo": r.Repo}, "values": r.Values,
				})}
			}
		}
		return out
	}
	for _, r := range rec.OfType("kubernetes:helm.sh/v3:Release") {
		out[r.String("chart")] = r
	}
	return out
}

// objects are the objects of kind kubeha applies itself, from the add-on
// set or the provider path's resources, as their fields.
func objects(rec *mockrun.Recorder, apiVersion, kind string) []mockrun.Resource {
	var out []mockrun.Resource
	if set, ok := addonSet(rec); ok {
		for _, step := range set.Steps {
			if step.Object != nil && step.Object["apiVersion"] == apiVersion && step.Object["kind"] == kind {
				out = append(out, mockrun.Resource{Type: "addon set object", Name: step.Name, Inputs: resource.NewPropertyMapFromMap(step.Object)})
			}
		}
		return out
	}
	group := apiVersion
	if !strings.Contains(group, "/") {
		group = "core/" + group
	}
	return rec.OfType("kubernetes:" + group + ":" + kind)
}

// value reads a release's value at a path of keys.
func value(r mockrun.Resource, path ...string) resource.PropertyValue {
	return r.Get(append([]string{"values"}, path...)...)
}

func TestAddonsChartsPinnedAndGated(t *testing.T) {
	for _, applier := range []string{ApplierCluster, ApplierPulumi} {
		t.Run(applier, func(t *testing.T) { testChartsPinnedAndGated(t, applier) })
	}
}

func testChartsPinnedAndGated(t *testing.T, applier string) {
	rec := mustRunCluster(t, func(a *ClusterArgs) { a.Addons.Applier = applier })
	got := releases(rec)
	for _, chart := range addons.Charts {
		if chart == addons.CloudWatchObservability || chart == addons.PodIdentityWebhook || chart == addons.Flannel {
			continue // prometheus and cilium are the defaults
		}
		r, ok := got[chart.Name]
		if !ok {
			t.Errorf("no release of %s", chart.Name)
			continue
		}
		if r.String("version") != chart.Version || r.Get("repositoryOpts", "repo").StringValue() != chart.Repo || r.String("namespace") != chart.Namespace {
			t.Errorf("%s: version %s from %s into %s, want the pin %s from %s into %s", chart.Name, r.String("version"),
				r.Get("repositoryOpts", "repo").StringValue(), r.String("namespace"), chart.Version, chart.Repo, chart.Namespace)
		}
		// Through the API, nothing is installed before every
		// control-plane node serves.
		for _, zone := range testZones {
			if applier != ApplierPulumi {
				break
			}
			if !slices.ContainsFunc(r.DependsOn, func(urn string) bool {
				return strings.HasSuffix(urn, "aws:autoscaling/group:Group::c1-control-plane-"+zone)
			}) {
				t.Errorf("%s does not wait for the control-plane group in %s: %v", chart.Name, zone, r.DependsOn)
			}
		}
	}
	if len(got) != len(addons.Charts)-3 {
		t.Errorf("%d releases, want every chart but CloudWatch's, its webhook and flannel", len(got))
	}
	if host := value(got["cilium"], "k8sServiceHost").StringValue(); host != "c1-api-0123456789.elb.eu-west-1.amazonaws.com" {
		t.Errorf("Cilium reaches the API at %q, want the load balancer", host)
	}
	if cidr := value(got["cilium"], "ipam", "operator", "clusterPoolIPv4PodCIDRList", "0").StringValue(); cidr != "10.244.0.0/16" {
		t.Errorf("Cilium allocates pods from %q, want the pod CIDR", cidr)
	}
}

func TestCloudControllerManagerFollowsKubernetesMinor(t *testing.T) {
	cases := map[string]bootstrap.KubernetesRelease{}
	for _, r := range bootstrap.KubernetesReleases {
		cases[r.Version] = r
	}
	// Assets that bring another patch of a minor get that minor's images.
	cases["v1.36.0"] = bootstrap.PinnedRelease()
	for version, release := range cases {
		rec := mustRunCluster(t, func(a *ClusterArgs) {
			a.KubernetesVersion = version
			if version != release.Version {
				a.Assets = bootstrap.PinnedAssets()
				a.Assets.KubernetesVersion = version
			}
		})
		ccm := value(releases(rec)["aws-cloud-controller-manager"], "image", "tag").StringValue()
		autoscaler := value(releases(rec)["cluster-autoscaler"], "image", "tag").StringValue()
		if ccm != release.CloudControllerManager || autoscaler != release.ClusterAutoscaler {
			t.Errorf("Kubernetes %s runs cloud-controller-manager %s and cluster-autoscaler %s, want %s and %s",
				version, ccm, autoscaler, release.CloudControllerManager, release.ClusterAutoscaler)
		}
	}
	// A minor with no pinned release is refused before anything is declared.
	args := minimalClusterArgs()
	args.KubernetesVersion = "v1.37.0"
	rec, err := runCluster(args, nil)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "KubernetesVersion" || len(rec.Resources()) != 0 {
		t.Errorf("Kubernetes v1.37.0: error %v and %d resources, want a FieldError on KubernetesVersion and none", err, len(rec.Resources()))
	}
}

func TestDefaultStorageClass(t *testing.T) {
	rec := mustRunCluster(t, nil)
	classes := objects(rec, "storage.k8s.io/v1", "StorageClass")
	if len(classes) != 1 {
		t.Fatalf("%d StorageClasses, want 1", len(classes))
	}
	sc := classes[0]
	params := sc.Get("parameters").ObjectValue()
	if len(params) != 2 || params["type"].StringValue() != "gp3" || params["encrypted"].StringValue() != "true" {
		t.Errorf("parameters %v, want exactly type=gp3, encrypted=true", params)
	}
	if sc.String("volumeBindingMode") != "WaitForFirstConsumer" || !sc.Bool("allowVolumeExpansion") || sc.String("provisioner") != "ebs.csi.aws.com" {
		t.Errorf("StorageClass %v: want WaitForFirstConsumer, expandable, EBS CSI", sc.Inputs)
	}
	if sc.Get("metadata", "annotations", "storageclass.kubernetes.io/is-default-class").StringValue() != "true" {
		t.Error("the StorageClass is not the default")
	}
	if n := len(objects(rec, "snapshot.storage.k8s.io/v1", "VolumeSnapshotClass")); n != 1 {
		t.Errorf("%d VolumeSnapshotClasses, want 1", n)
	}
}

// cluster-autoscaler finds exactly the worker groups: the tags it looks
// for are on them, and not on the control-plane or etcd groups.
func TestAutoscalerDiscoversWorkerGroups(t *testing.T) {
	rec := mustRunCluster(t, func(a *ClusterArgs) {
		a.Workers = []WorkerPool{{Name: "general"}, {Name: "spot", SpotPercent: 100, MaxPerZone: 5}}
	})
	var wanted []string
	for _, tag := range value(releases(rec)["cluster-autoscaler"], "autoDiscovery", "tags").ArrayValue() {
		wanted = append(wanted, tag.StringValue())
	}
	if len(wanted) != 2 {
		t.Fatalf("cluster-autoscaler discovers by %v, want 2 tags", wanted)
	}
	discovered := 0
	for _, g := range rec.OfType("aws:autoscaling/group:Group") {
		tags := groupTags(g)
		typ, _ := rec.Component(g)
		has := true
		for _, key := range wanted {
			_, ok := tags[key]
			has = has && ok
		}
		if worker := typ == "kubeha:index:ZonalWorkerGroup"; has != worker {
			t.Errorf("%s (%s) discoverable: %v", g.Name, typ, has)
		}
		if has {
			discovered++
		}
	}
	if discovered != 6 {
		t.Errorf("%d groups discoverable, want 2 pools x 3 zones", discovered)
	}
	if !value(releases(rec)["cluster-autoscaler"], "extraArgs", "balance-similar-node-groups").BoolValue() {
		t.Error("cluster-autoscaler does not balance the per-zone groups of a pool")
	}
}

func TestMonitoringModes(t *testing.T) {
	for _, mode := range []string{MonitoringPrometheus, MonitoringCloudWatch} {
		t.Run(mode, func(t *testing.T) {
			rec := mustRunCluster(t, func(a *ClusterArgs) { a.Addons.Monitoring = mode })
			got := releases(rec)
			_, prometheus := got["kube-prometheus-stack"]
			_, cloudwatch := got["amazon-cloudwatch-observability"]
			rules := len(objects(rec, "monitoring.coreos.com/v1", "PrometheusRule"))
			// The CloudWatch agent's role, never a node's.
			var agentRoles []string
			for _, a := range rec.OfType("aws:iam/rolePolicyAttachment:RolePolicyAttachment") {
				if a.String("policyArn") == CloudWatchAgentPolicy {
					agentRoles = append(agentRoles, a.Name)
				}
			}
			_, webhook := got[addons.PodIdentityWebhook.Name]
			etcdScrape := 0
			for _, r := range rec.OfType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") {
				if r.Get("fromPort").NumberValue() == 2382 {
					etcdScrape++
				}
			}
			want := mode == MonitoringPrometheus
			wantAgentRoles := []string{"c1-addons-" + addons.CloudWatchObservability.Name + "-cloudwatchagentserverpolicy"}
			if want {
				wantAgentRoles = nil
			}
			if prometheus != want || cloudwatch == want || webhook == want || (rules == 1) != want || (etcdScrape == 1) != want || !slices.Equal(agentRoles, wantAgentRoles) {
				t.Errorf("%s: prometheus %v, cloudwatch %v, pod identity webhook %v, rules %d, etcd scrape rules %d, roles with the agent policy %v, want %v",
					mode, prometheus, cloudwatch, webhook, rules, etcdScrape, agentRoles, wantAgentRoles)
			}
			if want {
				scrape := value(got["kube-prometheus-stack"], "prometheus", "prometheusSpec", "additionalScrapeConfigs", "0")
				targets := scrape.ObjectValue()["static_configs"].ArrayValue()[0].ObjectValue()["targets"].ArrayValue()
				if len(targets) != 3 || targets[0].StringValue() != "etcd-a.c1.internal:2382" || scrape.ObjectValue()["scheme"].StringValue() != "https" {
					t.Errorf("etcd scrape %v, want every member's TLS metrics port", scrape)
				}
			}
			checkAlarms(t, rec)
		})
	}
}

// checkAlarms: in every mode, one healthy-host alarm per zone, one
// in-service alarm per auto-scaling group, one on etcd snapshots.
func checkAlarms(t *testing.T, rec *mockrun.Recorder) {
	t.Helper()
	zones, groups, snapshots := map[string]bool{}, map[string]bool{}, 0
	for _, a := range rec.OfType("aws:cloudwatch/metricAlarm:MetricAlarm") {
		if len(a.Strings("alarmActions")) != 1 {
			t.Errorf("%s notifies %v, want the SNS topic", a.Name, a.Strings("alarmActions"))
		}
		switch a.String("metricName") {
		case "HealthyHostCount":
			d := a.Get("dimensions").ObjectValue()
			if d["TargetGroup"].StringValue() != "targetgroup/c1-api/0123456789" {
				t.Errorf("%s watches target group %v", a.Name, d["TargetGroup"])
			}
			zones[d["AvailabilityZone"].StringValue()] = true
		case bootstrap.EtcdSnapshotMetric:
			snapshots++
		case "":
			for _, q := range a.Get("metricQueries").ArrayValue() {
				if m := q.ObjectValue()["metric"]; m.IsObject() && m.ObjectValue()["metricName"].StringValue() == "GroupInServiceInstances" {
					groups[m.ObjectValue()["dimensions"].ObjectValue()["AutoScalingGroupName"].StringValue()] = true
				}
			}
		}
	}
	asgs := rec.OfType("aws:autoscaling/group:Group")
	for _, g := range asgs {
		// The alarm names the group AWS made, not the logical name.
		if !groups[mockrun.GroupName(g.Name)] {
			t.Errorf("no in-service alarm on %s", mockrun.GroupName(g.Name))
		}
		if metrics := g.Strings("enabledMetrics"); !slices.Contains(metrics, "GroupInServiceInstances") {
			t.Errorf("%s does not publish GroupInServiceInstances", g.Name)
		}
	}
	if len(zones) != len(testZones) || len(groups) != len(asgs) || snapshots != 1 {
		t.Errorf("alarms: healthy hosts in %v, in-service on %d of %d groups, %d snapshot alarms", zones, len(groups), len(asgs), snapshots)
	}
}

func TestAddonsSwitchesAndOverrides(t *testing.T) {
	rec := mustRunCluster(t, func(a *ClusterArgs) {
		a.Addons.CoreDNS.Disabled = true
		a.Addons.ClusterAutoscaler.Disabled = true
		a.Addons.MonitoringChart.Disabled = true
		a.Addons.Storage.Disabled = true
		a.Addons.MetricsServer = Addon{Version: "3.13.0", Values: map[string]any{"replicas": 3, "podDisruptionBudget": map[string]any{"minAvailable": 2}},
			Chart: "https://github.com/kubernetes-sigs/metrics-server/releases/download/metrics-server-helm-chart-3.13.0/metrics-server-3.13.0.tgz"}
	})
	got := releases(rec)
	if _, ok := got["coredns"]; ok {
		t.Error("CoreDNS is installed though switched off")
	}
	for _, chart := range []string{"cluster-autoscaler", "kube-prometheus-stack", "aws-ebs-csi-driver", "snapshot-controller"} {
		if _, ok := got[chart]; ok {
			t.Errorf("%s is installed though switched off", chart)
		}
	}
	if n := len(objects(rec, "storage.k8s.io/v1", "StorageClass")) + len(objects(rec, "monitoring.coreos.com/v1", "PrometheusRule")); n != 0 {
		t.Errorf("%d StorageClasses and PrometheusRules without storage and monitoring", n)
	}
	if n := len(rec.OfType("aws:cloudwatch/metricAlarm:MetricAlarm")); n != 3+9+1+1+1+1+1+2 {
		t.Errorf("%d alarms with monitoring off, want them all still (3 zones, 9 groups, snapshots, the add-on set, failed bootstraps, failed token syncs, failed certificate approvals, certificate expiry and failed renewals)", n)
	}
	ms := got["metrics-server"]
	if ms.String("version") != "3.13.0" || value(ms, "replicas").NumberValue() != 3 ||
		value(ms, "podDisruptionBudget", "minAvailable").NumberValue() != 2 || !value(ms, "podDisruptionBudget", "enabled").BoolValue() {
		t.Errorf("metrics-server overrides not applied over kubeha's values: %v", ms.Inputs)
	}
	// Without kubeha's CoreDNS, kubeadm installs its own.
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if strings.HasPrefix(lt.Name, "c1-control-plane-") && strings.Contains(decodeUserData(t, lt), "addon/coredns") {
			t.Errorf("%s skips kubeadm's CoreDNS, but the CoreDNS add-on is off", lt.Name)
		}
	}
	none := mustRunCluster(t, func(a *ClusterArgs) { a.NoAddons = true })
	if _, ok := addonSet(none); ok || len(none.OfType("aws:cloudwatch/metricAlarm:MetricAlarm")) != 0 {
		t.Error("NoAddons still writes an add-on set or makes alarms")
	}
}

// Storage and Snapshots each change their own chart: a version for the EBS
// CSI driver is not the snapshot controller's, and without snapshots the
// driver runs no snapshotter and no VolumeSnapshotClass is applied.
func TestStorageAndSnapshotsAreSeparateSwitches(t *testing.T) {
	rec := mustRunCluster(t, func(a *ClusterArgs) {
		a.Addons.Storage = Addon{Version: "2.54.1", Chart: "https://github.com/kubernetes-sigs/aws-ebs-csi-driver/releases/download/helm-chart-aws-ebs-csi-driver-2.54.1/aws-ebs-csi-driver-2.54.1.tgz",
			Digest: "3aaa96e529b39041f44f5e7214597d055d8667b046d70c9f171e8c1d59da3851"}
	})
	got := releases(rec)
	if v := got["aws-ebs-csi-driver"].String("version"); v != "2.54.1" {
		t.Errorf("EBS CSI driver %s, want the Storage version 2.54.1", v)
	}
	if v := got["snapshot-controller"].String("version"); v != addons.SnapshotController.Version {
		t.Errorf("snapshot controller %s: Storage's version reached it; want its pin %s", v, addons.SnapshotController.Version)
	}
	if !value(got["aws-ebs-csi-driver"], "sidecars", "snapshotter", "forceEnable").BoolValue() {
		t.Error("with snapshots, the driver runs no snapshotter")
	}
	if n := len(objects(rec, "snapshot.storage.k8s.io/v1", "VolumeSnapshotClass")); n != 1 {
		t.Errorf("%d VolumeSnapshotClasses with snapshots on, want 1", n)
	}

	rec = mustRunCluster(t, func(a *ClusterArgs) { a.Addons.Snapshots.Disabled = true })
	got = releases(rec)
	if _, ok := got["snapshot-controller"]; ok {
		t.Error("the snapshot controller is installed though Snapshots is off")
	}
	if _, ok := got["aws-ebs-csi-driver"]; !ok {
		t.Fatal("Snapshots off took the EBS CSI driver with it")
	}
	if sidecars := value(got["aws-ebs-csi-driver"], "sidecars"); !sidecars.IsNull() {
		t.Errorf("without snapshot CRDs the driver still gets %v", sidecars)
	}
	if n := len(objects(rec, "snapshot.storage.k8s.io/v1", "VolumeSnapshotClass")); n != 0 {
		t.Errorf("%d VolumeSnapshotClasses without the snapshot CRDs", n)
	}
	if n := len(objects(rec, "storage.k8s.io/v1", "StorageClass")); n != 1 {
		t.Errorf("%d StorageClasses with Storage on, want 1", n)
	}
}

// Prometheus' namespace and its etcd client Secret are declared as
// pulumi-kubernetes' own types, and the Secret's data stays secret.
func TestPrometheusNamespaceAndEtcdClientSecret(t *testing.T) {
	rec := mustRunCluster(t, func(a *ClusterArgs) { a.Addons.Applier = ApplierPulumi })
	namespaces := rec.OfType("kubernetes:core/v1:Namespace")
	if len(namespaces) != 1 || namespaces[0].Get("metadata", "name").StringValue() != addons.KubePrometheusStack.Namespace ||
		namespaces[0].String("apiVersion") != "v1" || namespaces[0].String("kind") != "Namespace" {
		t.Fatalf("namespaces %v, want the one kube-prometheus-stack goes into", namespaces)
	}
	secrets := rec.OfType("kubernetes:core/v1:Secret")
	if len(secrets) != 1 {
		t.Fatalf("%d Secrets, want Prometheus' etcd client", len(secrets))
	}
	s := secrets[0]
	if s.Get("metadata", "name").StringValue() != addons.EtcdClientSecret || s.Get("metadata", "namespace").StringValue() != addons.KubePrometheusStack.Namespace {
		t.Errorf("the Secret is %v, want %s in %s", s.Get("metadata"), addons.EtcdClientSecret, addons.KubePrometheusStack.Namespace)
	}
	data := s.Inputs["stringData"]
	if !data.ContainsSecrets() {
		t.Error("the etcd client's key is not secret in the Secret's inputs")
	}
	for _, key := range []string{"ca.crt", "client.crt", "client.key"} {
		if v := s.Get("stringData", key); !strings.Contains(v.StringValue(), "-----BEGIN") {
			t.Errorf("stringData[%s] = %.40q, want a PEM", key, v.StringValue())
		}
	}
}

// By default the control plane applies the add-ons: the program copies
// each chart archive into the asset bucket and writes the add-on set
// beside them, and declares nothing that reaches the API.
func TestControlPlaneAppliesTheAddonSet(t *testing.T) {
	rec := mustRunCluster(t, nil)
	set, ok := addonSet(rec)
	if !ok {
		t.Fatal("no add-on set in the asset bucket")
	}
	if n := len(rec.OfType("pulumi:providers:kubernetes")) + len(rec.OfType("kubernetes:helm.sh/v3:Release")); n != 0 {
		t.Errorf("%d Kubernetes providers and releases: `pulumi up` must not reach the API", n)
	}
	for _, r := range rec.OfType("aws:s3/bucketObjectv2:BucketObjectv2") {
		if r.String("key") == bootstrap.AddonSetKey && !r.Inputs["content"].ContainsSecrets() {
			t.Error("the add-on set holds Prometheus' etcd client key, but is not secret in Pulumi's state")
		}
	}
	// Nodes become Ready with the first two steps alone.
	if len(set.Steps) < 2 || set.Steps[0].Name != addons.CloudControllerManager.Name || set.Steps[1].Name != addons.Cilium.Name ||
		len(set.Steps[0].Needs)+len(set.Steps[1].Needs) != 0 {
		t.Errorf("the set starts with %v, want the cloud-controller-manager and the CNI, needing nothing", set.Steps[:2])
	}
	if set.Revision != addons.NewSet(set.Steps).Revision {
		t.Error("the set's revision is not the digest of its steps")
	}
	archives := map[string]mockrun.Resource{}
	for _, r := range rec.OfType("aws:s3/bucketObjectv2:BucketObjectv2") {
		archives[r.String("key")] = r
	}
	for _, step := range set.Steps {
		r := step.Release
		if r == nil {
			continue
		}
		if step.Name != addons.CloudControllerManager.Name && step.Name != addons.Cilium.Name && !slices.Contains(step.Needs, addons.Cilium.Name) {
			t.Errorf("%s does not wait for the CNI: needs %v", step.Name, step.Needs)
		}
		pin := slices.IndexFunc(addons.Charts, func(c addons.Chart) bool { return c.Name == r.Name })
		chart := addons.Charts[pin]
		if r.Archive.Key != addons.ChartArchiveKey(chart.Name, chart.Version) || r.Archive.SHA256 != chart.Digest {
			t.Errorf("%s: archive %s (sha256 %s), want the pin's, checked against the index's digest %s", r.Name, r.Archive.Key, r.Archive.SHA256, chart.Digest)
		}
		copied, ok := archives[r.Archive.Key]
		if !ok || copied.Get("source").AssetValue().URI != chart.URL {
			t.Errorf("%s: the deploy copies %v into the bucket, want %s", r.Name, copied.Get("source"), chart.URL)
		}
	}
	if secret := objects(rec, "v1", "Secret"); len(secret) != 1 || !strings.Contains(secret[0].Get("stringData", "client.key").StringValue(), "-----BEGIN") {
		t.Errorf("the set's etcd client Secret is %v, want the metrics client's key", secret)
	}

	// Every control-plane node runs the applier, and may read the set and
	// the charts, report, and count its runs.
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if !strings.HasPrefix(lt.Name, "c1-control-plane-") {
			continue
		}
		data := decodeUserData(t, lt)
		for _, want := range []string{"kubeha-addons.timer", "addons-apply.sh", "ADDON_SET_URL=s3://c1-assets-0123456789/" + bootstrap.AddonSetKey, "HELM_ARCHIVE_SHA256=", "KUBECTL_SHA256="} {
			if !strings.Contains(data, want) {
				t.Errorf("%s: the user-data lacks %q", lt.Name, want)
			}
		}
	}
	policy := controlPlanePolicyOf(t, rec)
	for _, want := range []string{bootstrap.AddonSetKey, addons.ChartArchivePrefix + "*", bootstrap.AddonStatusKey} {
		if !strings.Contains(policy, want) {
			t.Errorf("the control plane's policy lacks %q", want)
		}
	}
	if alarm, err := rec.Named("aws:cloudwatch/metricAlarm:MetricAlarm", "c1-addons-addon-set-not-applied"); err != nil ||
		alarm.String("metricName") != bootstrap.AddonsAppliedMetric || alarm.String("treatMissingData") != "breaching" {
		t.Errorf("no alarm on the applied runs' count, breaching when none come: %v", err)
	}

	// Through the API instead: no set, no applier, no access to either.
	rec = mustRunCluster(t, func(a *ClusterArgs) { a.Addons.Applier = ApplierPulumi })
	if _, ok := addonSet(rec); ok {
		t.Error("the provider path still writes an add-on set")
	}
	if strings.Contains(controlPlanePolicyOf(t, rec), bootstrap.AddonSetKey) {
		t.Error("without the applier, control-plane nodes may still read the add-on set")
	}
}

func controlPlanePolicyOf(t *testing.T, rec *mockrun.Recorder) string {
	t.Helper()
	for _, p := range rec.OfType("aws:iam/rolePolicy:RolePolicy") {
		if strings.Contains(p.Name, "control-plane") {
			return p.String("policy")
		}
	}
	t.Fatal("no control-plane policy")
	return ""
}

// Both appliers render one definition: the same releases, versions and
// values, and the same objects.
func TestBothAppliersApplyTheSameSet(t *testing.T) {
	inCluster := mustRunCluster(t, nil)
	throughAPI := mustRunCluster(t, func(a *ClusterArgs) { a.Addons.Applier = ApplierPulumi })
	want, got := releases(inCluster), releases(throughAPI)
	if len(want) != len(got) {
		t.Errorf("%d releases in the set, %d through the API", len(want), len(got))
	}
	for name, r := range want {
		api, ok := got[name]
		if !ok {
			t.Errorf("%s is in the set, not applied through the API", name)
			continue
		}
		for _, key := range []string{"version", "namespace"} {
			if r.String(key) != api.String(key) {
				t.Errorf("%s: %s %s in the set, %s through the API", name, key, r.String(key), api.String(key))
			}
		}
		if !r.Inputs["values"].DeepEquals(api.Inputs["values"]) {
			t.Errorf("%s: values differ:\nset: %v\napi: %v", name, r.Inputs["values"], api.Inputs["values"])
		}
	}
	for _, kind := range [][2]string{{"storage.k8s.io/v1", "StorageClass"}, {"snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"},
		{"policy/v1", "PodDisruptionBudget"}, {"monitoring.coreos.com/v1", "PrometheusRule"}, {"v1", "Namespace"}, {"v1", "Secret"}} {
		set, api := objects(inCluster, kind[0], kind[1]), objects(throughAPI, kind[0], kind[1])
		if len(set) != 1 || len(api) != 1 || !set[0].Inputs["metadata"].DeepEquals(api[0].Inputs["metadata"]) {
			t.Errorf("%s: %d in the set, %d through the API, want one and the same", kind[1], len(set), len(api))
		}
	}
}

// A chart version kubeha does not pin needs its archive's URL; without a
// digest, nodes check the one S3 records.
func TestAddonVersionNeedsItsArchive(t *testing.T) {
	args := minimalClusterArgs()
	args.Addons.CoreDNS.Version = "1.46.1"
	rec, err := runCluster(args, nil)
	var fe *FieldError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "CoreDNS.Version") || !strings.Contains(err.Error(), "coredns.github.io/helm/index.yaml") || len(rec.Resources()) != 0 {
		t.Fatalf("a version without its archive: %v, %d resources; want a FieldError naming CoreDNS.Version and the index, nothing declared", err, len(rec.Resources()))
	}
	rec = mustRunCluster(t, func(a *ClusterArgs) {
		a.Addons.CoreDNS = Addon{Version: "1.46.1", Chart: "https://github.com/coredns/helm/releases/download/coredns-1.46.1/coredns-1.46.1.tgz"}
	})
	set, _ := addonSet(rec)
	for _, step := range set.Steps {
		if step.Name == addons.CoreDNS.Name {
			sum := sha256.Sum256([]byte("https://github.com/coredns/helm/releases/download/coredns-1.46.1/coredns-1.46.1.tgz"))
			if step.Release.Version != "1.46.1" || step.Release.Archive.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("coredns %s checked against %s, want 1.46.1 against the digest S3 recorded (the mock's)", step.Release.Version, step.Release.Archive.SHA256)
			}
		}
	}
}

// Both appliers give each AWS-facing add-on its own role's ARN, never the
// placeholder it was rendered with before the role existed.
func TestAddonsGetTheirRolesARNs(t *testing.T) {
	for _, applier := range []string{ApplierCluster, ApplierPulumi} {
		rec := mustRunCluster(t, func(a *ClusterArgs) { a.Addons.Applier = applier })
		arns := map[string]string{}
		for _, r := range rec.OfType("aws:iam/role:Role") {
			arns[r.Name] = r.Outputs["arn"].StringValue()
		}
		values := func(chart string) string { return fmt.Sprint(releases(rec)[chart].Inputs["values"]) }
		for chart, path := range map[string]string{
			addons.CloudControllerManager.Name: "env", addons.EBSCSIDriver.Name: "controller", addons.ClusterAutoscaler.Name: "extraEnv",
		} {
			arn := arns["c1-addons-"+chart]
			got := values(chart)
			if arn == "" || !strings.Contains(got, arn) || strings.Contains(got, rolePlaceholder(chart)) {
				t.Errorf("%s applier, %s (%s): values hold role %q? %s", applier, chart, path, arn, got)
			}
		}
	}
}

// With CloudWatch monitoring, the pod identity webhook gives the agent's
// service account its role (the role's ARN, not a placeholder), serving
// a certificate kube-apiserver accepts for the webhook's Service: issued
// for its name and signed by the caBundle it is configured with. The
// CloudWatch chart comes after it, so no agent pod is made without it.
func TestCloudWatchAgentGetsItsRoleThroughTheWebhook(t *testing.T) {
	for _, applier := range []string{ApplierCluster, ApplierPulumi} {
		rec := mustRunCluster(t, func(a *ClusterArgs) {
			a.Addons.Applier, a.Addons.Monitoring = applier, MonitoringCloudWatch
		})
		webhook, ok := releases(rec)[addons.PodIdentityWebhook.Name]
		if !ok {
			t.Fatalf("%s applier: no %s release", applier, addons.PodIdentityWebhook.Name)
		}
		role, err := rec.Named("aws:iam/role:Role", "c1-addons-"+addons.CloudWatchObservability.Name)
		if err != nil {
			t.Fatal(err)
		}
		mapped := plain(value(webhook, "config", "podIdentityWebhookMap", "data", "amazon-cloudwatch/cloudwatch-agent", "RoleARN"))
		if arn := role.Outputs["arn"].StringValue(); mapped.StringValue() != arn {
			t.Errorf("%s applier: the webhook maps the agent's account to %v, want its role %s", applier, mapped, arn)
		}
		pem := func(key string) []byte { return []byte(plain(value(webhook, "pki", key)).StringValue()) }
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem("caBundle")) {
			t.Fatalf("%s applier: caBundle holds no certificate: %q", applier, pem("caBundle"))
		}
		pair, err := tls.X509KeyPair(pem("cert"), pem("key"))
		if err != nil {
			t.Fatalf("%s applier: the serving certificate and key: %v", applier, err)
		}
		service := addons.PodIdentityWebhook.Name + "." + addons.PodIdentityWebhook.Namespace + ".svc"
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: service, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("%s applier: kube-apiserver would refuse the webhook's certificate for %s: %v", applier, service, err)
		}
		if !webhookFirst(t, rec, applier) {
			t.Errorf("%s applier: the CloudWatch chart does not wait for the webhook", applier)
		}
	}
}

// webhookFirst says whether the CloudWatch release waits for the webhook's.
func webhookFirst(t *testing.T, rec *mockrun.Recorder, applier string) bool {
	if set, ok := addonSet(rec); ok {
		for _, step := range set.Steps {
			if step.Name == addons.CloudWatchObservability.Name {
				return slices.Contains(step.Needs, addons.PodIdentityWebhook.Name)
			}
		}
		return false
	}
	cloudWatch, err := rec.Named("kubernetes:helm.sh/v3:Release", "c1-addons-"+addons.CloudWatchObservability.Name)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(cloudWatch.DependsOn, func(urn string) bool {
		return strings.HasSuffix(urn, "::c1-addons-"+addons.PodIdentityWebhook.Name)
	})
}

// plain is v without its secret wrapper.
func plain(v resource.PropertyValue) resource.PropertyValue {
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	return v
}

// With cniPlugin flannel, both appliers install the pinned flannel chart
// instead of Cilium, its pods in the cluster's pod CIDR, first: every
// release on the pod network waits for it. The overlay port stays open
// between nodes.
func TestFlannelReplacesCilium(t *testing.T) {
	for _, applier := range []string{ApplierCluster, ApplierPulumi} {
		rec := mustRunCluster(t, func(a *ClusterArgs) { a.Addons.Applier, a.Addons.CNIPlugin = applier, CNIFlannel })
		got := releases(rec)
		flannel, ok := got[addons.Flannel.Name]
		if _, cilium := got[addons.Cilium.Name]; !ok || cilium {
			t.Fatalf("%s applier: releases %v, want flannel and no cilium", applier, slices.Sorted(maps.Keys(got)))
		}
		if flannel.String("version") != addons.Flannel.Version || flannel.String("namespace") != addons.Flannel.Namespace ||
			value(flannel, "podCidr").StringValue() != "10.244.0.0/16" || value(flannel, "flannel", "backend").StringValue() != "vxlan" {
			t.Errorf("%s applier: flannel %s into %s with %v", applier, flannel.String("version"), flannel.String("namespace"), flannel.Inputs["values"])
		}
		if set, ok := addonSet(rec); ok {
			for _, step := range set.Steps {
				if step.Name == addons.CoreDNS.Name && !slices.Contains(step.Needs, addons.Flannel.Name) {
					t.Errorf("CoreDNS does not wait for flannel: %v", step.Needs)
				}
			}
		}
	}
	overlay := 0
	for _, r := range mustRunCluster(t, func(a *ClusterArgs) { a.Addons.CNIPlugin = CNIFlannel }).OfType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") {
		if r.String("ipProtocol") == "udp" && r.Get("fromPort").NumberValue() == addons.CNIOverlayPort {
			overlay++
		}
	}
	if overlay == 0 {
		t.Errorf("no rule opens UDP %d between nodes", addons.CNIOverlayPort)
	}
}
