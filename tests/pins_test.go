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
		"CONTAINERD_VERSION": "v" + bootstrap.ContainerdVersion,
		"RUNC_VERSION":       bootstrap.RuncVersion,
	} {
		m := regexp.MustCompile(`(?m)^` + variable + `=(\S+)$`).FindSubmatch(script)
		if m == nil || string(m[1]) != pinned {
			t.Errorf("hack/tools.sh sets %s=%s, want the pinned %s", variable, m, pinned)
		}
	}
	// Each pinned asset's key names its release.
	a := bootstrap.PinnedAssets()
	for key, version := range map[string]string{a.Etcd.Key: bootstrap.EtcdVersion, a.Kubelet.Key: a.KubernetesVersion,
		a.Containerd.Key: bootstrap.ContainerdVersion, a.Runc.Key: bootstrap.RuncVersion} {
		if !regexp.MustCompile(`/` + regexp.QuoteMeta(version) + `/`).MatchString(key) {
			t.Errorf("asset key %s does not name release %s", key, version)
		}
	}
}

// kube-bench is built at the version hack/tools.sh names, which its tool
// module pins and go.sum holds the module proxy's hash of: a release that
// was published.
func TestKubeBenchPinIsTheToolModules(t *testing.T) {
	script, err := os.ReadFile("../hack/tools.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^KUBE_BENCH_VERSION=(\S+)$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("hack/tools.sh sets no KUBE_BENCH_VERSION")
	}
	version := string(m[1])
	mod, err := os.ReadFile("../hack/tools/kube-bench/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile("../hack/tools/kube-bench/go.sum")
	if err != nil {
		t.Fatal(err)
	}
	const module = "github.com/aquasecurity/kube-bench "
	if !regexp.MustCompile(`(?m)^\s*`+regexp.QuoteMeta(module+version)+`\b`).Match(mod) ||
		!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(module+version)+` h1:`).Match(sum) {
		t.Errorf("hack/tools.sh builds kube-bench %s; hack/tools/kube-bench's go.mod and go.sum must pin that release", version)
	}
}
