// Package program is the kubeha stack program: the stack's keys mapped
// onto components.ClusterArgs, and the Cluster built from them. main.go
// runs it under `pulumi up`; the offline plan and the stack tests run the
// same function under mocks.
package program

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/config"
)

// Stack returns the program for a stack whose raw configuration is raw,
// keyed "namespace:key" as Pulumi passes it. A config error is returned
// before any resource is declared.
func Stack(raw map[string]string) pulumi.RunFunc { return StackWith(raw, nil) }

// StackWith is Stack with the Go-only arguments edit sets: the rehearsal's
// own builds as the nodes' assets, say.
func StackWith(raw map[string]string, edit func(*components.ClusterArgs)) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		args, err := config.Parse(raw)
		if err != nil {
			return err
		}
		if edit != nil {
			edit(&args)
		}
		if args.RunningKubernetesVersion == "" && args.ClusterName != "" {
			if args.RunningKubernetesVersion, err = components.RunningKubernetesVersion(ctx, args.ClusterName); err != nil {
				return err
			}
		}
		var notHA []string
		for _, f := range args.NotHA() {
			notHA = append(notHA, f.String())
			if err := ctx.Log.Warn("NOT HA: "+f.String(), nil); err != nil {
				return err
			}
		}

		cluster, err := components.NewCluster(ctx, args.ClusterName, &args)
		if err != nil {
			return err
		}
		ctx.Export("zones", pulumi.ToStringArray(args.Zones))
		ctx.Export("vpcId", cluster.Network.VpcID)
		ctx.Export("privateSubnetIds", pulumi.ToStringArrayOutput(cluster.Network.PrivateSubnetIDs))
		ctx.Export("publicSubnetIds", pulumi.ToStringArrayOutput(cluster.Network.PublicSubnetIDs))
		workerGroups := pulumi.StringArray{}
		for _, pool := range args.Workers {
			for _, g := range cluster.WorkerGroups[pool.Name] {
				workerGroups = append(workerGroups, g.GroupName)
			}
		}
		ctx.Export("workerGroups", workerGroups)
		ctx.Export("apiEndpoint", cluster.Endpoint)
		ctx.Export("apiAccessEndpointId", cluster.LoadBalancer.AccessEndpointID)
		ctx.Export("kubeconfig", cluster.Kubeconfig)
		ctx.Export("etcdEndpoints", cluster.Etcd.ClientEndpoints)
		ctx.Export("etcdBackupBucket", cluster.Etcd.BackupBucket)
		ctx.Export("alarmTopicArn", cluster.Addons.AlarmTopic.Arn)
		// Where the chart archives, the add-on set and the applier's report
		// (addons/applied.json, whose revision matches addonSetRevision
		// once the cluster runs this deploy's add-ons) are.
		ctx.Export("assetBucket", cluster.Assets.Bucket)
		ctx.Export("addonSetRevision", cluster.Addons.SetRevision)
		ctx.Export("notHA", pulumi.ToStringArray(notHA))
		return nil
	}
}
