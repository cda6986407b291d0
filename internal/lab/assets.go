package lab

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// LocalAssets are the nodes' pinned assets as the rehearsal serves them:
// the same keys, holding what hack/tools.sh built from the same pinned
// versions (in toolsDir), packed as upstream packs them, into dir; each
// with its own SHA-256, which nodes check as they check upstream's.
func LocalAssets(toolsDir, dir string) (bootstrap.Assets, error) {
	assets := bootstrap.PinnedAssets()
	folder := bootstrap.EtcdArchiveFolder(bootstrap.EtcdVersion)
	archive := filepath.Join(dir, folder+".tar.gz")
	if err := packArchive(archive, folder, toolsDir, "etcd", "etcdctl", "etcdutl"); err != nil {
		return assets, err
	}
	sum, err := fileSHA256(archive)
	if err != nil {
		return assets, err
	}
	assets.Etcd.Source, assets.Etcd.SHA256 = archive, sum
	return assets, nil
}

// packArchive writes a .tar.gz of the binaries under folder/, with fixed
// times, so that the same binaries give the same archive.
func packArchive(path, folder, binDir string, names ...string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for _, name := range names {
		src, err := os.Open(filepath.Join(binDir, name))
		if err != nil {
			return err
		}
		info, err := src.Stat()
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: folder + "/" + name, Mode: 0o755, Size: info.Size(), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg})
		}
		if err == nil {
			_, err = io.Copy(tw, src)
		}
		src.Close()
		if err != nil {
			return fmt.Errorf("lab: packing %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// UnusedAssets stand for a node's assets where nothing installs them: the
// nodes the lab runs as plain processes, whose binaries come from the
// tools folder. The digests of the image archives are placeholders.
func UnusedAssets() bootstrap.ResolvedAssets {
	r := bootstrap.ResolvedAssets{Assets: bootstrap.PinnedAssets(), Bucket: "unused", Recorded: map[string]string{}}
	for _, image := range r.Images() {
		r.Recorded[image.Key] = strings.Repeat("0", 64)
	}
	return r
}
