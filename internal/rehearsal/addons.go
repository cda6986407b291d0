package rehearsal

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/tools"
)

// AddonsReport is what the add-on drill measured: the control plane's
// applier running the stack's add-on set with real Helm, each chart a
// stand-in of the same name and version.
type AddonsReport struct {
	Revision string `json:"revision"`
	Steps    int    `json:"steps"`
	// AppliedSeconds is from every node's launch to the applier reporting
	// the set applied: the first node applies it as soon as it serves,
	// which can be before the last node is in rotation.
	AppliedSeconds float64 `json:"appliedSeconds"`
	// BumpSeconds is from a new set (a chart version changed in the stack,
	// uploaded as `pulumi up` does) to the cluster running it.
	BumpSeconds float64 `json:"versionBumpSeconds"`
	// Uninstalled are the releases switched off in the stack with the
	// bump, gone once the new set applied.
	Uninstalled []string `json:"uninstalled"`
	// ReinstallSeconds is from a release deleted by hand to it running
	// again.
	ReinstallSeconds float64 `json:"reinstallSeconds"`
	// Runs held the Lease; Refused found it held by another node (all
	// three nodes were started at once, too); Overlapping counts runs of
	// two nodes that held it at the same time, which must be 0.
	Runs        int `json:"runs"`
	Refused     int `json:"refused"`
	Overlapping int `json:"overlapping"`
}

// addonStatus is what addons-apply.sh reports at bootstrap.AddonStatusKey.
type addonStatus struct {
	Revision  string    `json:"revision"`
	AppliedAt time.Time `json:"appliedAt"`
	Node      string    `json:"node"`
}

// declaredSet is the add-on set a program run wrote, and its bucket.
func declaredSet(resources []mockrun.Resource) (addons.Set, string, error) {
	var set addons.Set
	for _, r := range resources {
		if r.Type == "aws:s3/bucketObjectv2:BucketObjectv2" && r.String("key") == bootstrap.AddonSetKey {
			return set, r.String("bucket"), json.Unmarshal([]byte(r.String("content")), &set)
		}
	}
	return set, "", fmt.Errorf("rehearsal: the program writes no add-on set: is the stack's kubeha:addons.applier %q?", "cluster")
}

// drillAddons holds the applier to what kubeha claims: the set applied in
// order by one node at a time, a changed version reaching the cluster
// within minutes, a deleted release installed again.
func (c *cluster) drillAddons() (AddonsReport, error) {
	var r AddonsReport
	set, bucket, err := declaredSet(c.stack.declared)
	if err != nil {
		return r, err
	}
	r.Revision, r.Steps = set.Revision, len(set.Steps)
	status, err := c.waitForSet(bucket, set, 6*time.Minute)
	if err != nil {
		return r, err
	}
	r.AppliedSeconds = status.AppliedAt.Sub(c.wholeAt.Add(-c.boot)).Seconds()
	c.logf("add-on set %.12s (%d steps) applied by %s, %.0fs after the nodes launched", set.Revision, len(set.Steps), status.Node, r.AppliedSeconds)

	// A chart version changed in the stack: the program renders a new set,
	// which `pulumi up` uploads with the new archive.
	bumped, err := bumpVersion(c.stack.raw, addons.MetricsServer)
	if err != nil {
		return r, err
	}
	newer, err := declare(bumped, c.stack.rootfs)
	if err != nil {
		return r, err
	}
	next, _, err := declaredSet(newer)
	if err != nil {
		return r, err
	}
	start := time.Now()
	for _, prefix := range []string{addons.ChartArchivePrefix, bootstrap.AddonSetKey} {
		if err := c.cloud.PutObjects(newer, prefix); err != nil {
			return r, err
		}
	}
	if _, err := c.waitForSet(bucket, next, 5*time.Minute); err != nil {
		return r, err
	}
	r.BumpSeconds = time.Since(start).Seconds()
	c.logf("metrics-server's chart version changed in the stack: running in the cluster %.0fs after the upload", r.BumpSeconds)
	switchedOff := addons.ClusterAutoscaler
	if code, _, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/namespaces/"+switchedOff.Namespace+"/configmaps/"+switchedOff.Name+"-applied", nil); err != nil || code != http.StatusNotFound {
		return r, fmt.Errorf("rehearsal: %s, switched off in the stack, still runs once the new set applied: HTTP %d (%v)", switchedOff.Name, code, err)
	}
	r.Uninstalled = append(r.Uninstalled, switchedOff.Name)

	// A release deleted by hand comes back.
	node := c.nodes[0].Instance
	start = time.Now()
	if _, err := node.Exec("env", "KUBECONFIG="+bootstrap.AdminKubeconfigPath, "HOME=/var/lib/kubeha",
		"helm", "uninstall", addons.MetricsServer.Name, "--namespace", addons.MetricsServer.Namespace); err != nil {
		return r, err
	}
	if _, err := c.waitFor("metrics-server installed again", 5*time.Minute, func() error {
		return c.runs(next, addons.MetricsServer.Name)
	}); err != nil {
		return r, err
	}
	r.ReinstallSeconds = time.Since(start).Seconds()
	c.logf("metrics-server uninstalled by hand: installed again %.0fs later", r.ReinstallSeconds)

	// Every node at once: one applies, the others find the Lease held.
	var wg sync.WaitGroup
	for _, g := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = g.Instance.Exec("systemctl", "start", "kubeha-addons.service")
		}()
	}
	wg.Wait()
	if r.Runs, r.Refused, r.Overlapping, err = c.applierRuns(); err != nil {
		return r, err
	}
	c.logf("applier: %d runs held the lease, %d found it held, %d overlapped", r.Runs, r.Refused, r.Overlapping)
	switch {
	case r.Overlapping != 0:
		return r, fmt.Errorf("rehearsal: %d applier runs overlapped another node's", r.Overlapping)
	case r.Refused == 0:
		return r, fmt.Errorf("rehearsal: three nodes started the applier at once and none found the lease held")
	}
	return r, nil
}

// waitForSet waits until the applier reports set applied and every
// release in it runs at its version.
func (c *cluster) waitForSet(bucket string, set addons.Set, limit time.Duration) (addonStatus, error) {
	var status addonStatus
	_, err := c.waitFor("add-on set "+set.Revision[:12]+" applied", limit, func() error {
		data, err := c.cloud.Object(bucket, bootstrap.AddonStatusKey)
		if err != nil {
			return fmt.Errorf("no report yet: %w", err)
		}
		if err := json.Unmarshal(data, &status); err != nil {
			return err
		}
		if status.Revision != set.Revision {
			return fmt.Errorf("the applier reports %.12s", status.Revision)
		}
		for _, step := range set.Steps {
			if step.Release != nil {
				if err := c.runs(set, step.Name); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return status, err
}

// runs checks that the named release of set runs in the cluster, at its
// version: Helm's record of it says so, and for a stand-in chart the
// ConfigMap it installs.
func (c *cluster) runs(set addons.Set, name string) error {
	i := slices.IndexFunc(set.Steps, func(s addons.Step) bool { return s.Name == name })
	if i < 0 || set.Steps[i].Release == nil {
		return fmt.Errorf("rehearsal: no release %s in the set", name)
	}
	r := set.Steps[i].Release
	deployed, err := c.deployedVersion(r.Namespace, r.Name)
	if err != nil {
		return err
	}
	if deployed != r.Version {
		return fmt.Errorf("%s: Helm deployed %q, want %s", r.Name, deployed, r.Version)
	}
	if _, ok := realCharts("")[r.Name]; ok {
		return nil // no stand-in: its own objects run
	}
	code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/namespaces/"+r.Namespace+"/configmaps/"+r.Name+"-applied", nil)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d %v", r.Name, code, err)
	}
	var cm struct{ Data map[string]string }
	if err := json.Unmarshal([]byte(body), &cm); err != nil {
		return err
	}
	if cm.Data["version"] != r.Version {
		return fmt.Errorf("%s runs %s, want %s", r.Name, cm.Data["version"], r.Version)
	}
	return nil
}

// bumpVersion is raw with chart's add-on at a new version and
// cluster-autoscaler switched off, as an operator would set them in the
// stack file (the rehearsal stands in the new archive).
func bumpVersion(raw map[string]string, chart addons.Chart) (map[string]string, error) {
	keys := map[string]string{addons.MetricsServer.Name: "metricsServer"}
	key, ok := keys[chart.Name]
	if !ok {
		return nil, fmt.Errorf("rehearsal: no stack key for chart %s", chart.Name)
	}
	// The archive, as the stack must name it for a version kubeha does not
	// pin; declare stands in every archive the same way.
	version := chart.Version + "-rehearsal.2"
	cache, err := tools.CacheDir()
	if err != nil {
		return nil, err
	}
	archive, err := lab.StandInChart(filepath.Join(cache, "assets", "charts"), chart.Name, version)
	if err != nil {
		return nil, err
	}
	return withOptions(raw, "kubeha:addons", func(options map[string]any) error {
		options[key] = map[string]any{"version": version, "chart": archive}
		// And an add-on switched off, which the applier uninstalls.
		options["clusterAutoscaler"] = false
		return nil
	})
}

// applierRuns reads every control-plane node's applier log: the runs that
// held the Lease (from "lease held" to the run's last line), the runs that
// found it held, and how many held it while another node's run did.
func (c *cluster) applierRuns() (runs, refused, overlapping int, err error) {
	type run struct {
		node       int
		start, end float64
	}
	var held []run
	for i, g := range c.nodes {
		out, err := g.Instance.Exec("journalctl", "--unit", "kubeha-addons.service", "--output", "short-unix", "--no-pager")
		if err != nil {
			return 0, 0, 0, err
		}
		var open *run
		for _, line := range strings.Split(out, "\n") {
			stamp, text, ok := strings.Cut(line, " ")
			at, perr := strconv.ParseFloat(stamp, 64)
			if !ok || perr != nil {
				continue
			}
			switch {
			case strings.Contains(text, "lease held"):
				open = &run{node: i, start: at}
			case strings.Contains(text, "holds the lease"):
				refused++
			case open != nil && (strings.Contains(text, " applied") || strings.Contains(text, "failed;") || strings.Contains(text, "lost the lease")):
				open.end = at
				held = append(held, *open)
				open = nil
			}
		}
	}
	for i, a := range held {
		for _, b := range held[i+1:] {
			if a.node != b.node && a.start < b.end && b.start < a.end {
				overlapping++
			}
		}
	}
	return len(held), refused, overlapping, nil
}

// deployedVersion is the chart version of the release's deployed
// revision, from the Secret Helm keeps it in (base64 of gzipped JSON).
func (c *cluster) deployedVersion(namespace, release string) (string, error) {
	selector := url.QueryEscape("owner=helm,status=deployed,name=" + release)
	code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/namespaces/"+namespace+"/secrets?labelSelector="+selector, nil)
	if err != nil || code != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP %d %v", release, code, err)
	}
	var secrets struct {
		Items []struct{ Data map[string][]byte }
	}
	if err := json.Unmarshal([]byte(body), &secrets); err != nil {
		return "", err
	}
	if len(secrets.Items) != 1 {
		return "", fmt.Errorf("%s: %d deployed revisions", release, len(secrets.Items))
	}
	gz, err := base64.StdEncoding.DecodeString(string(secrets.Items[0].Data["release"]))
	if err != nil {
		return "", err
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return "", err
	}
	var rel struct {
		Chart struct{ Metadata struct{ Version string } }
	}
	return rel.Chart.Metadata.Version, json.NewDecoder(zr).Decode(&rel)
}
