package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/tools"
)

const imagesKubernetesVersion = "v1.36.3"

// imagesCgroup holds the containers TestImagesImportIntoContainerd runs.
const imagesCgroup = "kubeha-images"

// imageBinaries are the tools the images hold.
var imageBinaries = append(append([]string{}, ControlPlaneImageNames...), "pause")

// needImageBinaries stops the test unless hack/tools.sh built the images'
// binaries, and returns their folder.
func needImageBinaries(t *testing.T) string {
	t.Helper()
	if err := tools.Missing(imageBinaries...); err != nil {
		tools.Unavailable(t, err.Error())
	}
	dir, err := tools.Dir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestImages builds the node images from the built binaries, under the
// references kubeadm asks for, and reads each tarball back as docker-save
// lays it out: its tag, one layer holding the binary byte for byte at its
// path with mode 0755, the PATH that finds it, a config and layer that
// match their digests; the same binaries give byte-identical tarballs, and
// a fresh tarball is not written again.
func TestImages(t *testing.T) {
	binDir := needImageBinaries(t)
	dir := t.TempDir()
	start := time.Now()
	images, err := BuildImages(binDir, "", dir, imagesKubernetesVersion)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURED: %d images built in %.1fs", len(images), time.Since(start).Seconds())

	want := map[string]string{bootstrap.PinnedRelease().PauseImage: "/pause"}
	for _, name := range ControlPlaneImageNames {
		want[ControlPlaneImage(name, imagesKubernetesVersion)] = "/usr/local/bin/" + name
	}
	if len(images) != len(want) {
		t.Fatalf("images %v, want %d: %v", images, len(want), want)
	}
	// The references are the ones kubeadm itself asks for.
	if kubeadm, err := tools.Path("kubeadm"); err == nil {
		out, err := exec.Command(kubeadm, "config", "images", "list", "--kubernetes-version", imagesKubernetesVersion).Output()
		if err != nil {
			t.Fatalf("kubeadm config images list: %v", err)
		}
		for ref := range want {
			if !strings.Contains("\n"+string(out), "\n"+ref+"\n") {
				t.Errorf("kubeadm %s does not ask for %s:\n%s", imagesKubernetesVersion, ref, out)
			}
		}
	}
	for ref, target := range want {
		path, ok := images[ref]
		if !ok {
			t.Errorf("no image %s", ref)
			continue
		}
		binary, err := os.ReadFile(filepath.Join(binDir, filepath.Base(target)))
		if err != nil {
			t.Fatal(err)
		}
		checkImage(t, path, ref, target, binary)
	}

	// The same binaries, again, elsewhere: the same bytes.
	again, err := BuildImages(binDir, "", t.TempDir(), imagesKubernetesVersion)
	if err != nil {
		t.Fatal(err)
	}
	for ref, path := range images {
		if a, b := fileDigest(t, path), fileDigest(t, again[ref]); a != b {
			t.Errorf("%s: two builds differ: %s and %s", ref, a, b)
		}
	}

	// In the same folder, a tarball newer than its binary stays as it is.
	before := map[string]time.Time{}
	for ref, path := range images {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		before[ref] = info.ModTime()
	}
	if _, err := BuildImages(binDir, "", dir, imagesKubernetesVersion); err != nil {
		t.Fatal(err)
	}
	for ref, path := range images {
		if info, err := os.Stat(path); err != nil || !info.ModTime().Equal(before[ref]) {
			t.Errorf("%s was written again", ref)
		}
	}
	if _, err := BuildImages(binDir, "", dir, "1.36.3"); err == nil {
		t.Error("a version that is not a tag was taken")
	}
}

// checkImage reads one docker-save tarball and checks it holds the image
// ref with binary at target.
func checkImage(t *testing.T, path, ref, target string, binary []byte) {
	t.Helper()
	files := readTar(t, path)
	var manifests []imageManifest
	if err := json.Unmarshal(files["manifest.json"], &manifests); err != nil {
		t.Fatalf("%s: manifest.json: %v", path, err)
	}
	if len(manifests) != 1 || len(manifests[0].RepoTags) != 1 || manifests[0].RepoTags[0] != ref || len(manifests[0].Layers) != 1 {
		t.Fatalf("%s: manifest %+v, want one image tagged %s with one layer", path, manifests, ref)
	}
	m := manifests[0]
	if len(files) != 3 {
		t.Errorf("%s holds %d files, want the manifest, the config and one layer", path, len(files))
	}
	config, layer := files[m.Config], files[m.Layers[0]]
	if m.Config != imageDigestHex(config)+".json" {
		t.Errorf("%s: config %s is not named by its digest", ref, m.Config)
	}
	var cfg imageConfig
	if err := json.Unmarshal(config, &cfg); err != nil {
		t.Fatalf("%s: config: %v", ref, err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("%s: platform %s/%s", ref, cfg.OS, cfg.Architecture)
	}
	if strings.Join(cfg.Config.Env, " ") != "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin" {
		t.Errorf("%s: env %q", ref, cfg.Config.Env)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != target {
		t.Errorf("%s: entrypoint %q, want %s", ref, cfg.Config.Entrypoint, target)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != "sha256:"+imageDigestHex(layer) {
		t.Errorf("%s: rootfs %+v does not match its layer", ref, cfg.RootFS)
	}
	if !cfg.Created.Equal(time.Unix(0, 0)) {
		t.Errorf("%s: created %s", ref, cfg.Created)
	}

	tr := tar.NewReader(bytes.NewReader(layer))
	found := false
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: layer: %v", ref, err)
		}
		if !hdr.ModTime.Equal(time.Unix(0, 0)) || hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("%s: %s: time %s, owner %d:%d", ref, hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid)
		}
		if "/"+hdr.Name != target {
			continue
		}
		found = true
		data, _ := io.ReadAll(tr)
		if hdr.Typeflag != tar.TypeReg || hdr.Mode != 0o755 || !bytes.Equal(data, binary) {
			t.Errorf("%s: %s: type %c, mode %#o, %d bytes; want the binary (%d bytes), mode 0755",
				ref, hdr.Name, hdr.Typeflag, hdr.Mode, len(data), len(binary))
		}
	}
	if !found {
		t.Errorf("%s: no %s in its layer", ref, target)
	}
}

// readTar returns the regular files of a tarball by name.
func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if files[hdr.Name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestImagesImportIntoContainerd imports the images as a node does, with
// ctr into the k8s.io namespace of a containerd of its own (the one
// hack/tools.sh builds, with runc), lists them under their references, and
// runs each control-plane image by its command's bare name, as kubeadm's
// static pods do. Needs root.
func TestImagesImportIntoContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		tools.Unavailable(t, "running containerd needs root")
	}
	binDir := needImageBinaries(t)
	if err := tools.Missing("containerd", "containerd-shim-runc-v2", "ctr", "runc"); err != nil {
		tools.Unavailable(t, err.Error())
	}
	rootfs, err := tools.Rootfs(testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	// Both supported releases' images, as a node of either imports them;
	// the older release's binaries are hack/tools.sh's <name>-<version>.
	images := map[string]string{}
	for _, release := range bootstrap.KubernetesReleases {
		if err := tools.Missing(ToolName("kube-apiserver", release.Version)); err != nil {
			tools.Unavailable(t, err.Error())
		}
		built, err := BuildImages(binDir, rootfs, t.TempDir(), release.Version)
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(images, built)
	}

	// Registered first, so it runs once containerd has stopped.
	t.Cleanup(func() {
		cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/" + imagesCgroup)
		cgroups = append(cgroups, "/sys/fs/cgroup/"+imagesCgroup)
		for _, cgroup := range cgroups {
			if err := os.Remove(cgroup); err != nil && !os.IsNotExist(err) {
				t.Errorf("cgroup %s is left: %v", cgroup, err)
			}
		}
	})
	// containerd finds the shim, and the shim runc, on the PATH.
	env := append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	dir, ctr := startContainerd(t, binDir, "khimg", env)

	start := time.Now()
	for _, path := range images {
		if _, err := ctr("images", "import", path); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("MEASURED: %d images imported in %.1fs", len(images), time.Since(start).Seconds())
	list, err := ctr("images", "list", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	for ref := range images {
		if !strings.Contains("\n"+list, "\n"+ref+"\n") {
			t.Errorf("%s is not among the imported images:\n%s", ref, list)
		}
	}
	for _, release := range bootstrap.KubernetesReleases {
		for _, name := range ControlPlaneImageNames {
			id := "khimg-" + name
			out, err := ctr("run", "--rm", "--cgroup", "/"+imagesCgroup+"/"+id, "--fifo-dir", filepath.Join(dir, "fifo"),
				"--runc-root", filepath.Join(dir, "runc"), "--runc-binary", filepath.Join(binDir, "runc"),
				ControlPlaneImage(name, release.Version), id, name, "--version")
			if err != nil {
				t.Error(err)
			} else if strings.TrimSpace(out) != "Kubernetes "+release.Version {
				t.Errorf("%s --version in its image: %q", name, out)
			}
		}
	}
	// kube-proxy's image programs a rule with its iptables, extensions
	// included, as kube-proxy does, in a network namespace of its own.
	for _, args := range [][]string{
		{"iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "80", "-m", "comment", "--comment", "kubeha", "-j", "ACCEPT"},
		{"iptables-save", "--version"},
	} {
		out, err := ctr(append([]string{"run", "--rm", "--privileged", "--cgroup", "/" + imagesCgroup + "/khimg-iptables",
			"--fifo-dir", filepath.Join(dir, "fifo"), "--runc-root", filepath.Join(dir, "runc"), "--runc-binary", filepath.Join(binDir, "runc"),
			ControlPlaneImage("kube-proxy", imagesKubernetesVersion), "khimg-iptables"}, args...)...)
		if err != nil || (args[0] == "iptables-save" && !strings.Contains(out, "nf_tables")) {
			t.Errorf("%s in kube-proxy's image: %q, %v", strings.Join(args, " "), out, err)
		}
	}
}

// startContainerd runs binDir's containerd, without its CRI, for the test
// in a new folder named after prefix, with env (nil: the test's own). It
// returns that folder and ctr, which runs binDir's ctr on it in the k8s.io
// namespace, where a node's images live; ctr gives up two minutes after the
// start. When the test ends containerd stops, the test fails if a mount is
// left under the folder, and containerd's log is printed if it failed.
func startContainerd(t *testing.T, binDir, prefix string, env []string) (dir string, ctr func(args ...string) (string, error)) {
	t.Helper()
	// A short folder: the socket path must fit in a sockaddr.
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "containerd.sock")
	config := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.podsandbox.controller.v1.podsandbox"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), socket, socket+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var daemonLog bytes.Buffer
	daemon := exec.Command(filepath.Join(binDir, "containerd"), "--config", filepath.Join(dir, "config.toml"))
	daemon.Env, daemon.Stdout, daemon.Stderr = env, &daemonLog, &daemonLog
	// The shims' sockets go under /run/containerd whatever the config says.
	_, runExisted := os.Stat("/run/containerd")
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = daemon.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = daemon.Process.Kill()
			<-done
		}
		if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), dir) {
			t.Errorf("a mount under %s is left", dir)
		} else {
			_ = os.RemoveAll(dir)
		}
		if os.IsNotExist(runExisted) {
			_ = os.Remove("/run/containerd/s")
			_ = os.Remove("/run/containerd")
		}
		if t.Failed() {
			t.Logf("containerd:\n%s", daemonLog.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ctr = func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "ctr"), append([]string{"--address", socket, "--namespace", "k8s.io"}, args...)...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return stdout.String(), fmt.Errorf("ctr %s: %w: %s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return stdout.String(), nil
	}
	for {
		if _, err := ctr("version"); err == nil {
			return dir, ctr
		}
		if ctx.Err() != nil {
			t.Fatal("containerd did not answer")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
