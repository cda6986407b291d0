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

// One minor up, and a pool held one minor behind, are allowed; the held
// pool's workers install their own release from the cluster's bucket.
func TestUpgradeOneMinorAndAPoolHeldBehind(t *testing.T) {
	old, current := bootstrap.KubernetesReleases[0], bootstrap.PinnedRelease()
	rec := mustRunCluster(t, func(a *ClusterArgs) {
		a.RunningKubernetesVersion, a.KubernetesVersion = old.Version, current.Version
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
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		want, other := current, old
		switch {
		case strings.HasPrefix(lt.Name, "c1-held-"):
			want, other = old, current
		case !strings.HasPrefix(lt.Name, "c1-general-") && !strings.HasPrefix(lt.Name, "c1-control-plane-"):
			continue
		}
		data := decodeUserData(t, lt)
		kubelet := bootstrap.PinnedAssetsOf(want).Kubelet
		if !strings.Contains(data, kubelet.Key) || !strings.Contains(data, want.KubeletSHA256) || strings.Contains(data, other.KubeletSHA256) {
			t.Errorf("%s does not install only the kubelet of %s", lt.Name, want.Version)
		}
		if !strings.Contains(data, `sandbox = "`+want.PauseImage+`"`) {
			t.Errorf("%s's containerd does not pin %s's sandbox %s", lt.Name, want.Version, want.PauseImage)
		}
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
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if strings.HasPrefix(lt.Name, "c1-control-plane-") && !strings.Contains(decodeUserData(t, lt), "VERSION_PARAMETER=/kubeha/c1/kubernetes-version\n") {
			t.Errorf("%s does not name the version parameter", lt.Name)
		}
	}
}
