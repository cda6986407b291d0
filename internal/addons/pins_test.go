package addons

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// chartIndex reads testdata/chart-index/<chart>.yaml: the entries of one
// chart in its repository's index.yaml, as published, under a header that
// says where and when the copy was taken.
func chartIndex(t *testing.T, chart string) (header string, entries []struct {
	Version, Digest string
	URLs            []string `yaml:"urls"`
}) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "chart-index", chart+".yaml"))
	if err != nil {
		t.Fatalf("no stored index for chart %s: %v", chart, err)
	}
	var index struct {
		Entries map[string][]struct {
			Version, Digest string
			URLs            []string `yaml:"urls"`
		}
	}
	if err := yaml.Unmarshal(data, &index); err != nil {
		t.Fatalf("testdata/chart-index/%s.yaml: %v", chart, err)
	}
	header, _, _ = strings.Cut(string(data), "\n")
	return header, index.Entries[chart]
}

// Every pinned chart version is one its repository published, with the
// digest the index gives its archive: a pin that was never published
// fails a user's first install.
func TestChartPinsArePublished(t *testing.T) {
	for _, chart := range Charts {
		if chart.Digest == "" {
			checkChartRecord(t, chart)
			continue
		}
		header, entries := chartIndex(t, chart.Name)
		if !strings.HasPrefix(header, "# from ") || !strings.Contains(header, "index.yaml") {
			t.Errorf("%s: the stored index does not say where it was taken: %q", chart.Name, header)
		}
		found := false
		for _, e := range entries {
			if e.Version != chart.Version {
				continue
			}
			found = true
			if e.Digest != chart.Digest {
				t.Errorf("%s %s: pinned digest %s, the index publishes %s", chart.Name, chart.Version, chart.Digest, e.Digest)
			}
			// The deploy copies the archive from the index's first URL,
			// which may be relative to the repository.
			if len(e.URLs) == 0 {
				t.Errorf("%s %s: the index lists no archive", chart.Name, chart.Version)
			} else if url := resolveChartURL(chart.Repo, e.URLs[0]); url != chart.URL {
				t.Errorf("%s %s: pinned archive %s, the index publishes %s", chart.Name, chart.Version, chart.URL, url)
			}
		}
		if !found {
			var versions []string
			for _, e := range entries {
				versions = append(versions, e.Version)
			}
			t.Errorf("%s %s is not in its repository's index (%s); published: %v", chart.Name, chart.Version, header, versions)
		}
	}
}

// checkChartRecord: a chart pinned without a digest has a record, in
// testdata/chart-records.yaml, of its release publishing the archive at
// the pinned URL, and says why there is no digest to read.
func checkChartRecord(t *testing.T, chart Chart) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "chart-records.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var records []struct{ Chart, Version, URL, Record, Says string }
	if err := yaml.Unmarshal(data, &records); err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if r.Chart != chart.Name || r.Version != chart.Version {
			continue
		}
		if r.URL != chart.URL || r.Record == "" || !strings.Contains(r.Says, chart.Version) {
			t.Errorf("%s %s: pinned archive %s, the record (%s) gives %s", chart.Name, chart.Version, chart.URL, r.Record, r.URL)
		}
		return
	}
	t.Errorf("%s %s is pinned without a digest and has no record in testdata/chart-records.yaml", chart.Name, chart.Version)
}

// resolveChartURL is an index's archive URL, absolute.
func resolveChartURL(repo, url string) string {
	if strings.Contains(url, "://") {
		return url
	}
	return strings.TrimSuffix(repo, "/") + "/" + url
}

// Every image tag kubeha sets has a record that it was published.
func TestImageTagsArePublished(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "image-records.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var records []struct{ Image, Tag, Record, Says string }
	if err := yaml.Unmarshal(data, &records); err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, r := range records {
		if r.Record == "" || r.Says == "" {
			t.Errorf("%s:%s has no record", r.Image, r.Tag)
		}
		recorded[r.Image+":"+r.Tag] = true
	}
	for _, release := range bootstrap.KubernetesReleases {
		for image, tag := range map[string]string{
			"registry.k8s.io/provider-aws/cloud-controller-manager": release.CloudControllerManager,
			"registry.k8s.io/autoscaling/cluster-autoscaler":        release.ClusterAutoscaler,
		} {
			if !recorded[image+":"+tag] {
				t.Errorf("Kubernetes %s gets %s:%s, which no record in testdata/image-records.yaml shows published", release.Version, image, tag)
			}
		}
	}
}
