package addons

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func labCluster() Cluster {
	return Cluster{
		Name: "kubeha-lab", Region: "eu-west-1", KubernetesVersion: "v1.36.3",
		APIHost: "kubeha-lab-api-0123456789.elb.eu-west-1.amazonaws.com", PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12",
		EtcdMembers:     []string{"etcd-a.kubeha-lab.internal", "etcd-b.kubeha-lab.internal", "etcd-c.kubeha-lab.internal"},
		EtcdMetricsPort: 2382, BackupIntervalMinutes: 15,
		Roles: map[string]string{
			CloudControllerManager.Name:  "arn:aws:iam::123456789012:role/kubeha-lab-cloud-controller-manager",
			EBSCSIDriver.Name:            "arn:aws:iam::123456789012:role/kubeha-lab-ebs-csi-driver",
			ClusterAutoscaler.Name:       "arn:aws:iam::123456789012:role/kubeha-lab-cluster-autoscaler",
			CloudWatchObservability.Name: "arn:aws:iam::123456789012:role/kubeha-lab-amazon-cloudwatch-observability",
		},
		WebhookCACert: "<webhook CA certificate>", WebhookCert: "<webhook serving certificate>", WebhookKey: "<webhook serving key>",
	}
}

// TestGoldenValues compares every chart's rendered values, and every
// manifest, with testdata/<name>.yaml; `go test ./internal/addons -update`
// rewrites them after an intended change, for review in the diff.
func TestGoldenValues(t *testing.T) {
	c := labCluster()
	must := func(v map[string]any, err error) map[string]any {
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	rendered := map[string]any{
		Cilium.Name:                  CiliumValues(c),
		CloudControllerManager.Name:  must(CloudControllerManagerValues(c)),
		EBSCSIDriver.Name:            EBSCSIDriverValues(c, true),
		SnapshotController.Name:      SnapshotControllerValues(),
		CoreDNS.Name:                 must(CoreDNSValues(c)),
		MetricsServer.Name:           MetricsServerValues(),
		ClusterAutoscaler.Name:       must(ClusterAutoscalerValues(c)),
		KubePrometheusStack.Name:     KubePrometheusStackValues(c, true),
		CloudWatchObservability.Name: CloudWatchValues(c),
		PodIdentityWebhook.Name:      PodIdentityWebhookValues(c),
		Flannel.Name:                 FlannelValues(c),
		"manifests":                  Manifests(c),
	}
	if len(rendered) != len(Charts)+1 {
		t.Fatalf("golden values cover %d of %d charts", len(rendered)-1, len(Charts))
	}
	for name, values := range rendered {
		got, err := yaml.Marshal(values)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", name+".yaml")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/addons -update to write it)", err)
		}
		if string(got) != string(want) {
			t.Errorf("%s differs from %s; if intended, rerun with -update and review the diff:\n%s", name, path, got)
		}
	}
}

func TestImagesFollowKubernetesMinor(t *testing.T) {
	c := labCluster()
	for _, release := range bootstrap.KubernetesReleases {
		c.KubernetesVersion = release.Version
		ccm, err := CloudControllerManagerValues(c)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := ClusterAutoscalerValues(c)
		if err != nil {
			t.Fatal(err)
		}
		minor, _ := bootstrap.Minor(release.Version)
		for what, tag := range map[string]any{"cloud-controller-manager": ccm["image"].(map[string]any)["tag"], "cluster-autoscaler": ca["image"].(map[string]any)["tag"]} {
			if !strings.HasPrefix(tag.(string), "v"+minor+".") {
				t.Errorf("%s image %v, want the cluster's minor v%s", what, tag, minor)
			}
		}
	}
	c.KubernetesVersion = "v1.37.0"
	if _, err := CloudControllerManagerValues(c); err == nil || !strings.Contains(err.Error(), "pins no release of Kubernetes 1.37") {
		t.Errorf("an unpinned minor gives %v, want an error naming it", err)
	}
}

func TestClusterDNSIsKubeadms(t *testing.T) {
	for cidr, want := range map[string]string{"10.96.0.0/12": "10.96.0.10", "172.20.0.0/16": "172.20.0.10", "100.64.8.0/22": "100.64.8.10"} {
		if got, err := ClusterDNS(cidr); err != nil || got != want {
			t.Errorf("ClusterDNS(%s) = %s, %v; want %s", cidr, got, err, want)
		}
	}
	if _, err := ClusterDNS("fd00::/108"); err == nil {
		t.Error("an IPv6 service CIDR was accepted")
	}
}

func TestStorageClassIsZonalEncryptedDefault(t *testing.T) {
	sc := StorageClass()
	params := sc["parameters"].(map[string]any)
	if len(params) != 2 || params["type"] != "gp3" || params["encrypted"] != "true" {
		t.Errorf("parameters %v, want exactly type=gp3 and encrypted=true", params)
	}
	if sc["volumeBindingMode"] != "WaitForFirstConsumer" || sc["allowVolumeExpansion"] != true {
		t.Errorf("binding %v, expansion %v: want WaitForFirstConsumer, expandable", sc["volumeBindingMode"], sc["allowVolumeExpansion"])
	}
	if sc["metadata"].(map[string]any)["annotations"].(map[string]any)["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Error("the StorageClass is not the default")
	}
}
