// Package program is the kubeha stack program: typed config in, components
// out. main.go runs it under `pulumi up`; the offline plan and the stack
// tests run the same function under mocks.
package program

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
)

// Stack returns the program for a stack whose raw configuration is raw,
// keyed "namespace:key" as Pulumi passes it. A config error is returned
// before any resource is declared.
func Stack(raw map[string]string) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		cfg, err := config.Parse(raw)
		if err != nil {
			return err
		}
		var notHA []string
		for _, f := range cfg.NotHA() {
			notHA = append(notHA, f.String())
			if err := ctx.Log.Warn("NOT HA: "+f.String(), nil); err != nil {
				return err
			}
		}

		cluster, err := components.NewCluster(ctx, cfg.ClusterName, clusterArgs(cfg))
		if err != nil {
			return err
		}
		ctx.Export("zones", pulumi.ToStringArray(cfg.Zones))
		ctx.Export("vpcId", cluster.Network.VpcID)
		ctx.Export("privateSubnetIds", pulumi.ToStringArrayOutput(cluster.Network.PrivateSubnetIDs))
		ctx.Export("publicSubnetIds", pulumi.ToStringArrayOutput(cluster.Network.PublicSubnetIDs))
		workerGroups := pulumi.StringArray{}
		for _, pool := range cfg.Workers {
			for _, g := range cluster.WorkerGroups[pool.Name] {
				workerGroups = append(workerGroups, g.GroupName)
			}
		}
		ctx.Export("workerGroups", workerGroups)
		ctx.Export("apiEndpoint", cluster.Endpoint)
		ctx.Export("kubeconfig", cluster.Kubeconfig)
		ctx.Export("etcdEndpoints", cluster.Etcd.ClientEndpoints)
		ctx.Export("etcdBackupBucket", cluster.Etcd.BackupBucket)
		ctx.Export("alarmTopicArn", cluster.Addons.AlarmTopic.Arn)
		ctx.Export("notHA", pulumi.ToStringArray(notHA))
		return nil
	}
}

// clusterArgs reads the stack config into the Cluster's args; Cluster
// wires the components together.
func clusterArgs(cfg config.Stack) *components.ClusterArgs {
	n, h, le := cfg.Network, cfg.API.HealthCheck, cfg.ControlPlane.LeaderElection
	args := &components.ClusterArgs{
		ClusterName:       cfg.ClusterName,
		Region:            cfg.Region,
		Zones:             cfg.Zones,
		KubernetesVersion: cfg.KubernetesVersion,
		Unprotected:       !cfg.DeletionProtection,
		Tags:              map[string]string{"kubeha.io/environment": cfg.Environment},
		Network:           components.NetworkArgs{VpcCidr: n.VpcCidr, SharedNatGateway: n.SharedNatGateway},
		Etcd: components.EtcdClusterArgs{
			Members:               cfg.Etcd.Members,
			InstanceType:          cfg.Etcd.InstanceType,
			VolumeSizeGiB:         cfg.Etcd.VolumeSizeGiB,
			BackupIntervalMinutes: cfg.Etcd.BackupIntervalMinutes,
			BackupRetentionDays:   cfg.Etcd.BackupRetentionDays,
		},
		LoadBalancer: components.ApiLoadBalancerArgs{
			Public:       cfg.API.Public,
			AllowedCidrs: cfg.API.AllowedCidrs,
			HealthCheck: components.HealthCheck{IntervalSeconds: h.IntervalSeconds, TimeoutSeconds: h.TimeoutSeconds,
				HealthyThreshold: h.HealthyThreshold, UnhealthyThreshold: h.UnhealthyThreshold},
			DeregistrationDelaySeconds: cfg.API.DeregistrationDelaySeconds,
			DNSName:                    cfg.API.DNSName,
		},
		WorkerSecurityGroup: components.WorkerSecurityGroupArgs{NodePortCidrs: n.NodePortCidrs},
		ControlPlane: components.ControlPlaneArgs{
			InstanceType:   cfg.ControlPlane.InstanceType,
			PodCIDR:        n.PodCidr,
			ServiceCIDR:    n.ServiceCidr,
			LeaderElection: bootstrap.LeaderElectionSeconds(le.LeaseDurationSeconds, le.RenewDeadlineSeconds, le.RetryPeriodSeconds),
		},
	}
	off := func(on bool) components.Addon { return components.Addon{Disabled: !on} }
	a := cfg.Addons
	args.Addons = components.AddonsArgs{
		Monitoring: a.Monitoring, AlarmEmail: a.AlarmEmail,
		CNI: off(a.CNI), CloudControllerManager: off(a.CloudControllerManager), Storage: off(a.Storage),
		CoreDNS: off(a.CoreDNS), MetricsServer: off(a.MetricsServer), ClusterAutoscaler: off(a.ClusterAutoscaler),
	}
	if n.ExistingVpcID != "" {
		args.Network.Existing = &components.ExistingNetwork{
			VpcID:            pulumi.String(n.ExistingVpcID),
			PrivateSubnetIDs: stringInputs(n.ExistingPrivateSubnetIDs),
			PublicSubnetIDs:  stringInputs(n.ExistingPublicSubnetIDs),
		}
	}
	if cfg.API.HostedZoneID != "" {
		args.LoadBalancer.HostedZoneID = pulumi.String(cfg.API.HostedZoneID)
	}
	for _, pool := range cfg.Workers {
		args.Workers = append(args.Workers, workerPool(pool))
	}
	return args
}

// workerPool is a config pool as the args of its per-zone groups. Labels
// and taints were checked by config.Validate.
func workerPool(pool config.WorkerPool) components.ZonalWorkerGroupArgs {
	args := components.ZonalWorkerGroupArgs{
		Pool:          pool.Name,
		InstanceTypes: pool.InstanceTypes,
		OnDemandBase:  pool.OnDemandBase,
		SpotPercent:   pool.SpotPercent,
		Min:           pool.MinPerZone,
		Desired:       pool.DesiredPerZone,
		Max:           pool.MaxPerZone,
		Labels:        map[string]string{},
	}
	for _, label := range pool.Labels {
		k, v, _ := config.ParseLabel(label)
		args.Labels[k] = v
	}
	for _, taint := range pool.Taints {
		k, v, effect, _ := config.ParseTaint(taint)
		args.Taints = append(args.Taints, components.Taint{Key: k, Value: v, Effect: effect})
	}
	return args
}

func stringInputs(values []string) []pulumi.StringInput {
	out := make([]pulumi.StringInput, len(values))
	for i, v := range values {
		out[i] = pulumi.String(v)
	}
	return out
}
