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
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// LocalAssets are the nodes' pinned assets as the rehearsal serves them:
// the same keys, holding what hack/tools.sh built from the same pinned
// sources (in toolsDir), packed as upstream packs them, into dir. Each
// carries its own SHA-256, which nodes check as they check upstream's;
// the image archives, which kubeha pins without one, keep none, so that
// nodes check them against the digest S3 recorded, as on AWS; the pause
// image among them is kubeha's build, not a copy from the registry.
//
// kube-proxy's image takes iptables from the nodes' root filesystem.
// kubernetesVersion and etcdVersion are releases kubeha pins.
func LocalAssets(toolsDir, rootfs, dir, kubernetesVersion, etcdVersion string) (bootstrap.Assets, error) {
	release, err := bootstrap.ReleaseOf(kubernetesVersion)
	if err != nil {
		return bootstrap.Assets{}, err
	}
	a := bootstrap.PinnedAssetsOf(release)
	local := func(asset *bootstrap.Asset, path string) error {
		asset.Source = path
		if asset.SHA256 == "" {
			return nil
		}
		sum, err := fileSHA256(path)
		asset.SHA256 = sum
		return err
	}
	if a.Etcd, err = bootstrap.EtcdArchive(etcdVersion); err != nil {
		return a, err
	}
	// hack/tools.sh links the previous etcd's binaries as <name>-<version>.
	etcdSuffix := ""
	if etcdVersion != bootstrap.EtcdVersion {
		etcdSuffix = "-" + etcdVersion
	}
	etcd := filepath.Join(dir, bootstrap.EtcdArchiveFolder(etcdVersion)+".tar.gz")
	if err := packArchive(etcd, bootstrap.EtcdArchiveFolder(etcdVersion), toolsDir, etcdSuffix, EtcdBinaries...); err != nil {
		return a, err
	}
	containerd := filepath.Join(dir, "containerd-"+bootstrap.ContainerdVersion+"-linux-amd64.tar.gz")
	if err := packArchive(containerd, "bin", toolsDir, "", "containerd", "containerd-shim-runc-v2", "ctr"); err != nil {
		return a, err
	}
	// The reference plugins' archive holds them at its top, as ./bridge.
	cniPlugins := filepath.Join(dir, "cni-plugins-linux-amd64-"+bootstrap.CNIPluginsVersion+".tgz")
	if err := packArchive(cniPlugins, ".", toolsDir, "", CNIPlugins...); err != nil {
		return a, err
	}
	helm := filepath.Join(dir, "helm-"+bootstrap.HelmVersion+"-linux-amd64.tar.gz")
	if err := packArchive(helm, "linux-amd64", toolsDir, "", "helm"); err != nil {
		return a, err
	}
	images, err := BuildImages(toolsDir, rootfs, filepath.Join(dir, "images"), a.KubernetesVersion)
	if err != nil {
		return a, err
	}
	for _, f := range []struct {
		asset *bootstrap.Asset
		path  string
	}{
		{&a.Etcd, etcd}, {&a.Containerd, containerd}, {&a.CNIPlugins, cniPlugins}, {&a.Helm, helm}, {&a.Kubectl, filepath.Join(toolsDir, ToolName("kubectl", a.KubernetesVersion))},
		{&a.Kubeadm, filepath.Join(toolsDir, ToolName("kubeadm", a.KubernetesVersion))},
		{&a.Kubelet, filepath.Join(toolsDir, ToolName("kubelet", a.KubernetesVersion))}, {&a.Runc, filepath.Join(toolsDir, "runc")},
		{&a.APIServerImage, images[ControlPlaneImage("kube-apiserver", a.KubernetesVersion)]},
		{&a.ControllerManagerImage, images[ControlPlaneImage("kube-controller-manager", a.KubernetesVersion)]},
		{&a.SchedulerImage, images[ControlPlaneImage("kube-scheduler", a.KubernetesVersion)]},
		{&a.KubeProxyImage, images[ControlPlaneImage("kube-proxy", a.KubernetesVersion)]},
		{&a.PauseImage, images[release.PauseImage]},
	} {
		if err := local(f.asset, f.path); err != nil {
			return a, err
		}
	}
	return a, a.Check()
}

// CNIPlugins are the reference plugins hack/tools.sh builds, as their
// release archive holds them.
var CNIPlugins = []string{"bridge", "host-local", "loopback", "portmap"}

// packArchive writes a .tar.gz of the binaries under folder/, each read
// from binDir as its name with suffix, with fixed times, so that the same
// binaries give the same archive.
func packArchive(path, folder, binDir, suffix string, names ...string) error {
	// Packing is gzip over hundreds of megabytes: an archive newer than
	// every binary in it is kept, as images are, since every declaration of
	// the stack (a drill's `pulumi up` too) asks for it.
	fresh := true
	for _, name := range names {
		newer, err := newerThan(path, filepath.Join(binDir, name+suffix))
		if err != nil {
			return err
		}
		fresh = fresh && newer
	}
	if fresh {
		return nil
	}
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
		src, err := os.Open(filepath.Join(binDir, name+suffix))
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
