package rehearsal

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
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
	// zones are the stack's three: the rehearsal drills a 3-zone cluster.
	zones []string
	// etcd has one member per zone.
	etcd           bootstrap.EtcdCluster
	leaderElection bootstrap.LeaderElection
	healthCheck    healthCheck
	// bootstrapDeadline is how long a node's first boot may take before
	// it gives itself up.
	bootstrapDeadline time.Duration
	// rootfs is the nodes' image; declared is what the stack's program
	// declares, with the rehearsal's own builds as the nodes' assets.
	rootfs   string
	declared []mockrun.Resource
	// raw is the stack's configuration, which the add-on drill changes.
	raw map[string]string
}

// declare runs the stack's program under mocks, as `pulumi up` would run
// it, with the nodes' assets built locally (hack/tools.sh) under the
// pinned keys, and every chart archive a stand-in of the same name and
// version (lab.StandInChart): the rehearsal reaches no chart repository.
func declare(raw map[string]string, rootfs string) ([]mockrun.Resource, error) {
	toolsDir, err := tools.Dir()
	if err != nil {
		return nil, err
	}
	cache, err := tools.CacheDir()
	if err != nil {
		return nil, err
	}
	assets, err := lab.LocalAssets(toolsDir, rootfs, filepath.Join(cache, "assets"))
	if err != nil {
		return nil, err
	}
	var standInErr error
	rec, err := mockrun.Run("kubeha", "rehearsal", raw, program.StackWith(raw, func(args *components.ClusterArgs) {
		args.Assets = assets
		// The machine's kernel has cgroup v1 only, which kubeadm's system
		// check refuses (kubelet is told to accept it by the image).
		args.IgnorePreflightErrors = []string{"SystemVerification"}
		standInErr = standInCharts(&args.Addons, filepath.Join(cache, "assets", "charts"), filepath.Join(cache, "tools", "crds"))
	}))
	if err == nil {
		err = standInErr
	}
	if err != nil {
		return nil, err
	}
	return rec.Resources(), nil
}

// standInCharts points every add-on at a stand-in archive of its chart, at
// the version the stack asks for, holding the CRDs (from crdDir) that the
// upstream chart installs and kubeha's own objects are of.
func standInCharts(o *components.AddonsOptions, dir, crdDir string) error {
	monitoring := addons.KubePrometheusStack
	if o.Monitoring == components.MonitoringCloudWatch {
		monitoring = addons.CloudWatchObservability
	}
	cni := addons.Cilium
	if o.CNIPlugin == components.CNIFlannel {
		cni = addons.Flannel
	}
	crds := map[string][]string{
		addons.SnapshotController.Name:  {filepath.Join(crdDir, "snapshot.storage.k8s.io_volumesnapshotclasses.yaml")},
		addons.KubePrometheusStack.Name: {filepath.Join(crdDir, "monitoring.coreos.com_prometheusrules.yaml")},
	}
	for _, a := range []struct {
		addon *components.Addon
		chart addons.Chart
	}{{&o.CNI, cni}, {&o.CloudControllerManager, addons.CloudControllerManager}, {&o.Storage, addons.EBSCSIDriver},
		{&o.Snapshots, addons.SnapshotController}, {&o.CoreDNS, addons.CoreDNS}, {&o.MetricsServer, addons.MetricsServer},
		{&o.ClusterAutoscaler, addons.ClusterAutoscaler}, {&o.MonitoringChart, monitoring}, {&o.PodIdentityWebhook, addons.PodIdentityWebhook}} {
		version := cmp.Or(a.addon.Version, a.chart.Version)
		path, err := lab.StandInChart(dir, a.chart.Name, version, crds[a.chart.Name]...)
		if err != nil {
			return err
		}
		a.addon.Chart, a.addon.Digest = path, ""
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
		podCIDR: cfg.Network.PodCidr, serviceCIDR: cfg.Network.ServiceCidr, zones: zones,
		etcd:           bootstrap.NewEtcdCluster(cfg.ClusterName, zones, 3, cfg.Etcd.VolumeSizeGiB, cfg.Etcd.BackupIntervalMinutes),
		leaderElection: bootstrap.LeaderElectionSeconds(le.LeaseDurationSeconds, le.RenewDeadlineSeconds, le.RetryPeriodSeconds),
		healthCheck: healthCheck{interval: time.Duration(h.IntervalSeconds) * time.Second, timeout: time.Duration(h.TimeoutSeconds) * time.Second,
			healthy: h.HealthyThreshold, unhealthy: h.UnhealthyThreshold},
		bootstrapDeadline: time.Duration(cfg.BootstrapTimeoutMinutes) * time.Minute,
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
