package lab

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"time"
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
	files := []struct {
		name string
		data []byte
	}{
		{"Chart.yaml", fmt.Appendf(nil, "apiVersion: v2\nname: %s\nversion: %s\ndescription: kubeha's rehearsal stand-in for the %s chart\n", name, version, name)},
		{"templates/applied.yaml", []byte(standInTemplate)},
	}
	for _, crd := range crds {
		data, err := os.ReadFile(crd)
		if err != nil {
			return "", err
		}
		files = append(files, struct {
			name string
			data []byte
		}{"crds/" + filepath.Base(crd), data})
	}
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
