package lab

import (
	"archive/tar"
	"bytes"
	"cmp"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// The container images a rehearsal control-plane node needs and no registry
// serves it: kubeadm's static pods (kube-apiserver, -controller-manager,
// -scheduler) and the pods' pause container, built from the binaries of
// hack/tools.sh. Each is a docker-save tarball (manifest.json, the config,
// one uncompressed layer), as Kubernetes' own server tarball ships its
// images, which `ctr -n k8s.io images import` loads.
const (
	// ImageRegistry is the registry kubeadm names its images in by default.
	ImageRegistry = "registry.k8s.io"
	// imagePath is the PATH of every image: kubeadm's static pods give the
	// command by name (`command: [kube-apiserver, ...]`).
	imagePath = "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin"
)

// ControlPlaneImageNames are the control-plane binaries kubeadm runs as
// static pods, each from an image of the same name.
var ControlPlaneImageNames = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"}

// ToolName is the name hack/tools.sh links a Kubernetes binary of release
// kubernetesVersion under: its own for the pinned release,
// <name>-<version> for the older one.
func ToolName(name, kubernetesVersion string) string {
	if kubernetesVersion == bootstrap.PinnedKubernetesVersion {
		return name
	}
	return name + "-" + kubernetesVersion
}

// ControlPlaneImage is the reference kubeadm gives the named component's
// image at that Kubernetes version.
func ControlPlaneImage(component, kubernetesVersion string) string {
	return ImageRegistry + "/" + component + ":" + kubernetesVersion
}

// imageEpoch is every time the images carry, so that the same binaries give
// byte-identical tarballs.
var imageEpoch = time.Unix(0, 0).UTC()

// imageSpec is one image: its reference, the binary it holds and where, and
// its entrypoint and user; extra are files besides the binary.
type imageSpec struct {
	ref, binary, target, user string
	// source is the binary's file in binDir, if not binary.
	source string
	extra  []layerEntry
}

// BuildImages writes one docker-save tarball per image into dir, from the
// static binaries in binDir (hack/tools.sh's bin folder), and returns each
// image reference with its tarball's path. A tarball newer than its binary
// is kept as it is. With a node root filesystem (rootfs), kube-proxy's
// image holds iptables from it, as the upstream image holds Debian's
// (distroless-iptables): kube-proxy programs Services with it.
func BuildImages(binDir, rootfs, dir, kubernetesVersion string) (map[string]string, error) {
	release, err := bootstrap.ReleaseOf(kubernetesVersion)
	if err != nil || release.Version != kubernetesVersion {
		return nil, fmt.Errorf("lab: Kubernetes %q is not a release kubeha pins (%v)", kubernetesVersion, err)
	}
	var iptables []layerEntry
	if rootfs != "" {
		if iptables, err = IptablesFiles(rootfs); err != nil {
			return nil, err
		}
	}
	specs := []imageSpec{}
	for _, component := range ControlPlaneImageNames {
		spec := imageSpec{
			ref:    ControlPlaneImage(component, kubernetesVersion),
			binary: component,
			source: ToolName(component, kubernetesVersion),
			target: "/usr/local/bin/" + component,
		}
		if component == "kube-proxy" {
			spec.extra = iptables
		}
		specs = append(specs, spec)
	}
	// As Kubernetes' pause image, under the reference this release's
	// kubeadm checks for: /pause, as nobody.
	specs = append(specs, imageSpec{ref: release.PauseImage, binary: "pause", target: "/pause", user: "65535:65535"})
	return writeImages(binDir, rootfs, dir, specs)
}

// The add-on images the rehearsal's registry serves, under the references
// the charts name at kubeha's pins (checked by rendering the charts,
// TestAddonImagesAreWhatTheChartsRun), and its probe workload's.
const (
	FlannelImage          = "ghcr.io/flannel-io/flannel:v0.28.9"
	FlannelCNIPluginImage = "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3"
	CoreDNSImage          = "coredns/coredns:1.13.1"
	// ProbeImage is tagged by hack/tools.sh's build key of the probe.
	ProbeImage = "registry.rehearsal.kubeha.internal/probe"
)

// BuildAddonImages writes the add-on images the rehearsal runs, from the
// binaries in binDir (hack/tools.sh), into dir, and returns each reference
// with its tarball: flanneld with install-conf and iptables, as flannel's
// image holds them; flannel's CNI plugin with cp, which its init container
// runs; CoreDNS; and the rehearsal's probe (probe-tag names its tag).
func BuildAddonImages(binDir, rootfs, dir, probeTag string) (map[string]string, error) {
	iptables, err := IptablesFiles(rootfs)
	if err != nil {
		return nil, err
	}
	installConf, err := os.ReadFile(filepath.Join(binDir, "install-conf"))
	if err != nil {
		return nil, fmt.Errorf("lab: %w (hack/tools.sh builds it)", err)
	}
	cp, err := CopyFiles(rootfs)
	if err != nil {
		return nil, err
	}
	return writeImages(binDir, rootfs, dir, []imageSpec{
		{ref: FlannelImage, binary: "flanneld", target: "/opt/bin/flanneld",
			extra: append([]layerEntry{{path: "opt/bin/install-conf", data: installConf, mode: 0o755}}, iptables...)},
		{ref: FlannelCNIPluginImage, binary: "flannel", target: "/flannel", extra: cp},
		{ref: CoreDNSImage, binary: "coredns", target: "/coredns"},
		{ref: ProbeImage + ":" + probeTag, binary: "probe", target: "/probe"},
	})
}

// writeImages writes each image's tarball into dir, keeping one newer
// than its binary, and returns each reference with its tarball.
func writeImages(binDir, rootfs, dir string, specs []imageSpec) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	images := map[string]string{}
	for _, spec := range specs {
		// kube-apiserver-v1.36.3.tar: the tag is in the name, so a tarball
		// is never kept for another version.
		name := spec.binary + "-" + spec.ref[strings.LastIndex(spec.ref, ":")+1:]
		if spec.extra != nil {
			// The root filesystem's folder names its version.
			name += "-" + filepath.Base(filepath.Clean(rootfs))
		}
		out := filepath.Join(dir, name+".tar")
		binary := filepath.Join(binDir, cmp.Or(spec.source, spec.binary))
		fresh, err := newerThan(out, binary)
		if err != nil {
			return nil, err
		}
		if !fresh {
			if err := writeImage(out, binary, spec); err != nil {
				return nil, fmt.Errorf("lab: image %s: %w", spec.ref, err)
			}
		}
		images[spec.ref] = out
	}
	return images, nil
}

// newerThan says whether file exists and is newer than source, which must
// exist.
func newerThan(file, source string) (bool, error) {
	src, err := os.Stat(source)
	if err != nil {
		return false, fmt.Errorf("lab: %w (hack/tools.sh builds it)", err)
	}
	info, err := os.Stat(file)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return info.ModTime().After(src.ModTime()), nil
}

// imageConfig is the image configuration (the fields of Docker's and OCI's
// that these images set), in a fixed order.
type imageConfig struct {
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Created      time.Time       `json:"created"`
	Config       containerConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []imageHistory `json:"history"`
}

type containerConfig struct {
	User       string   `json:"User,omitempty"`
	Env        []string `json:"Env"`
	Entrypoint []string `json:"Entrypoint"`
	WorkingDir string   `json:"WorkingDir"`
}

type imageHistory struct {
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

// imageManifest is one entry of a docker-save manifest.json.
type imageManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// writeImage writes the image of one binary as a docker-save tarball at out.
func writeImage(out, binary string, spec imageSpec) error {
	if err := requireStatic(binary); err != nil {
		return err
	}
	layer, err := binaryLayer(binary, spec.target, spec.extra)
	if err != nil {
		return err
	}
	layerID := imageDigestHex(layer)
	var cfg imageConfig
	cfg.Architecture, cfg.OS, cfg.Created = runtime.GOARCH, "linux", imageEpoch
	cfg.Config = containerConfig{User: spec.user, Env: []string{imagePath}, Entrypoint: []string{spec.target}, WorkingDir: "/"}
	cfg.RootFS.Type, cfg.RootFS.DiffIDs = "layers", []string{"sha256:" + layerID}
	cfg.History = []imageHistory{{Created: imageEpoch, CreatedBy: "kubeha: " + spec.target}}
	config, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	configFile := imageDigestHex(config) + ".json"
	layerFile := layerID + "/layer.tar"
	manifest, err := json.Marshal([]imageManifest{{Config: configFile, RepoTags: []string{spec.ref}, Layers: []string{layerFile}}})
	if err != nil {
		return err
	}

	f, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(tarHeader(layerID+"/", tar.TypeDir, 0o755, 0)); err != nil {
		return err
	}
	for _, entry := range []struct {
		name string
		data []byte
	}{{layerFile, layer}, {configFile, config}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(tarHeader(entry.name, tar.TypeReg, 0o644, len(entry.data))); err != nil {
			return err
		}
		if _, err := tw.Write(entry.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}

// tarHeader is a header owned by root at imageEpoch, the same every time.
func tarHeader(name string, typ byte, mode int64, size int) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Mode: mode, Size: int64(size),
		ModTime: imageEpoch, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
}

// layerEntry is one file of a layer: its path (relative), and its data
// and mode, or the target it links to.
type layerEntry struct {
	path, link string
	data       []byte
	mode       int64
}

// binaryLayer is an uncompressed layer holding the binary at target
// (absolute), mode 0755, and the extra files, under their parent folders,
// and an empty /tmp.
func binaryLayer(binary, target string, extra []layerEntry) ([]byte, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	entries := append([]layerEntry{{path: strings.TrimPrefix(path.Clean(target), "/"), data: data, mode: 0o755}}, extra...)
	var buf bytes.Buffer
	buf.Grow(len(data) + 8<<10)
	tw := tar.NewWriter(&buf)
	written := map[string]bool{}
	dir := func(d string) error {
		if written[d] {
			return nil
		}
		written[d] = true
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		return tw.WriteHeader(tarHeader(d+"/", tar.TypeDir, mode, 0))
	}
	if err := dir("tmp"); err != nil {
		return nil, err
	}
	for _, e := range entries {
		var parents []string
		for d := path.Dir(e.path); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := dir(d); err != nil {
				return nil, err
			}
		}
		h := tarHeader(e.path, tar.TypeReg, e.mode, len(e.data))
		if e.link != "" {
			h = tarHeader(e.path, tar.TypeSymlink, 0o777, 0)
			h.Linkname = e.link
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func imageDigestHex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// requireStatic refuses a dynamically linked binary: the images have no
// libc, and such a binary would fail there with a bare "no such file".
func requireStatic(binary string) error {
	f, err := elf.Open(binary)
	if err != nil {
		return fmt.Errorf("%s: %w", binary, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked, and the image has no libc: build it with CGO_ENABLED=0 (hack/tools.sh)", binary)
		}
	}
	return nil
}
