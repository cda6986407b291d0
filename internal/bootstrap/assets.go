package bootstrap

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Asset is one pinned file that nodes install. The deploy copies it from
// Source into the cluster's asset bucket under Key; nodes fetch it from
// there (over the VPC's S3 endpoint, so no node reaches a third-party host
// at boot) and refuse it unless its SHA-256 is the one they were given.
type Asset struct {
	// Key is its key in the asset bucket: <name>/<version>/<file>.
	Key string
	// Source is where the deploy copies it from: the upstream release URL,
	// a local file (a mirror's copy, or the rehearsal's own build), or
	// ImageSource and an image reference, for an image no release archive
	// holds: `kubeha assets fetch` copies it from its registry into the
	// local cache, and the deploy uploads that copy.
	Source string
	// SHA256 is the hex digest nodes check, as upstream publishes it. ""
	// means the digest S3 records when the deploy copies the file, for
	// files whose upstream digest kubeha has no record of to read.
	SHA256 string
}

// Assets are every file a node installs, for one Kubernetes version.
type Assets struct {
	KubernetesVersion string
	// Etcd is etcd's release archive: etcd, etcdctl and etcdutl in a
	// folder named etcd-<version>-linux-amd64.
	Etcd Asset
	// Kubeadm and Kubelet are the release binaries.
	Kubeadm, Kubelet Asset
	// The control plane's images as release archives (docker save), which
	// nodes import into containerd before kubeadm runs; kube-proxy's, which
	// kubeadm's addon runs on every node.
	APIServerImage, ControllerManagerImage, SchedulerImage, KubeProxyImage Asset
	// Containerd is its release archive (bin/ in it); Runc the binary.
	Containerd, Runc Asset
	// CNIPlugins is the CNI reference plugins' release archive (the
	// binaries at its top), which nodes unpack into /opt/cni/bin: bridge,
	// host-local, loopback and portmap, which flannel hands pods to.
	CNIPlugins Asset
	// Kubectl is the release binary; Helm its release archive (helm in
	// linux-amd64/): control-plane nodes install both for the add-on
	// applier.
	Kubectl, Helm Asset
	// PauseImage is the pod sandbox image archive, which kubeadm checks
	// for before anything runs. registry.k8s.io publishes it in no
	// archive, so its source is the registry (ImageSource).
	PauseImage Asset
}

// List is every asset, for the deploy to copy.
func (a Assets) List() []Asset {
	return slices.Concat([]Asset{a.Etcd, a.Kubectl, a.Helm}, a.NodeBinaries(), a.Images())
}

// NodeBinaries are what every Kubernetes node installs.
func (a Assets) NodeBinaries() []Asset {
	return []Asset{a.Kubeadm, a.Kubelet, a.Containerd, a.Runc, a.CNIPlugins}
}

// Images are the image archives control-plane nodes import.
func (a Assets) Images() []Asset {
	return append([]Asset{a.APIServerImage, a.ControllerManagerImage, a.SchedulerImage}, a.WorkerImages()...)
}

// WorkerImages are the image archives every node imports: its pod
// sandbox and kube-proxy, the DaemonSet kubeadm runs on each node, so no
// node pulls from a registry to join.
func (a Assets) WorkerImages() []Asset {
	return []Asset{a.KubeProxyImage, a.PauseImage}
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Check reports the first asset without a key, a source or a well-formed
// SHA-256 (or none, for a digest recorded at copy).
func (a Assets) Check() error {
	if a.KubernetesVersion == "" {
		return fmt.Errorf("bootstrap: assets name no Kubernetes version")
	}
	for _, asset := range a.List() {
		if asset.Key == "" || asset.Source == "" || (asset.SHA256 != "" && !sha256Hex.MatchString(asset.SHA256)) {
			return fmt.Errorf("bootstrap: asset %+v needs a key, a source and, if given, a SHA-256 of 64 hex digits", asset)
		}
	}
	return nil
}

// Pinned releases besides Kubernetes' (KubernetesReleases). Digests are
// upstream's published SHA-256s, as recorded by the release's own
// SHA256SUMS (etcd) and, for the others, by both kubespray
// (roles/kubespray_defaults/vars/main/checksums.yml) and kops
// (pkg/assets/assetdata), which copy them from upstream's .sha256 files.
const (
	ContainerdVersion = "2.3.4"
	RuncVersion       = "v1.4.3"
	CNIPluginsVersion = "v1.9.1"
	HelmVersion       = "v4.2.0"
	// ImageSource marks an asset's Source as an image reference.
	ImageSource = "docker://"
)

// ImageRef is the image reference an asset is copied from, if its source
// is a registry.
func (a Asset) ImageRef() (string, bool) { return strings.CutPrefix(a.Source, ImageSource) }

// PinnedAssets are the upstream releases kubeha ships, for
// PinnedKubernetesVersion.
func PinnedAssets() Assets { return PinnedAssetsOf(PinnedRelease()) }

// PinnedAssetsOf are the upstream releases kubeha ships with a
// Kubernetes release.
func PinnedAssetsOf(release KubernetesRelease) Assets {
	k8s := func(file, sha string) Asset {
		return Asset{Key: "kubernetes/" + release.Version + "/" + file, SHA256: sha,
			Source: "https://dl.k8s.io/release/" + release.Version + "/bin/linux/amd64/" + file}
	}
	etcd, _ := EtcdArchive(EtcdVersion)
	return Assets{
		KubernetesVersion: release.Version,
		Etcd:              etcd,
		Kubeadm:           k8s("kubeadm", release.KubeadmSHA256),
		Kubelet:           k8s("kubelet", release.KubeletSHA256),
		Kubectl:           k8s("kubectl", release.KubectlSHA256),
		// Helm's digest as periareon/rules_helm records it
		// (helm/private/versions.bzl at 0c0b9a0661cc), which matches
		// kubespray's record for every version both hold.
		Helm: Asset{
			Key:    "helm/" + HelmVersion + "/helm-" + HelmVersion + "-linux-amd64.tar.gz",
			Source: "https://get.helm.sh/helm-" + HelmVersion + "-linux-amd64.tar.gz",
			SHA256: "97dbeb971be4ac4b27e3839976d9564c0fb35c6f3b1da89dd1e292d236af4096",
		},
		// The image archives' .sha256 files are published beside them but
		// recorded nowhere kubeha can read: S3 records their digests.
		APIServerImage:         k8s("kube-apiserver.tar", ""),
		ControllerManagerImage: k8s("kube-controller-manager.tar", ""),
		SchedulerImage:         k8s("kube-scheduler.tar", ""),
		KubeProxyImage:         k8s("kube-proxy.tar", ""),
		Containerd: Asset{
			Key:    "containerd/" + ContainerdVersion + "/containerd-" + ContainerdVersion + "-linux-amd64.tar.gz",
			Source: "https://github.com/containerd/containerd/releases/download/v" + ContainerdVersion + "/containerd-" + ContainerdVersion + "-linux-amd64.tar.gz",
			SHA256: "9d68969855fbf676cdb8ed758e420fb048d61f984f61de3e53eddfebe484d168",
		},
		PauseImage: Asset{Key: "pause/" + strings.TrimPrefix(release.PauseImage, "registry.k8s.io/pause:") + "/pause.tar", Source: ImageSource + release.PauseImage},
		Runc: Asset{
			Key:    "runc/" + RuncVersion + "/runc.amd64",
			Source: "https://github.com/opencontainers/runc/releases/download/" + RuncVersion + "/runc.amd64",
			SHA256: "f6ae8efc0fa40079e1475e97cbe9d1bd3f106a28d6af78a11d9f1bd565515e60",
		},
		// Recorded by kubespray only (cni_binary_checksums, at 46dbdd39).
		CNIPlugins: Asset{
			Key:    "cni-plugins/" + CNIPluginsVersion + "/" + cniPluginsArchive,
			Source: "https://github.com/containernetworking/plugins/releases/download/" + CNIPluginsVersion + "/" + cniPluginsArchive,
			SHA256: "b98f74a0f8522f0a83867178729c1aa70f2158f90c45a2ca8fa791db1c76b303",
		},
	}
}

const cniPluginsArchive = "cni-plugins-linux-amd64-" + CNIPluginsVersion + ".tgz"

// EtcdArchiveKey is where etcd's release archive of version lives in the
// asset bucket; EtcdArchiveFolder is the folder inside it.
func EtcdArchiveKey(version string) string {
	return "etcd/" + version + "/" + EtcdArchiveFolder(version) + ".tar.gz"
}
func EtcdArchiveFolder(version string) string { return "etcd-" + version + "-linux-amd64" }

// s3URL is an asset's address for `aws s3 cp`.
func (a Asset) s3URL(bucket string) string { return "s3://" + bucket + "/" + a.Key }

// ResolvedAssets are the assets as a node gets them: in the bucket, with
// the digest each is checked against (the pinned one, or the one S3
// recorded at copy, by key).
type ResolvedAssets struct {
	Assets
	// Held is the release every API server still runs while the cluster
	// upgrades to Assets' (the version record says which), or zero: the
	// node runs Held's kubelet until the record reaches its own release,
	// and imports Held's images too, which the control plane's kubeadm-config
	// and kube-proxy DaemonSet name until the upgrade moves them.
	Held   Assets
	Bucket string
	// Recorded are the digests S3 recorded, by key, for assets pinned
	// without one.
	Recorded map[string]string
}

// sha256Of is the digest a node checks asset against.
func (r ResolvedAssets) sha256Of(a Asset) (string, error) {
	if a.SHA256 != "" {
		return a.SHA256, nil
	}
	if d := r.Recorded[a.Key]; sha256Hex.MatchString(d) {
		return d, nil
	}
	return "", fmt.Errorf("bootstrap: no digest for asset %s", a.Key)
}

// env is url and digest of asset, as NAME_URL and NAME_SHA256.
func (r ResolvedAssets) env(name string, a Asset) ([]envVar, error) {
	sum, err := r.sha256Of(a)
	return []envVar{{name + "_URL", a.s3URL(r.Bucket)}, {name + "_SHA256", sum}}, err
}

// Holding is whether the node holds its kubelet at Held's release.
func (r ResolvedAssets) Holding() bool { return r.Held.KubernetesVersion != "" }

// withHeld is list of Assets, and of Held while the node holds.
func (r ResolvedAssets) withHeld(list func(Assets) []Asset) []Asset {
	if !r.Holding() {
		return list(r.Assets)
	}
	return append(list(r.Assets), list(r.Held)...)
}

// heldEnv tells the node which kubelet to hold at while the version record
// is behind its own release.
func (r ResolvedAssets) heldEnv() ([]envVar, error) {
	if !r.Holding() {
		return nil, nil
	}
	vars, err := r.env("KUBELET_HELD", r.Held.Kubelet)
	return append(vars, envVar{"KUBELET_HELD_VERSION", r.Held.KubernetesVersion}), err
}

// imagesEnv lists image archives as url#sha256, comma-separated.
func (r ResolvedAssets) imagesEnv(images []Asset) (envVar, error) {
	var list []string
	for _, a := range images {
		sum, err := r.sha256Of(a)
		if err != nil {
			return envVar{}, err
		}
		list = append(list, a.s3URL(r.Bucket)+"#"+sum)
	}
	return envVar{"IMAGE_ARCHIVES", strings.Join(list, ",")}, nil
}
