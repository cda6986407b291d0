package components

import (
	"errors"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// A version change the skew policy forbids is refused, naming the key,
// before anything is declared.
func TestUpgradeSkewRefusedBeforeDeclaringAnything(t *testing.T) {
	for name, c := range map[string]struct {
		edit         func(*ClusterArgs)
		field, allow string
	}{
		"two minors up, 1.35 to 1.37": {func(a *ClusterArgs) { a.RunningKubernetesVersion, a.KubernetesVersion = "v1.35.8", "v1.37.0" },
			"KubernetesVersion", "a release of 1.36 at most: the control plane runs v1.35.8"},
		"a downgrade, 1.36 to 1.35": {func(a *ClusterArgs) { a.RunningKubernetesVersion, a.KubernetesVersion = "v1.36.3", "v1.35.8" },
			"KubernetesVersion", "v1.36.3 or newer: the control plane runs v1.36.3"},
		"a worker pool pinned ahead of the control plane": {func(a *ClusterArgs) {
			a.KubernetesVersion, a.Workers = "v1.35.8", []WorkerPool{{Name: "general", KubernetesVersion: "v1.36.3"}}
		}, "Workers[0].KubernetesVersion", "v1.35.8 or older: the control plane's kubernetesVersion"},
		"a patch kubeha pins no binaries of": {func(a *ClusterArgs) { a.KubernetesVersion = "v1.35.3" },
			"KubernetesVersion", "v1.35.8 or v1.36.3"},
		"a record that is no version": {func(a *ClusterArgs) { a.RunningKubernetesVersion = "1.35" },
			"RunningKubernetesVersion", "vMAJOR.MINOR.PATCH"},
	} {
		t.Run(name, func(t *testing.T) {
			args := minimalClusterArgs()
			c.edit(args)
			rec, err := runCluster(args, nil)
			var fe FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want FieldErrors", err)
			}
			found := false
			for _, e := range fe {
				found = found || (e.Field == c.field && strings.Contains(e.Allowed, c.allow))
			}
			if !found {
				t.Errorf("error %v, want one on %s allowing %q", err, c.field, c.allow)
			}
			if n := len(rec.Resources()); n != 0 {
				t.Errorf("%d resources declared before the error, want none", n)
			}
		})
	}
}

// A pool held one minor behind the control plane is allowed: its workers
// install their own release from the cluster's bucket, which holds each
// release's files once.
func TestAPoolHeldBehind(t *testing.T) {
	old, current := bootstrap.KubernetesReleases[0], bootstrap.PinnedRelease()
	for name, c := range map[string]struct {
		running string
		// want is each pool's release, by launch template name prefix.
		want map[string]bootstrap.KubernetesRelease
	}{
		"a new cluster":     {"", map[string]bootstrap.KubernetesRelease{"c1-control-plane-": current, "c1-general-": current, "c1-held-": old}},
		"a running cluster": {current.Version, map[string]bootstrap.KubernetesRelease{"c1-control-plane-": current, "c1-general-": current, "c1-held-": old}},
	} {
		t.Run(name, func(t *testing.T) {
			rec := mustRunCluster(t, func(a *ClusterArgs) {
				a.RunningKubernetesVersion, a.KubernetesVersion = c.running, current.Version
				a.Workers = []WorkerPool{{Name: "general"}, {Name: "held", KubernetesVersion: old.Version}}
			})
			keys := map[string]bool{}
			for _, o := range rec.OfType("aws:s3/bucketObjectv2:BucketObjectv2") {
				if keys[o.String("key")] {
					t.Errorf("asset %s copied twice", o.String("key"))
				}
				keys[o.String("key")] = true
			}
			for _, set := range []NodeAssetSet{bootstrap.PinnedAssetsOf(old), bootstrap.PinnedAssetsOf(current)} {
				for _, a := range append(set.NodeBinaries(), set.WorkerImages()...) {
					if !keys[a.Key] {
						t.Errorf("the bucket lacks %s", a.Key)
					}
				}
			}
			checked := 0
			for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
				for prefix, want := range c.want {
					if !strings.HasPrefix(lt.Name, prefix) {
						continue
					}
					checked++
					data := decodeUserData(t, lt)
					other := old
					if want == old {
						other = current
					}
					if kubelet := bootstrap.PinnedAssetsOf(want).Kubelet; !strings.Contains(data, kubelet.Key) || !strings.Contains(data, want.KubeletSHA256) || strings.Contains(data, other.KubeletSHA256) {
						t.Errorf("%s does not install only the kubelet of %s", lt.Name, want.Version)
					}
					// kube-proxy is the cluster's DaemonSet, at its release.
					if proxy := bootstrap.PinnedAssetsOf(current).KubeProxyImage.Key; !strings.Contains(data, proxy) {
						t.Errorf("%s does not import the cluster's kube-proxy image %s", lt.Name, proxy)
					}
					if !strings.Contains(data, `sandbox = "`+want.PauseImage+`"`) {
						t.Errorf("%s's containerd does not pin %s's sandbox %s", lt.Name, want.Version, want.PauseImage)
					}
				}
			}
			if checked != 9 {
				t.Errorf("checked %d launch templates, want 3 control-plane and 6 worker ones", checked)
			}
		})
	}
}

// Control-plane nodes, and only they, may record the cluster's version,
// in the one parameter the stack program reads; their user-data names it.
func TestControlPlaneRecordsTheClusterVersion(t *testing.T) {
	rec := mustRunCluster(t, nil)
	resource := `"Resource":"arn:aws:ssm:eu-west-1:*:parameter/kubeha/c1/kubernetes-version"`
	writers := map[string]bool{}
	for _, p := range rec.OfType("aws:iam/rolePolicy:RolePolicy") {
		policy := p.String("policy")
		if strings.Contains(policy, "ssm:PutParameter") {
			writers[p.Name] = strings.Contains(policy, `"Sid":"RecordKubernetesVersion"`) && strings.Contains(policy, resource)
		}
	}
	if len(writers) != 1 || !writers["c1-control-plane"] {
		t.Errorf("roles that may put SSM parameters: %v, want only c1-control-plane's, on %s", writers, resource)
	}
	// The deploy makes the parameter, so it goes with the cluster.
	params := rec.OfType("aws:ssm/parameter:Parameter")
	if len(params) != 1 || params[0].String("name") != "/kubeha/c1/kubernetes-version" || params[0].String("value") != bootstrap.PinnedKubernetesVersion {
		t.Errorf("SSM parameters declared: %+v, want /kubeha/c1/kubernetes-version holding %s", params, bootstrap.PinnedKubernetesVersion)
	}
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if strings.HasPrefix(lt.Name, "c1-control-plane-") && !strings.Contains(decodeUserData(t, lt), "VERSION_PARAMETER=/kubeha/c1/kubernetes-version\n") {
			t.Errorf("%s does not name the version parameter", lt.Name)
		}
	}
}
