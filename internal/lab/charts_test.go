package lab

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/tools"
	"gopkg.in/yaml.v3"
)

// gitTree is the git object ID of the tree of folder dir in fsys, as git
// computes it for files of mode 100644.
func gitTree(t *testing.T, fsys fs.FS, dir string) string {
	t.Helper()
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	// git sorts a tree's entries by name, a folder's name as if it ended in /.
	key := func(e fs.DirEntry) string {
		if e.IsDir() {
			return e.Name() + "/"
		}
		return e.Name()
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(key(a), key(b)) })
	var body []byte
	for _, e := range entries {
		var mode, id string
		if e.IsDir() {
			mode, id = "40000", gitTree(t, fsys, path.Join(dir, e.Name()))
		} else {
			data, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			mode, id = "100644", gitObject("blob", data)
		}
		raw, _ := hex.DecodeString(id)
		body = append(fmt.Appendf(body, "%s %s\x00", mode, e.Name()), raw...)
	}
	return gitObject("tree", body)
}

func gitObject(kind string, data []byte) string {
	sum := sha1.Sum(append(fmt.Appendf(nil, "%s %d\x00", kind, len(data)), data...))
	return hex.EncodeToString(sum[:])
}

// The rehearsal's copy of the coredns chart is upstream's folder at the
// pinned release, byte for byte, and that release is the one kubeha pins.
func TestCoreDNSChartIsUpstreams(t *testing.T) {
	chart := CoreDNSChart()
	if got := gitTree(t, chart, "."); got != coreDNSChartTree {
		t.Errorf("internal/lab/charts/coredns is git tree %s, want %s (coredns/helm's charts/coredns at tag coredns-%s)", got, coreDNSChartTree, addons.CoreDNS.Version)
	}
	path, err := PackChart(t.TempDir(), chart, addons.CoreDNS.Name, addons.CoreDNS.Version)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PackChart(t.TempDir(), chart, addons.CoreDNS.Name, addons.CoreDNS.Version+"-other"); err == nil {
		t.Error("PackChart packed the coredns copy under another version")
	}
	t.Logf("MEASURED: coredns chart copy is coredns/helm tree %s, packed as %s", coreDNSChartTree, filepath.Base(path))
}

// The images the rehearsal's registry serves are the ones the flannel and
// coredns charts run at kubeha's pins with kubeha's values: rendered by
// the pinned Helm, every image of every pod is served.
func TestAddonImagesAreWhatTheChartsRun(t *testing.T) {
	if err := tools.Missing("helm", "flannel-chart"); err != nil {
		tools.Unavailable(t, err.Error())
	}
	helm, _ := tools.Path("helm")
	flannelChart, _ := tools.Path("flannel-chart")
	cluster := addons.Cluster{Name: "rehearsal", PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12"}
	coreDNSValues, err := addons.CoreDNSValues(cluster)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	coreDNS, err := PackChart(dir, CoreDNSChart(), addons.CoreDNS.Name, addons.CoreDNS.Version)
	if err != nil {
		t.Fatal(err)
	}
	flannel, err := PackChart(dir, os.DirFS(flannelChart), addons.Flannel.Name, addons.Flannel.Version)
	if err != nil {
		t.Fatal(err)
	}
	served := []string{FlannelImage, FlannelCNIPluginImage, CoreDNSImage}
	for _, c := range []struct {
		archive string
		values  map[string]any
	}{{flannel, addons.FlannelValues(cluster)}, {coreDNS, coreDNSValues}} {
		values, err := yaml.Marshal(c.values)
		if err != nil {
			t.Fatal(err)
		}
		valuesFile := filepath.Join(dir, filepath.Base(c.archive)+".values.yaml")
		writeFile(t, valuesFile, values)
		out, err := exec.Command(helm, "template", "x", c.archive, "--values", valuesFile).CombinedOutput()
		if err != nil {
			t.Fatalf("helm template %s: %v\n%s", c.archive, err, out)
		}
		images := renderedImages(t, out)
		if len(images) == 0 {
			t.Fatalf("%s renders no pod images", c.archive)
		}
		for _, image := range images {
			if !slices.Contains(served, image) {
				t.Errorf("%s runs image %s, which the rehearsal's registry does not serve (it serves %v)", filepath.Base(c.archive), image, served)
			}
		}
		t.Logf("MEASURED: %s runs %v", filepath.Base(c.archive), images)
		if c.archive == coreDNS {
			delays := readinessDelays(t, out)
			if delay, ok := delays["coredns"]; !ok || delay != 0 {
				t.Errorf("coredns's readiness probe starts after %ds (probed: %v), want at once: a drain waits on it", delay, ok)
			}
		}
	}
}

// readinessDelays are, by container name, the rendered containers'
// readiness probes' initialDelaySeconds.
func readinessDelays(t *testing.T, manifests []byte) map[string]int {
	t.Helper()
	delays := map[string]int{}
	for _, doc := range strings.Split(string(manifests), "\n---") {
		var obj struct {
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name           string
							ReadinessProbe *struct {
								InitialDelaySeconds int `yaml:"initialDelaySeconds"`
							} `yaml:"readinessProbe"`
						}
					}
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		for _, c := range obj.Spec.Template.Spec.Containers {
			if c.ReadinessProbe != nil {
				delays[c.Name] = c.ReadinessProbe.InitialDelaySeconds
			}
		}
	}
	return delays
}

// renderedImages are the images of every container and init container in
// the rendered manifests.
func renderedImages(t *testing.T, manifests []byte) []string {
	t.Helper()
	var images []string
	for _, doc := range strings.Split(string(manifests), "\n---") {
		var obj struct {
			Spec struct {
				Template struct {
					Spec struct {
						Containers     []struct{ Image string } `yaml:"containers"`
						InitContainers []struct{ Image string } `yaml:"initContainers"`
					}
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		for _, c := range slices.Concat(obj.Spec.Template.Spec.InitContainers, obj.Spec.Template.Spec.Containers) {
			if !slices.Contains(images, c.Image) {
				images = append(images, c.Image)
			}
		}
	}
	return images
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
