package rehearsal

import (
	"time"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/bootstrap"
)

// stack is what the rehearsal takes from a stack's configuration. Only
// fromConfig reads the stack's ClusterArgs, so that a change there is one change
// here.
type stack struct {
	clusterName, region, kubernetesVersion, podCIDR, serviceCIDR string
	// zones are the first three: the rehearsal drills a 3-zone cluster.
	zones []string
	// etcd has one member per zone, whatever etcd.members says.
	etcd           bootstrap.EtcdCluster
	leaderElection bootstrap.LeaderElection
	healthCheck    healthCheck
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
	}
}
