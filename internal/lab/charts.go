package lab

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"
)

// standInTemplate is the one object a stand-in chart installs: which
// chart and version the release runs, and a digest of the values it was
// given, so that a test sees what reached the cluster.
const standInTemplate = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-applied
  namespace: {{ .Release.Namespace }}
data:
  chart: {{ .Chart.Name | quote }}
  version: {{ .Chart.Version | quote }}
  values: {{ toJson .Values | sha256sum | quote }}
`

// StandInChart writes, into dir, a Helm chart archive named and versioned
// as an upstream chart, for the rehearsal, which reaches no chart
// repository: it installs a ConfigMap <release>-applied saying what was
// installed, and the CRDs (files) the upstream chart installs, which
// kubeha's own objects need. It returns the archive's path. The same
// inputs give the same bytes.
func StandInChart(dir, name, version string, crds ...string) (string, error) {
	files := []chartFile{
		{"Chart.yaml", fmt.Appendf(nil, "apiVersion: v2\nname: %s\nversion: %s\ndescription: kubeha's rehearsal stand-in for the %s chart\n", name, version, name)},
		{"templates/applied.yaml", []byte(standInTemplate)},
	}
	for _, crd := range crds {
		data, err := os.ReadFile(crd)
		if err != nil {
			return "", err
		}
		files = append(files, chartFile{"crds/" + filepath.Base(crd), data})
	}
	return writeChart(dir, name, version, files)
}

// chartFile is one file of a chart, by its path in the chart's folder.
type chartFile struct {
	name string
	data []byte
}

// writeChart writes the archive <dir>/<name>-<version>.tgz of files under
// <name>/, with fixed times, so that the same files give the same bytes.
func writeChart(dir, name, version string, files []chartFile) (string, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name + "/" + f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.tgz", name, version))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, buf.Bytes(), 0o644)
}

// coreDNSChart is the coredns chart kubeha pins, copied from the coredns/helm
// repository at tag coredns-1.46.2 (commit caac0316), whose release archive
// the rehearsal cannot fetch; coreDNSChartTree is that folder's git tree,
// which TestCoreDNSChartIsUpstreams recomputes from the copy.
//
//go:embed all:charts/coredns
var coreDNSChart embed.FS

const coreDNSChartTree = "0262957123c45514fa9332f667cfb61e805c4909"

// CoreDNSChart is the copy of the coredns chart, rooted at its folder.
func CoreDNSChart() fs.FS {
	sub, err := fs.Sub(coreDNSChart, "charts/coredns")
	if err != nil {
		panic(err) // the embedded folder is there by construction
	}
	return sub
}

// PackChart writes, into dir, the archive of the chart whose files chart
// holds, laid out as `helm package` lays it out (<name>/<file>), and
// returns its path. The chart must be the one named and at version.
func PackChart(dir string, chart fs.FS, name, version string) (string, error) {
	meta, err := fs.ReadFile(chart, "Chart.yaml")
	if err != nil {
		return "", fmt.Errorf("lab: chart %s: %w", name, err)
	}
	var header struct{ Name, Version string }
	if err := yaml.Unmarshal(meta, &header); err != nil {
		return "", fmt.Errorf("lab: chart %s: Chart.yaml: %w", name, err)
	}
	if header.Name != name || header.Version != version {
		return "", fmt.Errorf("lab: the chart copy is %s %s, want %s %s", header.Name, header.Version, name, version)
	}
	var files []chartFile
	err = fs.WalkDir(chart, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(chart, p)
		files = append(files, chartFile{p, data})
		return err
	})
	if err != nil {
		return "", err
	}
	return writeChart(dir, name, version, files)
}
