package tests

import (
	"os"
	"regexp"
	"testing"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// The rehearsal serves, under each pinned asset's key, a local build of
// that same release: hack/tools.sh must build exactly the versions nodes
// are pinned to, or the rehearsal would prove another release.
func TestToolsBuildThePinnedReleases(t *testing.T) {
	script, err := os.ReadFile("../hack/tools.sh")
	if err != nil {
		t.Fatal(err)
	}
	for variable, pinned := range map[string]string{
		"ETCD_VERSION":       bootstrap.EtcdVersion,
		"KUBERNETES_VERSION": bootstrap.PinnedKubernetesVersion,
		// The older supported release, oldest first in the table.
		"KUBERNETES_PREVIOUS_VERSION": bootstrap.KubernetesReleases[0].Version,
		"CONTAINERD_VERSION":          "v" + bootstrap.ContainerdVersion,
		"RUNC_VERSION":                bootstrap.RuncVersion,
		"CNI_PLUGINS_VERSION":         bootstrap.CNIPluginsVersion,
	} {
		m := regexp.MustCompile(`(?m)^` + variable + `=(\S+)$`).FindSubmatch(script)
		if m == nil || string(m[1]) != pinned {
			t.Errorf("hack/tools.sh sets %s=%s, want the pinned %s", variable, m, pinned)
		}
	}
	// Each pinned asset's key names its release.
	a := bootstrap.PinnedAssets()
	for key, version := range map[string]string{a.Etcd.Key: bootstrap.EtcdVersion, a.Kubelet.Key: a.KubernetesVersion,
		a.Containerd.Key: bootstrap.ContainerdVersion, a.Runc.Key: bootstrap.RuncVersion, a.CNIPlugins.Key: bootstrap.CNIPluginsVersion} {
		if !regexp.MustCompile(`/` + regexp.QuoteMeta(version) + `/`).MatchString(key) {
			t.Errorf("asset key %s does not name release %s", key, version)
		}
	}
}

// kube-bench, the CNI reference plugins and flannel's CNI plugin are built
// at the versions hack/tools.sh names, which their tool modules pin and
// go.sum holds the module proxy's hash of: releases that were published.
func TestToolModulesPinWhatToolsShBuilds(t *testing.T) {
	script, err := os.ReadFile("../hack/tools.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []struct{ variable, dir, module string }{
		{"KUBE_BENCH_VERSION", "kube-bench", "github.com/aquasecurity/kube-bench"},
		{"CNI_PLUGINS_VERSION", "cni-plugins", "github.com/containernetworking/plugins"},
		{"FLANNEL_CNI_VERSION", "flannel-cni", "github.com/containernetworking/plugins"},
		{"FLANNEL_VERSION", "flannel", "github.com/flannel-io/flannel"},
		{"COREDNS_VERSION", "coredns", "github.com/coredns/coredns"},
		{"KUBERNETES_VERSION", "kubernetes", "k8s.io/kubernetes"},
		{"KUBERNETES_PREVIOUS_VERSION", "kubernetes-1.35", "k8s.io/kubernetes"},
	} {
		m := regexp.MustCompile(`(?m)^` + tool.variable + `=(\S+)$`).FindSubmatch(script)
		if m == nil {
			t.Errorf("hack/tools.sh sets no %s", tool.variable)
			continue
		}
		version := string(m[1])
		mod, err := os.ReadFile("../hack/tools/" + tool.dir + "/go.mod")
		if err != nil {
			t.Fatal(err)
		}
		sum, err := os.ReadFile("../hack/tools/" + tool.dir + "/go.sum")
		if err != nil {
			t.Fatal(err)
		}
		pin := tool.module + " " + version
		if !regexp.MustCompile(`(?m)^(require)?\s*`+regexp.QuoteMeta(pin)+`\b`).Match(mod) ||
			!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(pin)+` h1:`).Match(sum) {
			t.Errorf("hack/tools.sh builds %s; hack/tools/%s's go.mod and go.sum must pin that release", pin, tool.dir)
		}
	}
}
