package bootstrap

import (
	"fmt"
	"regexp"
)

// Asset is one pinned file that nodes install. The deploy copies it from
// Source into the cluster's asset bucket under Key; nodes fetch it from
// there (over the VPC's S3 endpoint, so no node reaches a third-party host
// at boot) and refuse it unless its SHA-256 is SHA256.
type Asset struct {
	// Key is its key in the asset bucket: <name>/<version>/<file>.
	Key string
	// Source is where the deploy copies it from: the upstream release URL,
	// or a local file (a mirror's copy, or the rehearsal's own build).
	Source string
	// SHA256 is the hex digest nodes check, as upstream publishes it.
	SHA256 string
}

// Assets are every file a node installs.
type Assets struct {
	// Etcd is etcd's release archive: etcd, etcdctl and etcdutl in a
	// folder named etcd-<version>-linux-amd64.
	Etcd Asset
}

// List is every asset, for the deploy to copy.
func (a Assets) List() []Asset { return []Asset{a.Etcd} }

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Check reports the first asset without a key, a source or a well-formed
// SHA-256.
func (a Assets) Check() error {
	for _, asset := range a.List() {
		if asset.Key == "" || asset.Source == "" || !sha256Hex.MatchString(asset.SHA256) {
			return fmt.Errorf("bootstrap: asset %+v needs a key, a source and a SHA-256 of 64 hex digits", asset)
		}
	}
	return nil
}

// PinnedAssets are the upstream releases kubeha ships, with the digests
// their release records publish.
func PinnedAssets() Assets {
	return Assets{
		// https://github.com/etcd-io/etcd/releases/download/v3.6.6/SHA256SUMS
		Etcd: Asset{
			Key:    EtcdArchiveKey(EtcdVersion),
			Source: fmt.Sprintf("https://github.com/etcd-io/etcd/releases/download/%[1]s/etcd-%[1]s-linux-amd64.tar.gz", EtcdVersion),
			SHA256: "887afaa4a99f22d802ccdfbe65730a5e79aa5c9ce2c8799c67e9d804c50ecedb",
		},
	}
}

// EtcdArchiveKey is where etcd's release archive of version lives in the
// asset bucket; EtcdArchiveFolder is the folder inside it.
func EtcdArchiveKey(version string) string {
	return "etcd/" + version + "/" + EtcdArchiveFolder(version) + ".tar.gz"
}
func EtcdArchiveFolder(version string) string { return "etcd-" + version + "-linux-amd64" }

// s3URL is an asset's address for `aws s3 cp`.
func (a Asset) s3URL(bucket string) string { return "s3://" + bucket + "/" + a.Key }
