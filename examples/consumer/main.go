// Command consumer is an example of a Go Pulumi program that imports
// kubeha's components: one HA cluster with a 5-member etcd, a general
// on-demand pool and a tainted spot pool, all set in code.
//
//	pulumi up    # with AWS credentials; no stack config is read
package main

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/components"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		_, err := declare(ctx, clusterArgs())
		return err
	})
}

// declare builds the cluster and exports how to reach it. A refused
// option comes back as a *components.FieldError naming the field, its
// stack key, the value given and what is allowed; nothing is declared.
func declare(ctx *pulumi.Context, args *components.ClusterArgs) (*components.Cluster, error) {
	cluster, err := components.NewCluster(ctx, "shop", args)
	var bad *components.FieldError
	if errors.As(err, &bad) {
		return nil, fmt.Errorf("the shop cluster's %s cannot be %s: use %s", bad.Field, bad.Value, bad.Allowed)
	}
	if err != nil {
		return nil, err
	}
	ctx.Export("endpoint", cluster.Endpoint)
	ctx.Export("kubeconfig", cluster.Kubeconfig)
	return cluster, nil
}

// clusterArgs is the shop cluster, every option set in code.
func clusterArgs() *components.ClusterArgs {
	return &components.ClusterArgs{
		ClusterName: "shop",
		Environment: components.EnvironmentProd,
		Region:      "eu-central-1",
		Zones:       []string{"eu-central-1a", "eu-central-1b", "eu-central-1c"},
		Tags:        map[string]string{"team": "payments"},
		Etcd:        components.EtcdOptions{Members: 5},
		Workers: []components.WorkerPool{
			{Name: "general", InstanceTypes: []string{"m6i.large"}, DesiredPerZone: pulumi.IntRef(2), MaxPerZone: 10},
			{
				// Batch work that tolerates losing a node: spot only, and
				// kept off by a taint unless a pod tolerates it.
				Name:          "spot",
				InstanceTypes: []string{"m6i.large", "m6a.large", "m7i.large"},
				SpotPercent:   100,
				MinPerZone:    pulumi.IntRef(0),
				MaxPerZone:    20,
				Labels:        []string{"shop.example.com/capacity=spot"},
				Taints:        []string{"shop.example.com/spot=true:NoSchedule"},
			},
		},
	}
}
