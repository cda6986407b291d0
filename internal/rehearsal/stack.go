package rehearsal

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/program"
	"github.com/kubeha/kubeha/internal/tools"
)

// controlPlaneKey ends the name of the control plane's secret, which alone
// holds the cluster's join token.
const controlPlaneKey = "-control-plane"

// stack is what the rehearsal takes from a stack's configuration. Only
// fromConfig reads the stack's ClusterArgs, so that a change there is one change
// here.
type stack struct {
	clusterName, region, kubernetesVersion, podCIDR, serviceCIDR string
	// upgradeTo is the stack's release when drill u upgrades to it from
	// kubernetesVersion, the one before; else "". etcdUpgradeTo is the
	// stack's etcd release then, etcdVersion the one before.
	upgradeTo                  string
	etcdVersion, etcdUpgradeTo string
	// zones are the stack's three: the rehearsal drills a 3-zone cluster.
	zones []string
	// etcd has one member per zone.
	etcd           bootstrap.EtcdCluster
	leaderElection bootstrap.LeaderElection
	healthCheck    healthCheck
	// bootstrapDeadline is how long a node's first boot may take before
	// it gives itself up.
	bootstrapDeadline time.Duration
	// nodeGrace is how long a silent node stays Ready; podEviction how
	// long its pods stay on it after (controlPlane.nodeLifecycle).
	nodeGrace, podEviction time.Duration
	// rootfs is the nodes' image; declared is what the stack's program
	// declares, with the rehearsal's own builds as the nodes' assets.
	rootfs   string
	declared []mockrun.Resource
	// raw is the stack's configuration, which the add-on drill changes.
	raw map[string]string
	// cni is the CNI plugin the rehearsal runs; addonImages are the images
	// its registry serves (reference to tarball), probeImage among them.
	cni         string
	addonImages map[string]string
	probeImage  string
}

// declare runs the stack's program under mocks, as `pulumi up` would run
// it, with the nodes' assets built locally (hack/tools.sh) under the
// pinned keys, and the chart archives packed here (rehearsalCharts): the
// rehearsal reaches no chart repository.
func declare(raw map[string]string, rootfs string) ([]mockrun.Resource, error) {
	return declareAgain(raw, rootfs, nil, "")
}

// declareAgain is declare as a later `pulumi up` of the same stack: prior
// is its state, and running the release the cluster records, whose
// assets are the rehearsal's builds too.
func declareAgain(raw map[string]string, rootfs string, prior []mockrun.Resource, running string) ([]mockrun.Resource, error) {
	toolsDir, err := tools.Dir()
	if err != nil {
		return nil, err
	}
	cache, err := tools.CacheDir()
	if err != nil {
		return nil, err
	}
	var assetsErr, heldErr, chartsErr error
	var parameters map[string]string
	if running != "" {
		parameters = map[string]string{bootstrap.RunningVersionParameter(raw[clusterNameKey]): running}
	}
	rec, err := mockrun.RunAgain("kubeha", "rehearsal", raw, parameters, prior, program.StackWith(raw, func(args *components.ClusterArgs) {
		// The stack's release, as kubeha pins it.
		version, etcd := cmp.Or(args.KubernetesVersion, components.DefaultKubernetesVersion), cmp.Or(args.Etcd.Version, bootstrap.EtcdVersion)
		args.Assets, assetsErr = lab.LocalAssets(toolsDir, rootfs, filepath.Join(cache, "assets"), version, etcd)
		if running != "" && running != version {
			var held components.NodeAssetSet
			held, heldErr = lab.LocalAssets(toolsDir, rootfs, filepath.Join(cache, "assets"), running, etcd)
			args.OlderAssets = append(args.OlderAssets, held)
		}
		// The machine's kernel has cgroup v1 only, which kubeadm's system
		// check refuses (kubelet is told to accept it by the image).
		args.IgnorePreflightErrors = []string{"SystemVerification"}
		chartsErr = rehearsalCharts(&args.Addons, filepath.Join(cache, "assets", "charts"), toolsDir, filepath.Join(cache, "tools", "crds"))
	}))
	err = cmp.Or(assetsErr, heldErr, err, chartsErr)
	if err != nil {
		return nil, err
	}
	return rec.Resources(), nil
}

// Keys of a stack's configuration the rehearsal reads or sets.
const (
	clusterNameKey       = "kubeha:clusterName"
	kubernetesVersionKey = "kubeha:kubernetesVersion"
	etcdKey              = "kubeha:etcd"
)

// withEtcdVersion is raw with etcd.version set to version.
func withEtcdVersion(raw map[string]string, version string) (map[string]string, error) {
	return withOptions(raw, etcdKey, func(options map[string]any) error {
		options["version"] = version
		return nil
	})
}

// previousEtcd is the newest etcd release kubeha pins below version.
func previousEtcd(version string) (string, error) {
	v, _ := bootstrap.ParseVersion(version)
	var previous string
	for pinned := range bootstrap.EtcdReleases {
		p, ok := bootstrap.ParseVersion(pinned)
		if best, _ := bootstrap.ParseVersion(previous); ok && p.Less(v) && (previous == "" || best.Less(p)) {
			previous = pinned
		}
	}
	if previous == "" {
		return "", fmt.Errorf("drill u rolls etcd to %s from the release before it, and kubeha pins none", version)
	}
	return previous, nil
}

// realCharts are the charts the rehearsal installs as they are, whose
// pods run: the CNI it runs and CoreDNS, from their sources at kubeha's
// pins (flannel's from its Go module, by hack/tools.sh; CoreDNS's a copy
// in internal/lab). Every other chart is a stand-in of the same name and
// version (lab.StandInChart), which installs a ConfigMap saying so.
func realCharts(toolsDir string) map[string]fs.FS {
	return map[string]fs.FS{
		addons.Flannel.Name: os.DirFS(filepath.Join(toolsDir, "flannel-chart")),
		addons.CoreDNS.Name: lab.CoreDNSChart(),
	}
}

// rehearsalCharts points every add-on at an archive packed here, at the
// version the stack asks for: a real chart or a stand-in holding the CRDs
// (from crdDir) that the upstream chart installs and kubeha's own objects
// are of.
func rehearsalCharts(o *components.AddonsOptions, dir, toolsDir, crdDir string) error {
	crds := map[string][]string{
		addons.SnapshotController.Name:  {filepath.Join(crdDir, "snapshot.storage.k8s.io_volumesnapshotclasses.yaml")},
		addons.KubePrometheusStack.Name: {filepath.Join(crdDir, "monitoring.coreos.com_prometheusrules.yaml")},
	}
	real := realCharts(toolsDir)
	for _, a := range o.Charts() {
		version := cmp.Or(a.Addon.Version, a.Chart.Version)
		var path string
		var err error
		if chart, ok := real[a.Chart.Name]; ok && version == a.Chart.Version {
			path, err = lab.PackChart(dir, chart, a.Chart.Name, version)
		} else {
			path, err = lab.StandInChart(dir, a.Chart.Name, version, crds[a.Chart.Name]...)
		}
		if err != nil {
			return err
		}
		a.Addon.Chart, a.Addon.Digest = path, ""
	}
	return nil
}

// healthCheck is the load balancer's check of each API server.
type healthCheck struct {
	interval, timeout  time.Duration
	healthy, unhealthy int
}

func fromConfig(cfg components.ClusterArgs) stack {
	zones, le, h := cfg.Zones[:3], cfg.ControlPlane.LeaderElection, cfg.LoadBalancer.HealthCheck
	return stack{
		clusterName: cfg.ClusterName, region: cfg.Region, kubernetesVersion: cfg.KubernetesVersion,
		podCIDR: cfg.Network.PodCidr, serviceCIDR: cfg.Network.ServiceCidr, zones: zones, etcdVersion: cfg.Etcd.Version,
		etcd:           bootstrap.NewEtcdCluster(cfg.ClusterName, zones, 3, cfg.Etcd.VolumeSizeGiB, cfg.Etcd.BackupIntervalMinutes),
		leaderElection: bootstrap.LeaderElectionSeconds(le.LeaseDurationSeconds, le.RenewDeadlineSeconds, le.RetryPeriodSeconds),
		healthCheck: healthCheck{interval: time.Duration(h.IntervalSeconds) * time.Second, timeout: time.Duration(h.TimeoutSeconds) * time.Second,
			healthy: h.HealthyThreshold, unhealthy: h.UnhealthyThreshold},
		bootstrapDeadline: time.Duration(cfg.BootstrapTimeoutMinutes) * time.Minute,
		nodeGrace:         time.Duration(cfg.ControlPlane.NodeLifecycle.NodeMonitorGracePeriodSeconds) * time.Second,
		podEviction:       time.Duration(cfg.ControlPlane.NodeLifecycle.PodEvictionSeconds) * time.Second,
	}
}

// withOptions is raw with the object under key (such as "kubeha:addons")
// changed by edit, as an operator changes the stack file.
func withOptions(raw map[string]string, key string, edit func(options map[string]any) error) (map[string]string, error) {
	options := map[string]any{}
	if text := raw[key]; text != "" {
		if err := json.Unmarshal([]byte(text), &options); err != nil {
			return nil, fmt.Errorf("rehearsal: %s: %w", key, err)
		}
	}
	if err := edit(options); err != nil {
		return nil, err
	}
	text, err := json.Marshal(options)
	out := maps.Clone(raw)
	out[key] = string(text)
	return out, err
}
