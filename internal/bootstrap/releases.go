package bootstrap

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// KubernetesRelease is everything kubeha pins for one Kubernetes minor,
// in one place: the patch release nodes run, its binaries' digests, the
// pause image its kubeadm expects, and the add-on images built for that
// minor (the version-skew policy keeps the cloud controller manager no
// newer than the API servers).
type KubernetesRelease struct {
	Version string
	// The release binaries' SHA-256s, as upstream publishes them.
	KubeadmSHA256, KubeletSHA256, KubectlSHA256 string
	// PauseImage is the sandbox image this kubeadm checks for (its
	// constants.PauseVersion), whatever the cluster's version.
	PauseImage string
	// Image tags of registry.k8s.io/provider-aws/cloud-controller-manager
	// and registry.k8s.io/autoscaling/cluster-autoscaler, each with a
	// record in internal/addons/testdata/image-records.yaml.
	CloudControllerManager, ClusterAutoscaler string
}

// KubernetesReleases are the supported minors, oldest first: two, so
// that a cluster upgrades one minor at a time. Digests are recorded by
// kubespray (roles/kubespray_defaults/vars/main/checksums.yml at
// 46dbdd39) and, for v1.36.3, by kops (pkg/assetdata) too; kops has no
// v1.35.8, and the Go module proxy serves no v1.35.7 to build the
// rehearsal's copy from.
var KubernetesReleases = []KubernetesRelease{
	{
		Version:       "v1.35.8",
		KubeadmSHA256: "1bbc64a2be5b300880ae9330c6bba592ec2a2b8ecb79c527b0c7cc0f44070e5e",
		KubeletSHA256: "6971b9f95e54dbed67a2271abe6e78f8cc2894494649f3cf39e4b25a82dca923",
		KubectlSHA256: "874d5e72dbb819f43cff16bcd1e4f8bac5b7f2361fe1e55049b0a6c676fb0cbf",
		PauseImage:    "registry.k8s.io/pause:3.10.1",
		// v1.35.1's image build failed; v1.35.2 is the newest 1.35 image
		// promoted. The autoscaler's v1.35.1 is the newest with a record.
		CloudControllerManager: "v1.35.2",
		ClusterAutoscaler:      "v1.35.1",
	},
	{
		Version:       PinnedKubernetesVersion,
		KubeadmSHA256: "bba1733c701bf70ec74ba1cc3fd5745404c1134a8a4b0a5f8560cc9832023421",
		KubeletSHA256: "46707a53209f826ad0f0d62371ac69cd00e78fd9a8176cf5f6f87f18f7f8b718",
		KubectlSHA256: "ebbd080e7c2e275093b55915722043257eb24004363e20acb3c4d71919f88336",
		PauseImage:    "registry.k8s.io/pause:3.10.2",
		// v1.36.0's image was never built.
		CloudControllerManager: "v1.36.1",
		ClusterAutoscaler:      "v1.36.1",
	},
}

// PinnedKubernetesVersion is the newest release kubeha pins, what a
// cluster runs unless told otherwise.
const PinnedKubernetesVersion = "v1.36.3"

// PinnedRelease is PinnedKubernetesVersion's release.
func PinnedRelease() KubernetesRelease { return KubernetesReleases[len(KubernetesReleases)-1] }

var kubernetesVersionPattern = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)

// Version is a Kubernetes release, vMAJOR.MINOR.PATCH, parsed.
type Version struct{ Major, Minor, Patch int }

// ParseVersion parses vMAJOR.MINOR.PATCH.
func ParseVersion(version string) (Version, bool) {
	m := kubernetesVersionPattern.FindStringSubmatch(version)
	if m == nil {
		return Version{}, false
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	return v, true
}

// Less says whether v is an older release than o.
func (v Version) Less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Patch < o.Patch
}

// MinorsAbove is how many minors v is above o (negative when below); a
// major apart counts as a thousand.
func (v Version) MinorsAbove(o Version) int { return 1000*(v.Major-o.Major) + v.Minor - o.Minor }

// Minor is version's MAJOR.MINOR ("1.36" for v1.36.3).
func Minor(version string) (string, error) {
	v, ok := ParseVersion(version)
	if !ok {
		return "", fmt.Errorf("%q is not a Kubernetes version vMAJOR.MINOR.PATCH", version)
	}
	return fmt.Sprintf("%d.%d", v.Major, v.Minor), nil
}

// SupportedMinors are the minors of KubernetesReleases, oldest first.
func SupportedMinors() []string {
	var minors []string
	for _, r := range KubernetesReleases {
		minor, _ := Minor(r.Version)
		minors = append(minors, minor)
	}
	return minors
}

// ReleaseOf is the release pinned for version's minor.
func ReleaseOf(version string) (KubernetesRelease, error) {
	minor, err := Minor(version)
	if err != nil {
		return KubernetesRelease{}, err
	}
	for _, r := range KubernetesReleases {
		if m, _ := Minor(r.Version); m == minor {
			return r, nil
		}
	}
	return KubernetesRelease{}, fmt.Errorf("kubeha pins no release of Kubernetes %s (it pins %s)", minor, strings.Join(SupportedMinors(), ", "))
}

// RunningVersionParameter is the SSM parameter where control-plane nodes
// copy the Kubernetes version the cluster records (kubeadm's
// ClusterConfiguration), once they serve: the stack program reads it to
// refuse a version change kubeadm's upgrade policy would.
func RunningVersionParameter(cluster string) string {
	return RunningVersionPath(cluster) + "/kubernetes-version"
}

// RunningVersionPath is the parameter path of a cluster's records.
func RunningVersionPath(cluster string) string { return "/kubeha/" + cluster }
