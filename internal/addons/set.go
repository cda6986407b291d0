package addons

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// The add-on set is every release and object kubeha applies to a cluster,
// in order, as data. Both ways of applying it read this one definition:
// the control plane's applier (the default) reads it as JSON from the
// cluster's asset bucket; Pulumi's Kubernetes provider declares each step
// as a resource.

// Choice is how a stack sets one add-on.
type Choice struct {
	Disabled bool
	// Version replaces the pinned chart version.
	Version string
	// Values are merged over kubeha's: maps key by key, anything else replaced.
	Values map[string]any
	// Chart is where the deploy copies the chart archive from (a URL or a
	// local file) instead of the repository's archive of the pinned
	// version: a mirror's copy, or the archive of Version.
	Chart string
	// Digest is that archive's SHA-256; empty, the digest S3 records at
	// copy.
	Digest string
}

// Choices are the stack's add-on switches.
type Choices struct {
	// Monitoring is MonitoringPrometheus or MonitoringCloudWatch; CNIPlugin
	// CNICilium or CNIFlannel, the chart that CNI installs.
	Monitoring, CNIPlugin                                                   string
	CNI, CloudControllerManager, Storage, Snapshots, CoreDNS, MetricsServer Choice
	ClusterAutoscaler, MonitoringChart, PodIdentityWebhook                  Choice
}

// Monitoring modes.
const (
	MonitoringPrometheus = "prometheus"
	MonitoringCloudWatch = "cloudwatch"
)

// Release is one chart release.
type Release struct {
	// Name is the release's name, the chart's name.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Version   string `json:"version"`
	// Repo is the chart's repository, which the provider path installs
	// from; the applier installs Archive.
	Repo string `json:"repo"`
	// Archive is the chart archive as a pinned asset: its key in the
	// cluster's asset bucket, its source and its SHA-256 ("" until the
	// deploy records it).
	Archive bootstrap.Asset `json:"archive"`
	Values  map[string]any  `json:"values"`
}

// Step is one release or one object.
type Step struct {
	// Name is the release's, or "<kind>-<name>" of the object.
	Name    string         `json:"name"`
	Release *Release       `json:"release,omitempty"`
	Object  map[string]any `json:"object,omitempty"`
	// Needs are the earlier steps this one waits for. The applier goes
	// in order; the provider path makes them dependencies.
	Needs []string `json:"needs,omitempty"`
	// Revision is a digest of everything above: the applier leaves a
	// release alone whose last install carries it.
	Revision string `json:"revision"`
}

// Set is what the control plane's applier reads.
type Set struct {
	// Revision is a digest of every step's: the one the applier reports
	// once every step is applied.
	Revision string `json:"revision"`
	Steps    []Step `json:"steps"`
}

// ChartArchivePrefix and ChartArchiveKey are where chart archives live in
// the asset bucket. The set itself is at bootstrap.AddonSetKey.
const ChartArchivePrefix = "charts/"

func ChartArchiveKey(chart, version string) string {
	return fmt.Sprintf("%s%s/%s/%s-%s.tgz", ChartArchivePrefix, chart, version, chart, version)
}

// Steps renders the add-on set: the cloud-controller-manager and the CNI
// first (nodes become Ready with nothing else), then everything that runs
// in pods on the pod network.
func Steps(c Cluster, ch Choices) ([]Step, error) {
	var steps []Step
	have := map[string]bool{}
	// needs keeps the steps that are in the set.
	needs := func(names ...string) []string {
		var out []string
		for _, n := range names {
			if have[n] {
				out = append(out, n)
			}
		}
		return out
	}
	release := func(chart Chart, choice Choice, values map[string]any, after ...string) error {
		if choice.Disabled {
			return nil
		}
		archive, err := chartArchive(chart, choice)
		if err != nil {
			return err
		}
		steps = append(steps, Step{Name: chart.Name, Needs: needs(after...), Release: &Release{
			Name: chart.Name, Namespace: chart.Namespace, Version: archive.version, Repo: chart.Repo,
			Archive: archive.Asset, Values: merge(values, choice.Values),
		}})
		have[chart.Name] = true
		return nil
	}
	object := func(obj map[string]any, after ...string) {
		meta := obj["metadata"].(map[string]any)
		name := fmt.Sprintf("%s-%s", strings.ToLower(obj["kind"].(string)), meta["name"])
		steps = append(steps, Step{Name: name, Object: obj, Needs: needs(after...)})
		have[name] = true
	}

	ccm, err := CloudControllerManagerValues(c)
	if err != nil && !ch.CloudControllerManager.Disabled {
		return nil, err
	}
	if err := release(CloudControllerManager, ch.CloudControllerManager, ccm); err != nil {
		return nil, err
	}
	// Every pod but host-network ones needs the CNI first.
	cni, cniValues := Cilium, CiliumValues(c)
	if ch.CNIPlugin == CNIFlannel {
		cni, cniValues = Flannel, FlannelValues(c)
	}
	if err := release(cni, ch.CNI, cniValues); err != nil {
		return nil, err
	}
	onPodNetwork := cni.Name
	dns, err := CoreDNSValues(c)
	if err != nil && !ch.CoreDNS.Disabled {
		return nil, err
	}
	if err := release(CoreDNS, ch.CoreDNS, dns, onPodNetwork); err != nil {
		return nil, err
	}
	if !ch.CoreDNS.Disabled {
		object(CoreDNSDisruptionBudget())
	}
	if err := release(MetricsServer, ch.MetricsServer, MetricsServerValues(), onPodNetwork); err != nil {
		return nil, err
	}
	autoscaler, err := ClusterAutoscalerValues(c)
	if err != nil && !ch.ClusterAutoscaler.Disabled {
		return nil, err
	}
	if err := release(ClusterAutoscaler, ch.ClusterAutoscaler, autoscaler, onPodNetwork); err != nil {
		return nil, err
	}

	storage := !ch.Storage.Disabled
	if storage {
		// The snapshot CRDs come first: the driver's snapshotter sidecar
		// and the VolumeSnapshotClass need them.
		snapshots := !ch.Snapshots.Disabled
		if err := release(SnapshotController, ch.Snapshots, SnapshotControllerValues(), onPodNetwork); err != nil {
			return nil, err
		}
		if err := release(EBSCSIDriver, ch.Storage, EBSCSIDriverValues(c, snapshots), onPodNetwork, SnapshotController.Name); err != nil {
			return nil, err
		}
		object(StorageClass())
		if snapshots {
			object(VolumeSnapshotClass(), SnapshotController.Name)
		}
	}
	// Prometheus' volumes need the EBS driver and the default class.
	afterStorage := []string{onPodNetwork, EBSCSIDriver.Name, "storageclass-" + StorageClassName}
	switch {
	case ch.MonitoringChart.Disabled:
	case ch.Monitoring == MonitoringCloudWatch:
		// The agent's pods get their role from the webhook when made.
		if err := release(PodIdentityWebhook, ch.PodIdentityWebhook, PodIdentityWebhookValues(c), onPodNetwork); err != nil {
			return nil, err
		}
		if err := release(CloudWatchObservability, ch.MonitoringChart, CloudWatchValues(c), append(afterStorage, PodIdentityWebhook.Name)...); err != nil {
			return nil, err
		}
	default:
		object(Namespace(KubePrometheusStack.Namespace))
		object(EtcdClientSecretObject(c), "namespace-"+KubePrometheusStack.Namespace)
		if err := release(KubePrometheusStack, ch.MonitoringChart, KubePrometheusStackValues(c, storage),
			append(afterStorage, "namespace-"+KubePrometheusStack.Namespace, "secret-"+EtcdClientSecret)...); err != nil {
			return nil, err
		}
		object(EtcdAlertRules(c), KubePrometheusStack.Name)
	}
	return steps, nil
}

// NewSet is steps, each with its revision, and the set's, once every
// archive's digest is known.
func NewSet(steps []Step) Set {
	steps = slices.Clone(steps)
	for i := range steps {
		steps[i].Revision = ""
		steps[i].Revision = digest(steps[i])
	}
	return Set{Revision: digest(steps), Steps: steps}
}

// archive is a chart archive and the version it holds.
type archive struct {
	bootstrap.Asset
	version string
}

// chartArchive is the archive a choice installs: the pinned one, or the
// one the stack names. A version kubeha does not pin needs its archive's
// source: kubeha never guesses where a chart was published.
func chartArchive(chart Chart, choice Choice) (archive, error) {
	version := chart.Version
	if choice.Version != "" {
		version = choice.Version
	}
	a := archive{Asset: bootstrap.Asset{Key: ChartArchiveKey(chart.Name, version), Source: choice.Chart, SHA256: choice.Digest}, version: version}
	if a.Source == "" {
		if version != chart.Version {
			return archive{}, fmt.Errorf("%s version %s needs the archive's URL as chart (the chart repository's index.yaml lists it under urls, with its digest)", chart.Name, version)
		}
		a.Source, a.SHA256 = chart.URL, chart.Digest
	}
	return a, nil
}

// Namespace is a namespace object.
func Namespace(name string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}
}

// EtcdClientSecretObject is Prometheus' identity on the etcd members' TLS
// metrics port.
func EtcdClientSecretObject(c Cluster) map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": EtcdClientSecret, "namespace": KubePrometheusStack.Namespace},
		"stringData": map[string]any{"ca.crt": c.EtcdCACert, "client.crt": c.EtcdClientCert, "client.key": c.EtcdClientKey},
	}
}

// digest is the SHA-256 of v's JSON (maps marshal with sorted keys).
func digest(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("addons: a rendered step does not marshal: %v", err)) // values are built from JSON types
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// merge returns base with over laid on it: maps merge key by key,
// anything else in over replaces.
func merge(base, over map[string]any) map[string]any {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	for _, k := range slices.Sorted(maps.Keys(over)) {
		v := over[k]
		if sub, ok := v.(map[string]any); ok {
			if baseSub, ok := out[k].(map[string]any); ok {
				out[k] = merge(baseSub, sub)
				continue
			}
		}
		out[k] = v
	}
	return out
}
