// Package program is the kubeha stack program: typed config in, components
// out. main.go runs it under `pulumi up`; the offline plan and the stack
// tests run the same function under mocks.
package program

import (
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/components"
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

		network, err := components.NewNetwork(ctx, cfg.ClusterName+"-network", networkArgs(cfg))
		if err != nil {
			return err
		}
		key, err := clusterKey(ctx, cfg)
		if err != nil {
			return err
		}
		etcd, err := components.NewEtcdCluster(ctx, cfg.ClusterName+"-etcd", &components.EtcdClusterArgs{
			ClusterName:           cfg.ClusterName,
			Region:                cfg.Region,
			Zones:                 cfg.Zones,
			SubnetIDs:             stringInputs(network.PrivateSubnetIDs),
			VpcID:                 network.VpcID,
			KMSKeyArn:             key.Arn,
			Members:               cfg.Etcd.Members,
			InstanceType:          cfg.Etcd.InstanceType,
			VolumeSizeGiB:         cfg.Etcd.VolumeSizeGiB,
			BackupIntervalMinutes: cfg.Etcd.BackupIntervalMinutes,
			BackupRetentionDays:   cfg.Etcd.BackupRetentionDays,
			Protect:               cfg.DeletionProtection,
			Tags:                  tags(cfg),
		})
		if err != nil {
			return err
		}

		ctx.Export("zones", pulumi.ToStringArray(cfg.Zones))
		ctx.Export("vpcId", network.VpcID)
		ctx.Export("privateSubnetIds", pulumi.ToStringArrayOutput(network.PrivateSubnetIDs))
		ctx.Export("publicSubnetIds", pulumi.ToStringArrayOutput(network.PublicSubnetIDs))
		api, err := components.NewApiLoadBalancer(ctx, cfg.ClusterName+"-api", apiArgs(cfg, network))
		if err != nil {
			return err
		}

		le := cfg.ControlPlane.LeaderElection
		controlPlane, err := components.NewControlPlane(ctx, cfg.ClusterName+"-control-plane", &components.ControlPlaneArgs{
			ClusterName:       cfg.ClusterName,
			Region:            cfg.Region,
			KubernetesVersion: cfg.KubernetesVersion,
			Zones:             cfg.Zones,
			SubnetIDs:         stringInputs(network.PrivateSubnetIDs),
			VpcID:             network.VpcID,
			KMSKeyArn:         key.Arn,
			Etcd:              etcd,
			LoadBalancer:      api,
			InstanceType:      cfg.ControlPlane.InstanceType,
			PodCIDR:           cfg.Network.PodCidr,
			ServiceCIDR:       cfg.Network.ServiceCidr,
			LeaderElection: components.LeaderElection{LeaseDuration: seconds(le.LeaseDurationSeconds),
				RenewDeadline: seconds(le.RenewDeadlineSeconds), RetryPeriod: seconds(le.RetryPeriodSeconds)},
			Tags: tags(cfg),
		}, pulumi.DependsOn([]pulumi.Resource{etcd}))
		if err != nil {
			return err
		}

		ctx.Export("apiEndpoint", controlPlane.Endpoint)
		ctx.Export("kubeconfig", controlPlane.Kubeconfig)
		ctx.Export("etcdEndpoints", etcd.ClientEndpoints)
		ctx.Export("etcdBackupBucket", etcd.BackupBucket)
		ctx.Export("notHA", pulumi.ToStringArray(notHA))
		return nil
	}
}

func networkArgs(cfg config.Stack) *components.NetworkArgs {
	args := &components.NetworkArgs{
		ClusterName:      cfg.ClusterName,
		Region:           cfg.Region,
		Zones:            cfg.Zones,
		VpcCidr:          cfg.Network.VpcCidr,
		SharedNatGateway: cfg.Network.SharedNatGateway,
		Protect:          cfg.DeletionProtection,
		Tags:             tags(cfg),
	}
	if n := cfg.Network; n.ExistingVpcID != "" {
		args.Existing = &components.ExistingNetwork{
			VpcID:            pulumi.String(n.ExistingVpcID),
			PrivateSubnetIDs: stringInputs(toStrings(n.ExistingPrivateSubnetIDs)),
			PublicSubnetIDs:  stringInputs(toStrings(n.ExistingPublicSubnetIDs)),
		}
	}
	return args
}

func apiArgs(cfg config.Stack, network *components.Network) *components.ApiLoadBalancerArgs {
	h := cfg.API.HealthCheck
	args := &components.ApiLoadBalancerArgs{
		ClusterName:  cfg.ClusterName,
		VpcID:        network.VpcID,
		VpcCidr:      network.VpcCidr,
		SubnetIDs:    stringInputs(network.PrivateSubnetIDs),
		Public:       cfg.API.Public,
		AllowedCidrs: cfg.API.AllowedCidrs,
		HealthCheck: components.HealthCheck{IntervalSeconds: h.IntervalSeconds, TimeoutSeconds: h.TimeoutSeconds,
			HealthyThreshold: h.HealthyThreshold, UnhealthyThreshold: h.UnhealthyThreshold},
		DeregistrationDelaySeconds: cfg.API.DeregistrationDelaySeconds,
		Protect:                    cfg.DeletionProtection,
		Tags:                       tags(cfg),
	}
	if cfg.API.Public {
		// Nodes reach a public endpoint from their NAT addresses.
		args.SubnetIDs, args.ExtraAllowedIPs = stringInputs(network.PublicSubnetIDs), network.NatPublicIPs
	}
	if cfg.API.DNSName != "" {
		args.DNSName, args.HostedZoneID = cfg.API.DNSName, pulumi.String(cfg.API.HostedZoneID)
	}
	return args
}

// clusterKey is the KMS key that encrypts the cluster's secrets and
// backups. Losing it loses them, so it is protected like the data.
func clusterKey(ctx *pulumi.Context, cfg config.Stack) (*kms.Key, error) {
	key, err := kms.NewKey(ctx, cfg.ClusterName+"-key", &kms.KeyArgs{
		Description:          pulumi.String("kubeha cluster " + cfg.ClusterName + ": secrets and etcd backups"),
		EnableKeyRotation:    pulumi.Bool(true),
		DeletionWindowInDays: pulumi.Int(30),
		Tags:                 pulumi.ToStringMap(tags(cfg)),
	}, pulumi.Protect(cfg.DeletionProtection))
	if err != nil {
		return nil, err
	}
	_, err = kms.NewAlias(ctx, cfg.ClusterName+"-key", &kms.AliasArgs{
		Name: pulumi.String("alias/" + cfg.ClusterName), TargetKeyId: key.KeyId,
	})
	return key, err
}

func tags(cfg config.Stack) map[string]string {
	return map[string]string{"kubeha.io/environment": cfg.Environment}
}

// stringInputs turns plain strings or outputs into a slice of inputs.
func stringInputs[T pulumi.StringInput](values []T) []pulumi.StringInput {
	out := make([]pulumi.StringInput, len(values))
	for i, v := range values {
		out[i] = v
	}
	return out
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

func toStrings(values []string) []pulumi.String {
	out := make([]pulumi.String, len(values))
	for i, v := range values {
		out[i] = pulumi.String(v)
	}
	return out
}
