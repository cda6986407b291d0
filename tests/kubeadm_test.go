package tests

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/tools"
)

// renderedFiles returns the files a launch template's user-data writes.
func renderedFiles(t *testing.T, userData string) map[string]string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(userData)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := bootstrap.ReadUserData(raw)
	if err != nil {
		t.Fatal(err)
	}
	var cloudConfig struct {
		WriteFiles []struct{ Path, Content string } `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(doc, &cloudConfig); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, f := range cloudConfig.WriteFiles {
		files[f.Path] = f.Content
	}
	return files
}

func kubeadmValidate(kubeadm, config string) (string, error) {
	dir, err := os.MkdirTemp("", "kubeadm-validate")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return "", err
	}
	out, err := exec.Command(kubeadm, "config", "validate", "--config", path).CombinedOutput()
	return string(out), err
}

// TestStackKubeadmConfigsValidate runs each supported release's own
// kubeadm validation on the kubeadm configurations every stack renders
// into user-data at that release: init and join on each control-plane
// node, join on each worker group. That kubeadm also names the sandbox
// image kubeha pins for the release. A broken config must fail.
func TestStackKubeadmConfigsValidate(t *testing.T) {
	const initPath, joinPath = "/etc/kubeha/templates/kubeadm-init.yaml", "/etc/kubeha/templates/kubeadm-join.yaml"
	var anyInit, anyWorkerJoin, kubeadmPath string
	for _, release := range bootstrap.KubernetesReleases {
		tool := "kubeadm"
		if release.Version != bootstrap.PinnedKubernetesVersion {
			tool += "-" + release.Version
		}
		kubeadm, err := tools.Path(tool)
		if err != nil {
			tools.Unavailable(t, err.Error())
		}
		if out, err := exec.Command(kubeadm, "version", "-o", "short").Output(); err != nil || strings.TrimSpace(string(out)) != release.Version {
			t.Errorf("%s says it is %q (%v), want %s", tool, out, err, release.Version)
		}
		if out, err := exec.Command(kubeadm, "config", "images", "list", "--kubernetes-version", release.Version).Output(); err != nil ||
			!slices.Contains(strings.Fields(string(out)), release.PauseImage) {
			t.Errorf("%s asks for the images %q (%v), want the sandbox kubeha pins, %s", tool, out, err, release.PauseImage)
		}
		for name, file := range stackFiles(t) {
			cfg, rec := evaluateAt(t, file, release.Version)
			checked := map[string]int{}
			for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
				typ, _ := rec.Component(lt)
				paths := map[string][]string{
					"kubeha:index:ControlPlane":     {initPath, joinPath},
					"kubeha:index:ZonalWorkerGroup": {joinPath},
				}[typ]
				files := renderedFiles(t, lt.String("userData"))
				for _, path := range paths {
					config := files[path]
					if config == "" {
						t.Fatalf("%s: %s writes no %s", name, lt.Name, path)
					}
					if out, err := kubeadmValidate(kubeadm, config); err != nil {
						t.Errorf("%s at %s: %s rejects %s of %s: %v\n%s", name, release.Version, tool, path, lt.Name, err, out)
					}
					checked[strings.TrimPrefix(typ, "kubeha:index:")]++
				}
				if release.Version != bootstrap.PinnedKubernetesVersion {
					continue
				}
				kubeadmPath = kubeadm
				if typ == "kubeha:index:ControlPlane" {
					anyInit = files[initPath]
				} else if typ == "kubeha:index:ZonalWorkerGroup" {
					anyWorkerJoin = files[joinPath]
				}
			}
			want := map[string]int{"ControlPlane": 2 * len(cfg.Zones), "ZonalWorkerGroup": len(cfg.Workers) * len(cfg.Zones)}
			if checked["ControlPlane"] != want["ControlPlane"] || checked["ZonalWorkerGroup"] != want["ZonalWorkerGroup"] {
				t.Errorf("%s at %s: validated %v kubeadm configs, want %v", name, release.Version, checked, want)
			}
			t.Logf("%s at %s: %s config validate passed on %v rendered configs", name, release.Version, tool, checked)
		}
	}
	for what, broken := range map[string]string{
		"misspelt field":                 strings.Replace(anyInit, "controlPlaneEndpoint:", "controlPlaneEndpiont:", 1),
		"bad version":                    strings.Replace(anyInit, "kubernetesVersion: v1.36.3", "kubernetesVersion: banana", 1),
		"service CIDR is bad":            strings.Replace(anyInit, "serviceSubnet: ", "serviceSubnet: 10.300.0.0/12 #", 1),
		"worker join, misspelt endpoint": strings.Replace(anyWorkerJoin, "apiServerEndpoint:", "apiServerEndpiont:", 1),
	} {
		if broken == anyInit {
			t.Fatalf("%s: the edit did not apply", what)
		}
		if out, err := kubeadmValidate(kubeadmPath, broken); err == nil {
			t.Errorf("kubeadm accepted a config with a %s:\n%s", what, out)
		}
	}
}
