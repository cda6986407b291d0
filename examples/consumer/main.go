// Command consumer is an example of a Go Pulumi program that imports
// kubeha's components: one HA cluster with a 5-member etcd, a general
// on-demand pool and a tainted spot pool, all set in code.
//
//	pulumi up    # with AWS credentials; no stack config is read
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/components"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		_, err := declare(ctx)
		return err
	})
}

// declare builds the cluster and exports how to reach it.
func declare(ctx *pulumi.Context) (*components.Cluster, error) {
	cluster, err := components.NewCluster(ctx, "shop", &components.ClusterArgs{
		ClusterName: "shop",
		Region:      "eu-central-1",
		Zones:       []string{"eu-central-1a", "eu-central-1b", "eu-central-1c"},
		Tags:        map[string]string{"team": "payments"},
		Etcd:        components.EtcdClusterArgs{Members: 5},
		Workers: []components.ZonalWorkerGroupArgs{
			{Pool: "general", InstanceTypes: []string{"m6i.large"}, Min: 1, Desired: 2, Max: 10},
			{
				// Batch work that tolerates losing a node: spot only, and
				// kept off by a taint unless a pod tolerates it.
				Pool:          "spot",
				InstanceTypes: []string{"m6i.large", "m6a.large", "m7i.large"},
				SpotPercent:   100,
				Min:           0, Desired: 0, Max: 20,
				Labels: map[string]string{"shop.example.com/capacity": "spot"},
				Taints: []components.Taint{{Key: "shop.example.com/spot", Value: "true", Effect: "NoSchedule"}},
			},
		},
	})
	if err != nil {
		return nil, err
	}
	ctx.Export("endpoint", cluster.Endpoint)
	ctx.Export("kubeconfig", cluster.Kubeconfig)
	return cluster, nil
}
